import random
import time
from collections import Counter

import pytest

from fakeclue_builder.records import FAKE, REAL, Row
from fakeclue_builder.split import LeakageReport, assign_groups, leakage, split_rows

# unbalanced cate x label shares
STRATA = [("deepfake", FAKE, 0.30), ("deepfake", REAL, 0.10), ("animal", FAKE, 0.20), ("animal", REAL, 0.15),
          ("scene", FAKE, 0.12), ("doc", REAL, 0.08), ("satellite", FAKE, 0.05)]


def _row(image_id, cate, label, phash, group_id=None):
    return Row(source="synthetic", source_path=image_id, label=label, image_id=image_id, cate=cate,
               group_id=group_id, phash=f"{phash:016x}")


def _flip(value, rng, bits=2):
    for pos in rng.sample(range(64), bits):
        value ^= 1 << pos
    return value


def make_rows(n=6000, seed=0):
    """Singletons, groups of 8 frames sharing a group_id, and near-duplicate pairs with different group_ids."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < n:
        cate, label = rng.choices([s[:2] for s in STRATA], weights=[s[2] for s in STRATA])[0]
        kind = rng.random()
        i = len(rows)
        if kind < 0.05:  # a video: 8 frames, unrelated pHashes, one group_id
            rows += [_row(f"v{i}-{k}", cate, label, rng.getrandbits(64), group_id=f"video{i}") for k in range(8)]
        elif kind < 0.15:  # near-duplicate pair, different group_ids (e.g. re-encoded copy)
            h = rng.getrandbits(64)
            rows += [_row(f"d{i}a", cate, label, h, group_id=f"ga{i}"), _row(f"d{i}b", cate, label, _flip(h, rng),
                                                                            group_id=f"gb{i}")]
        else:
            rows.append(_row(f"s{i}", cate, label, rng.getrandbits(64)))
    return rows


@pytest.fixture(scope="module")
def rows():
    return make_rows()


def test_no_leakage_and_exact_size(rows):
    result = split_rows(rows, test_size=1000, seed=0)
    assert leakage(rows, result.split, 4) == LeakageReport(groups_across=0, phash_pairs_across=0)
    # every stratum has many single-row components, so the greedy fill reaches the exact size
    assert result.test_rows == 1000
    assert result.train_rows == len(rows) - 1000
    assert set(result.split) == {r.image_id for r in rows}
    assert sum(v["test"] for v in result.per_stratum.values()) == 1000


def test_per_stratum_proportions_within_one_component(rows):
    test_size = 1000
    result = split_rows(rows, test_size=test_size, seed=3)
    totals = Counter(f"{r.cate}/{'real' if r.label == REAL else 'fake'}" for r in rows)
    largest = 8  # the biggest component is a video of 8 frames
    for stratum, n in totals.items():
        target = test_size * n / len(rows)
        got = result.per_stratum[stratum]["test"]
        assert abs(got - target) <= largest, (stratum, got, target)
        assert got + result.per_stratum[stratum]["train"] == n


def test_naive_random_split_leaks(rows):
    rng = random.Random(0)
    naive = {r.image_id: "test" if rng.random() < 0.2 else "train" for r in rows}
    report = leakage(rows, naive, 4)
    assert report.groups_across > 0
    assert report.phash_pairs_across > 0


def test_groups_and_near_duplicates_stay_together(rows):
    comp = assign_groups(rows, 4)
    by_group = {}
    for r in rows:
        if r.group_id and r.group_id.startswith("video"):
            by_group.setdefault(r.group_id, set()).add(comp[r.image_id])
    assert by_group and all(len(c) == 1 for c in by_group.values())
    pairs = [r.image_id for r in rows if r.image_id.startswith("d")]
    for a in pairs[::2]:
        assert comp[a] == comp[a[:-1] + "b"]


def test_near_duplicate_links_to_all_matches_not_just_first():
    rng = random.Random(5)
    h = rng.getrandbits(64)
    a, b = _flip(h, rng, 3), h  # a and c are 6 bits apart, both within 3 of b
    c = _flip(h, rng, 3)
    while (a ^ c).bit_count() <= 4:
        c = _flip(h, rng, 3)
    rows = [_row("a", "animal", FAKE, a), _row("c", "animal", FAKE, c), _row("b", "animal", FAKE, b)]
    comp = assign_groups(rows, 4)
    assert comp["a"] == comp["b"] == comp["c"]  # b (inserted last) bridges a and c


def test_rows_without_group_id_are_their_own_groups():
    rng = random.Random(1)
    rows = [_row(f"x{i}", "scene", REAL, rng.getrandbits(64)) for i in range(50)]
    comp = assign_groups(rows, 4)
    assert comp == {f"x{i}": f"image:x{i}" for i in range(50)}
    result = split_rows(rows, test_size=10, seed=0)
    assert result.groups == 50 and result.test_rows == 10


def test_deterministic_and_seeded(rows):
    first = split_rows(rows, test_size=500, seed=7).split
    assert split_rows(rows, test_size=500, seed=7).split == first
    shuffled = rows[:]
    random.Random(2).shuffle(shuffled)
    assert split_rows(shuffled, test_size=500, seed=7).split == first  # input order does not matter
    assert split_rows(rows, test_size=500, seed=8).split != first


def test_test_size_too_big_names_the_setting(rows):
    with pytest.raises(ValueError, match="export.test_size"):
        split_rows(rows, test_size=len(rows))
    with pytest.raises(ValueError, match="export.test_size"):
        split_rows(rows[:10], test_size=5000)


def test_component_bigger_than_quota_is_skipped():
    rng = random.Random(3)
    rows = [_row(f"v{k}", "deepfake", FAKE, rng.getrandbits(64), group_id="video") for k in range(8)]
    rows += [_row(f"s{i}", "deepfake", FAKE, rng.getrandbits(64)) for i in range(20)]
    for seed in range(5):
        result = split_rows(rows, test_size=5, seed=seed)
        assert result.test_rows == 5
        assert all(result.split[f"v{k}"] == "train" for k in range(8))


def test_twenty_thousand_rows_fast():
    rows = make_rows(20000, seed=1)
    start = time.perf_counter()
    result = split_rows(rows, test_size=5000, seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 5, elapsed
    assert result.test_rows == 5000
    assert leakage(rows, result.split, 4).groups_across == 0
