"""Exact and near-duplicate detection, sub-quadratic.

Near duplicates use multi-index hashing: a 64-bit pHash is cut into `t + 1` disjoint bit chunks; two
hashes within Hamming distance `t` must agree exactly on at least one chunk (pigeonhole), so candidates
are found by dictionary look-ups and only those are compared. 100k images cost ~100k look-ups, not 10^10
comparisons.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


def _chunks(bits: int, n_chunks: int) -> list[tuple[int, int]]:
    """(shift, mask) pairs splitting `bits` bits into `n_chunks` nearly equal chunks."""
    out, start = [], 0
    for i in range(n_chunks):
        width = bits // n_chunks + (1 if i < bits % n_chunks else 0)
        out.append((start, (1 << width) - 1))
        start += width
    return out


class NearDuplicateIndex:
    """Index of kept 64-bit hashes; `find(h)` returns a stored item within `threshold` bits, or None."""

    def __init__(self, threshold: int, bits: int = 64):
        self.threshold = threshold
        self.chunks = _chunks(bits, threshold + 1)
        self.tables: list[dict[int, list[int]]] = [defaultdict(list) for _ in self.chunks]
        self.hashes: list[int] = []
        self.items: list[object] = []

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, value: int, accept=lambda item: True) -> object | None:
        """First stored item (in insertion order) within the threshold that `accept`s."""
        seen: set[int] = set()
        best: int | None = None
        for table, (shift, mask) in zip(self.tables, self.chunks):
            for idx in table.get((value >> shift) & mask, ()):
                if idx in seen:
                    continue
                seen.add(idx)
                if (best is None or idx < best) and (self.hashes[idx] ^ value).bit_count() <= self.threshold:
                    if accept(self.items[idx]):
                        best = idx
        return None if best is None else self.items[best]

    def add(self, value: int, item: object) -> None:
        idx = len(self.hashes)
        self.hashes.append(value)
        self.items.append(item)
        for table, (shift, mask) in zip(self.tables, self.chunks):
            table[(value >> shift) & mask].append(idx)


@dataclass(frozen=True)
class Kept:
    """What the index remembers of a kept row: enough to name it in a duplicate's drop record."""

    image_id: str
    label: int
    group_id: str | None
    where: str  # "source:source_path" of the kept row


@dataclass(frozen=True)
class Decision:
    reason: str
    detail: str
    duplicate_of: str | None = None


class Deduplicator:
    """Feed rows in priority order; each call says whether the row is a duplicate of an earlier kept one."""

    def __init__(self, exact: bool, near: bool, threshold: int, across_labels: bool):
        self.exact, self.near, self.across_labels = exact, near, across_labels
        self.by_id: dict[str, Kept] = {}
        self.index = NearDuplicateIndex(threshold)

    def check(self, image_id: str, phash: str | None, label: int, group_id: str | None, where: str) -> Decision | None:
        if self.exact and image_id in self.by_id:
            kept = self.by_id[image_id]
            return Decision("duplicate_exact", f"same bytes as kept {kept.where}", kept.image_id)
        value = int(phash, 16) if phash else None
        if self.near and value is not None:

            def accept(k: Kept) -> bool:
                same_group = group_id is not None and k.group_id == group_id
                return not same_group and (self.across_labels or k.label == label)

            kept = self.index.find(value, accept)
            if kept is not None:
                return Decision("duplicate_near", f"pHash within {self.index.threshold} bits of kept {kept.where}",
                                kept.image_id)
        record = Kept(image_id, label, group_id, where)
        self.by_id.setdefault(image_id, record)
        if value is not None:
            self.index.add(value, record)
        return None
