import random

from fakeclue_builder.dedup import Deduplicator, NearDuplicateIndex


def _brute(hashes, value, t):
    return next((i for i, h in enumerate(hashes) if (h ^ value).bit_count() <= t), None)


def test_multi_index_hashing_matches_brute_force():
    rng = random.Random(0)
    for t in (0, 2, 4, 7):
        index = NearDuplicateIndex(t)
        stored = []
        base = [rng.getrandbits(64) for _ in range(50)]
        for i in range(600):
            # half the queries are small perturbations of earlier hashes, so matches really occur
            value = rng.choice(base) ^ sum(1 << rng.randrange(64) for _ in range(rng.randrange(0, 9))) if i % 2 else \
                rng.getrandbits(64)
            expected = _brute(stored, value, t)
            found = index.find(value)
            assert found == expected, (t, i)
            if found is None:
                index.add(value, len(stored))
                stored.append(value)
        assert len(index) == len(stored)


def test_lookups_are_sub_quadratic():
    rng = random.Random(1)
    index = NearDuplicateIndex(4)
    compared = 0
    hashes = [rng.getrandbits(64) for _ in range(20000)]
    for h in hashes:
        index.add(h, h)
    for table in index.tables:  # random hashes spread over the chunk buckets
        compared += max(len(v) for v in table.values())
    assert compared < 200  # a look-up touches a few buckets of a handful of items, not 20,000 hashes


def test_deduplicator_exact_near_labels_and_groups():
    d = Deduplicator(exact=True, near=True, threshold=4, across_labels=False)
    assert d.check("a", "ffffffffffffffff", 1, None, "s:a") is None
    exact = d.check("a", "ffffffffffffffff", 1, None, "s:a2")
    assert exact.reason == "duplicate_exact" and exact.duplicate_of == "a" and "s:a" in exact.detail
    near = d.check("b", "fffffffffffffff0", 1, None, "s:b")  # 4 bits away
    assert near.reason == "duplicate_near" and near.duplicate_of == "a"
    assert d.check("c", "fffffffffffffff0", 0, None, "s:c") is None  # other label: kept (FF++ fake vs original)
    assert d.check("e", "ffffffffffffff00", 1, None, "s:e") is None  # 8 bits away: kept
    d2 = Deduplicator(exact=True, near=True, threshold=4, across_labels=False)
    assert d2.check("f1", "0000000000000000", 1, "vid", "s:f1") is None
    assert d2.check("f2", "0000000000000001", 1, "vid", "s:f2") is None  # same group (video frames): kept
    assert d2.check("g", "0000000000000001", 1, "other", "s:g").reason == "duplicate_near"
