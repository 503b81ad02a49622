"""Train/test split of the export stage: group-aware, stratified by cate x label, seeded, leak-free.

Rows are first merged into components (union-find) so that nothing that could leak sits on both sides:
rows sharing a `group_id` (frames of one FF++ video, a synthetic fake and the real tile it came from),
and near duplicates (pHashes within `phash_threshold` bits, found with `dedup.NearDuplicateIndex`).
A row without `group_id` is its own group, `image:<image_id>`. Whole components then go to test, stratum
by stratum, until each stratum's quota is filled.

Size guarantee: `test_rows <= test_size`; each stratum's test rows fall short of its target by less than
the size of the smallest component it left in train (so by less than one component). With enough
single-row components per stratum (the usual case) the test split has exactly `test_size` rows.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .dedup import NearDuplicateIndex
from .records import Row, label_name

log = logging.getLogger(__name__)

TRAIN = "train"
TEST = "test"


@dataclass
class SplitResult:
    split: dict[str, str]  # image_id -> "train" | "test"
    groups: int  # number of components (groups merged through group_id and near-duplicate links)
    test_rows: int
    train_rows: int
    per_stratum: dict[str, dict[str, int]] = field(default_factory=dict)  # "cate/real|fake" -> {"train", "test"}


@dataclass
class LeakageReport:
    groups_across: int  # groups (group_id, or image:<image_id>) with rows on both sides
    phash_pairs_across: int  # near-duplicate pairs (<= threshold) with one row on each side


def group_key(row: Row) -> str:
    """The group a row belongs to by itself: its group_id, else `image:<image_id>`."""
    return row.group_id if row.group_id is not None else f"image:{row.image_id}"


def stratum_key(row: Row) -> str:
    return f"{row.cate or 'unknown'}/{label_name(row.label)}"


def find_all(index: NearDuplicateIndex, value: int) -> list[int]:
    """Insertion indices of every stored hash within the index's threshold of `value` (ascending)."""
    found: set[int] = set()
    seen: set[int] = set()
    for table, (shift, mask) in zip(index.tables, index.chunks):
        for idx in table.get((value >> shift) & mask, ()):
            if idx not in seen:
                seen.add(idx)
                if (index.hashes[idx] ^ value).bit_count() <= index.threshold:
                    found.add(idx)
    return sorted(found)


def _check_ids(rows: list[Row]) -> None:
    missing = [r.source_path for r in rows if r.image_id is None]
    if missing:
        raise ValueError(f"{len(missing)} rows have no image_id (first: {missing[0]}); "
                         "only kept rows with an image_id can be split — drop unreadable rows before export")


def _phash_links(rows: list[Row], phash_threshold: int):
    """Yield (i, j) row-index pairs whose pHashes are within the threshold (each pair once)."""
    index = NearDuplicateIndex(phash_threshold)
    for i, row in enumerate(rows):
        if not row.phash:
            continue
        value = int(row.phash, 16)
        for idx in find_all(index, value):
            yield index.items[idx], i
        index.add(value, i)


def assign_groups(rows: list[Row], phash_threshold: int) -> dict[str, str]:
    """image_id -> component id. Component id = the smallest group key in the component (order-independent)."""
    _check_ids(rows)
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        for key in (group_key(row), f"id:{row.image_id}"):  # same image_id twice = same image
            union(i, first.setdefault(key, i))
    for i, j in _phash_links(rows, phash_threshold):
        union(i, j)
    name: dict[int, str] = {}
    for i, row in enumerate(rows):
        root, key = find(i), group_key(row)
        if root not in name or key < name[root]:
            name[root] = key
    return {row.image_id: name[find(i)] for i, row in enumerate(rows)}


def _majority(strata: Counter) -> str:
    """Most common stratum; ties go to the first in sorted order."""
    return min(strata.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def _targets(sizes: dict[str, int], test_size: int) -> dict[str, int]:
    """Test rows per stratum, proportional to its share, largest-remainder rounded to sum to test_size."""
    total = sum(sizes.values())
    exact = {s: test_size * n / total for s, n in sizes.items()}
    out = {s: int(x) for s, x in exact.items()}
    left = test_size - sum(out.values())
    for s in sorted(exact, key=lambda s: (-(exact[s] - out[s]), s))[:left]:
        out[s] += 1
    return out


def split_rows(rows: list[Row], test_size: int = 5000, seed: int = 0, phash_threshold: int = 4) -> SplitResult:
    """Seeded, stratified, group-aware split; the result is independent of the order of `rows`."""
    if test_size < 0 or test_size >= len(rows):
        raise ValueError(f"export.test_size is {test_size} but there are {len(rows)} rows; "
                         "set export.test_size to a value in [0, number of rows) — the paper uses 5000")
    component = assign_groups(rows, phash_threshold)
    members: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        members[component[row.image_id]].append(row)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    sizes: dict[str, int] = Counter()
    for cid in sorted(members):
        stratum = _majority(Counter(stratum_key(r) for r in members[cid]))
        by_stratum[stratum].append(cid)
        sizes[stratum] += len(members[cid])
    targets = _targets(sizes, test_size)
    test_components: set[str] = set()
    for stratum in sorted(by_stratum):
        order = by_stratum[stratum][:]
        random.Random(f"{seed}:{stratum}").shuffle(order)
        remaining = targets[stratum]
        for cid in order:
            if remaining == 0:
                break
            if len(members[cid]) <= remaining:
                test_components.add(cid)
                remaining -= len(members[cid])
    split = {r.image_id: TEST if component[r.image_id] in test_components else TRAIN for r in rows}
    per_stratum: dict[str, dict[str, int]] = defaultdict(lambda: {TRAIN: 0, TEST: 0})
    for row in rows:
        per_stratum[stratum_key(row)][split[row.image_id]] += 1
    n_test = sum(1 for side in split.values() if side == TEST)
    log.info("split %d rows in %d groups: %d test (target %d), %d train",
             len(split), len(members), n_test, test_size, len(split) - n_test)
    return SplitResult(split=split, groups=len(members), test_rows=n_test, train_rows=len(split) - n_test,
                       per_stratum=dict(sorted(per_stratum.items())))


def leakage(rows: list[Row], split: dict[str, str], phash_threshold: int) -> LeakageReport:
    """Count what crosses the split: groups with rows on both sides, near-duplicate pairs across sides."""
    rows = [r for r in rows if r.image_id in split]
    sides: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        sides[group_key(row)].add(split[row.image_id])
    groups_across = sum(1 for s in sides.values() if len(s) > 1)
    pairs = sum(1 for i, j in _phash_links(rows, phash_threshold)
                if split[rows[i].image_id] != split[rows[j].image_id])
    return LeakageReport(groups_across=groups_across, phash_pairs_across=pairs)
