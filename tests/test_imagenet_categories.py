"""The committed ImageNet class -> FakeClue category tables: complete, in timm's order, sane, reproducible."""

from __future__ import annotations

import csv
import pkgutil
from collections import Counter
from pathlib import Path

import pytest

from fakeclue_builder import imagenet_categories as ic

WORDNET = Path("/usr/share/wordnet/data.noun")
SANITY = {
    "n01440764": "animal",  # tench
    "n02085620": "animal",  # Chihuahua
    "n10148035": "human",  # groom
    "n09835506": "human",  # ballplayer
    "n10565667": "human",  # scuba diver
    "n04285008": "object",  # sports car
    "n07753592": "object",  # banana
    "n11939491": "object",  # daisy
    "n02799071": "object",  # baseball
    "n09229709": "object",  # bubble (noun.object, but not a place)
    "n03000134": "object",  # chainlink fence (a structure, not a scene)
    "n09472597": "scene",  # volcano
    "n09428293": "scene",  # seashore
    "n09246464": "scene",  # cliff
    "n09332890": "scene",  # lakeside
    "n09256479": "scene",  # coral reef
    "n03028079": "scene",  # church
    "n02980441": "scene",  # castle
    "n04366367": "scene",  # suspension bridge
    "n03933933": "scene",  # pier
}
SANITY_22K = {
    "n09828216": "human",  # baby (also a "young mammal" in WordNet)
    "n08182379": "human",  # crowd (noun.group)
    "n00480993": "human",  # basketball, the game (noun.act)
    "n05263316": "human",  # vandyke beard (noun.body)
    "n05449959": "object",  # leukocyte (noun.body, but a cell)
    "n02802544": "scene",  # basketball court (an artifact filed under region)
    "n04105893": "scene",  # room
    "n03206158": "object",  # discharge pipe (under "way", but a conduit)
    "n09452395": "scene",  # swamp
}


def read_table(table_file: str) -> list[dict[str, str]]:
    with open(ic.DATA_DIR / table_file, encoding="utf-8", newline="") as tsv:
        return list(csv.DictReader(tsv, delimiter="\t", quoting=csv.QUOTE_NONE))


def timm_synsets(file_name: str) -> list[str]:
    return pkgutil.get_data("timm.data", f"_info/{file_name}").decode("utf-8").splitlines()


@pytest.mark.parametrize("subset", sorted(ic.SUBSETS))
def test_table_covers_every_class_in_timm_order(subset):
    synset_file, table_file, num_classes = ic.SUBSETS[subset]
    rows = read_table(table_file)
    assert len(rows) == num_classes
    assert [r["synset"] for r in rows] == timm_synsets(synset_file)
    assert [int(r["index"]) for r in rows] == list(range(num_classes))
    assert {r["category"] for r in rows} == set(ic.CATEGORIES)  # each category used, nothing else
    assert all(r["lexfile"].startswith("noun.") and r["name"] for r in rows)


@pytest.mark.parametrize(("table_file", "expected"),
                         [("imagenet1k.tsv", SANITY), ("imagenet22k.tsv", SANITY | SANITY_22K)])
def test_sanity_classes(table_file, expected):
    by_synset = {r["synset"]: r["category"] for r in read_table(table_file)}
    assert {s: by_synset[s] for s in expected} == expected


def test_1k_counts_are_plausible():
    counts = Counter(r["category"] for r in read_table("imagenet1k.tsv"))
    assert counts["animal"] == 398  # every noun.animal class of ImageNet-1k
    assert counts["human"] == 3  # ballplayer, groom, scuba diver
    assert 40 <= counts["scene"] <= 80 and counts["object"] > 500


@pytest.mark.parametrize(("num_classes", "subset"),
                         [(1000, None), (21841, None), (21843, None), (11821, None), (1000, "imagenet-1k"),
                          (21841, "imagenet_22k"), (21843, "imagenet21k"), (11821, "ImageNet-12k")])
def test_class_categories_lengths(num_classes, subset):
    cats = ic.class_categories(num_classes, subset)
    assert len(cats) == num_classes and set(cats) <= set(ic.CATEGORIES)


def test_class_categories_match_table_and_are_fresh_lists():
    cats = ic.class_categories(1000)
    assert cats[0] == "animal" and cats == [r["category"] for r in read_table("imagenet1k.tsv")]
    cats[0] = "scene"
    assert ic.class_categories(1000)[0] == "animal"  # the cache is not shared mutable state



def test_tables_agree_on_shared_synsets():
    tables = [{r["synset"]: r["category"] for r in read_table(spec[1])} for spec in ic.SUBSETS.values()]
    union: dict[str, set[str]] = {}
    for table in tables:
        for synset, category in table.items():
            union.setdefault(synset, set()).add(category)
    assert all(len(categories) == 1 for categories in union.values())


@pytest.mark.parametrize(("num_classes", "subset", "match"), [
    (10, None, "num_classes=10"),
    (21842, None, "num_classes=21842"),
    (11221, "imagenet-21k-miil", "imagenet-21k-miil"),
    (1000, "imagenet-22k", "21841 classes but the classifier has num_classes=1000"),
])
def test_unknown_head_raises_with_fix(num_classes, subset, match):
    with pytest.raises(ValueError, match=match) as err:
        ic.class_categories(num_classes, subset)
    assert "categorize" in str(err.value) or "infer_imagenet_subset" in str(err.value)


def test_num_classes_mapping_agrees_with_timm():
    from timm.data import infer_imagenet_subset

    for subset, (_, _, num_classes) in ic.SUBSETS.items():
        assert infer_imagenet_subset({"num_classes": num_classes}) == subset


def test_categorize_rules_on_a_tiny_wordnet(tmp_path):
    """The rules read lexfiles and walk @/@i hypernyms, independent of the real WordNet."""
    lines = [
        "  1 This software and database is being provided to you, the LICENSEE ...",
        "00000001 06 n 01 artifact 0 000 | made by people",
        "00000002 06 n 01 building 0 001 @ 00000001 n 0000 | not yet a scene root",
        "02913152 06 n 01 building 0 001 @ 00000001 n 0000 | a scene root",
        "00000003 06 n 01 church 0 001 @ 02913152 n 0000 | under building",
        "00000004 06 n 01 Notre_Dame 0 001 @i 00000003 n 0000 | instance of church",
        "00000005 18 n 01 groom 0 000 | a person",
        "00000006 13 n 01 banana 0 000 | food",
    ]
    data_noun = tmp_path / "data.noun"
    data_noun.write_text("\n".join(lines) + "\n")
    rows = ic.build_table(data_noun, ["n00000003", "n00000004", "n00000002", "n00000005", "n00000006"])
    assert [(s, c) for s, c, _ in rows] == [("n00000003", "scene"), ("n00000004", "scene"),
                                            ("n00000002", "object"), ("n00000005", "human"),
                                            ("n00000006", "object")]
    assert rows[-1][2] == "noun.food"
    with pytest.raises(ValueError, match="n99999999"):
        ic.build_table(data_noun, ["n99999999"])


@pytest.mark.skipif(not WORDNET.is_file(), reason="needs WordNet 3.0: apt-get install -y wordnet-base")
def test_regenerated_tables_are_byte_identical(tmp_path):
    ic.main(["--wordnet", str(WORDNET), "--out", str(tmp_path)])
    for _, table_file, _ in ic.SUBSETS.values():
        assert (tmp_path / table_file).read_bytes() == (ic.DATA_DIR / table_file).read_bytes(), table_file
