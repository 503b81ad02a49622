"""ImageNet class -> FakeClue category ("animal", "human", "object", "scene") tables.

The categorize stage runs an ImageNet classifier (timm EVA-02) and needs one FakeClue category per
class index of its head. The tables in ``fakeclue_builder/data/`` are generated DATA, committed
together with this generator; at run time only :func:`class_categories` is used (no WordNet needed).

How the tables were generated (Debian/Ubuntu package ``wordnet-base`` 1:3.0, i.e. WordNet 3.0)::

    apt-get install -y wordnet-base
    python -m fakeclue_builder.imagenet_categories --wordnet /usr/share/wordnet/data.noun \\
        --out fakeclue_builder/data

Class order is timm's (``timm/data/_info/*_synsets.txt``); names come from timm's
``imagenet_synset_to_lemma.txt``. ImageNet ids are WordNet 3.0 noun offsets (n01440764 -> 01440764).
Each synset's lexicographer file (field 2 of ``data.noun``; numbers from lexnames(5WN)) and its
hypernym closure (``@`` and ``@i`` pointers, breadth-first, including the synset itself) decide
the category. Rules, first match wins (offsets in SCENE_ROOTS & co. below):

1. lexfile noun.animal -> animal; noun.person or noun.act -> human (sports and activities are
   pictured as people doing them; this runs first so "baby" is not an animal via "young mammal").
2. animal.n.01 in the closure -> animal; person.n.01 -> human; noun.group under social group /
   people (crowd, wedding, team) -> human; noun.body (hair styles, beards, body parts) -> human
   unless under cell or substance (micrographs, milk), which fall through to object.
3. scene: lexfile noun.location or noun.phenomenon, or a SCENE_SYNSETS entry in the closure (pier
   -- WordNet's sense is the bridge support, ImageNet pictures jetties --, wharf, maze, stage, sky,
   landscape, chasm, tor, snowcap, shoreline, rainbow, harbor, national monument, runway).
4. scene: a SCENE_ROOTS ancestor and no NOT_SCENE_ROOTS ancestor. Natural scenery: geological
   formation (volcano, cliff, valley, alp, coral reef, geyser, seashore, lakeside, promontory,
   sandbar), body of water, land (both senses: plains, islands, farmland, swamps), pass, drift,
   outcrop, celestial body, atmospheric phenomenon, region and geographic point (many artifacts --
   courts, gardens, yards, farms -- are also filed there). Built places, photographed as a setting
   rather than handled as a thing: building (church, palace, barn, greenhouse, library, cinema,
   monastery, mosque), building complex, establishment (shops, prisons), housing, the artifact
   "area" (rooms, patio), defensive structure (castle), tower (lighthouse), bridge, stadium,
   landing (dock), porch, mound (levee), dam, breakwater, fountain, megalith, triumphal arch,
   arcade, colonnade, public works, way (roads, canals, stairs), facility (airports), hut.
   "structure" as a whole is NOT a scene root: it also holds fences, doors, grilles, turnstiles,
   pedestals, racks, plaques and tents, pictured as objects. NOT_SCENE_ROOTS removes what "area"
   and "way" file among places but is pictured as a thing: conduits (pipes, hoses), furnaces and
   kilns, particle detectors, resonators, piston chambers, cupboards, drawers, cages, vivaria,
   playpens.
5. object: everything else -- other artifacts (vehicles, tools, clothes, fences), noun.food,
   noun.plant (flowers, fungi, fruit, trees), noun.substance, natural objects that are not places
   (bubble, rock, shell, nest) and the abstract remainder (shapes, colours).
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

CATEGORIES = ("animal", "human", "object", "scene")
DATA_DIR = Path(__file__).parent / "data"
TABLE_HEADER = ("index", "synset", "category", "lexfile", "name")

# canonical subset (timm's spelling) -> (timm synset list, table file name, number of classes)
SUBSETS = {
    "imagenet-1k": ("imagenet_synsets.txt", "imagenet1k.tsv", 1000),
    "imagenet-22k": ("imagenet22k_synsets.txt", "imagenet22k.tsv", 21841),
    "imagenet-21k-goog": ("imagenet21k_goog_synsets.txt", "imagenet21k_goog.tsv", 21843),
    "imagenet-12k": ("imagenet12k_synsets.txt", "imagenet12k.tsv", 11821),
}
_SUBSET_ALIASES = {re.sub(r"[-_\s]", "", name): name for name in SUBSETS} | {"imagenet21k": "imagenet-21k-goog"}
_NUM_CLASSES_TO_SUBSET = {spec[2]: name for name, spec in SUBSETS.items()}

# lexicographer file numbers -> names, from lexnames(5WN) of WordNet 3.0 (nouns only)
LEXNAMES = {
    3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute",
    8: "noun.body", 9: "noun.cognition", 10: "noun.communication", 11: "noun.event", 12: "noun.feeling",
    13: "noun.food", 14: "noun.group", 15: "noun.location", 16: "noun.motive", 17: "noun.object",
    18: "noun.person", 19: "noun.phenomenon", 20: "noun.plant", 21: "noun.possession", 22: "noun.process",
    23: "noun.quantity", 24: "noun.relation", 25: "noun.shape", 26: "noun.state", 27: "noun.substance",
    28: "noun.time",
}

# WordNet 3.0 noun offsets used by the rules (see the module docstring)
ANIMAL = "00015388"  # animal, animate being
PERSON = "00007846"  # person, individual
SOCIAL_GROUPS = frozenset({"07950920", "07942152"})  # social group; people
BODY_NOT_HUMAN = frozenset({"00006484", "00019613"})  # cell; substance (body substance: milk, blood)
SCENE_LEXFILES = frozenset({"noun.location", "noun.phenomenon"})
SCENE_ROOTS = frozenset({
    # natural scenery
    "09287968", "09225146",  # geological formation; body of water
    "09334396", "09335240",  # land, dry land, ground; land, ground, soil (farmland, rangeland, wetland)
    "09386842", "09270233",  # pass, col, defile; drift (snowdrift, drumlin)
    "09381242", "09239740",  # outcrop; celestial body
    "11425580", "08630985",  # atmospheric phenomenon; region (tracts, fields; courts, gardens, yards)
    "08578706",  # geographic point (farm, workplace)
    # built places
    "02913152", "02914991",  # building, edifice; building complex
    "03297735", "03546340",  # establishment (shops, prisons, hospitals); housing, lodging
    "02735688", "03171356",  # area (rooms, patio, aisle); defensive structure (castle)
    "04460130", "02898711",  # tower (lighthouse); bridge, span
    "04295881", "03638321",  # stadium; landing (dock, marina)
    "03984381", "03792048",  # porch; mound (levee, embankment)
    "03160309", "02894605",  # dam, dike; breakwater, jetty
    "03388043", "03743016",  # fountain (the structure); megalith
    "04486054", "02733213",  # triumphal arch; arcade, colonnade
    "03071160", "04019335",  # colonnade; public works
    "04564698", "03315023",  # way (roads, canals, stairs); facility, installation (airport)
    "03550153",  # hut
})
# things filed under a scene root (area, way) that are pictured as objects: pipes, machine chambers, cages
NOT_SCENE_ROOTS = frozenset({
    "03089014", "03404449",  # conduit (pipes, tubes, hoses); furnace (kilns, ovens)
    "03894051", "04080454",  # particle detector; resonator (soundbox)
    "03156405", "03148324",  # piston chamber; cupboard (the furniture; also safes)
    "03233905", "02936714",  # drawer; cage (birdcage, hutch)
    "04539203", "03964495",  # vivarium (terrarium, fishbowl); playpen
})
SCENE_SYNSETS = frozenset({
    "03933933", "03933529",  # pier (WordNet: a bridge support; ImageNet: jetties); pier, wharf
    "03733281", "04296562",  # maze, labyrinth; stage
    "09436708", "06209940",  # sky; landscape
    "09242389", "09460046",  # chasm; tor
    "09438844", "09433839",  # snowcap; shoreline
    "09403427", "03492250",  # rainbow; harbor, harbour
    "03810952", "04120842",  # national monument; runway
})


def read_wordnet_nouns(data_noun: Path) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """Parse WordNet's data.noun into {offset: lexfile name} and {offset: hypernym offsets}."""
    lexfiles: dict[str, str] = {}
    hypernyms: dict[str, tuple[str, ...]] = {}
    with open(data_noun, encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("  "):  # license header
                continue
            fields = line.split(" ")
            offset, word_count = fields[0], int(fields[3], 16)
            lexfiles[offset] = LEXNAMES[int(fields[1])]
            pos = 4 + 2 * word_count
            pointer_count, pos = int(fields[pos]), pos + 1
            parents = []
            for _ in range(pointer_count):
                symbol, target, target_pos = fields[pos : pos + 3]
                if symbol in ("@", "@i") and target_pos == "n":
                    parents.append(target)
                pos += 4
            hypernyms[offset] = tuple(parents)
    return lexfiles, hypernyms


def hypernym_closure(offset: str, hypernyms: dict[str, tuple[str, ...]]) -> set[str]:
    """The synset itself and all its hypernyms, breadth first."""
    seen, queue = {offset}, [offset]
    while queue:
        for parent in hypernyms[queue.pop(0)]:
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return seen


def categorize(lexfile: str, closure: set[str]) -> str:
    """Apply the rules of the module docstring to one synset (closure includes the synset)."""
    if lexfile == "noun.animal":
        return "animal"
    if lexfile in ("noun.person", "noun.act"):
        return "human"
    if ANIMAL in closure:
        return "animal"
    if PERSON in closure:
        return "human"
    if lexfile == "noun.group" and closure & SOCIAL_GROUPS:
        return "human"
    if lexfile == "noun.body" and not closure & BODY_NOT_HUMAN:
        return "human"
    if lexfile in SCENE_LEXFILES or closure & SCENE_SYNSETS:
        return "scene"
    if closure & SCENE_ROOTS and not closure & NOT_SCENE_ROOTS:
        return "scene"
    return "object"


def build_table(data_noun: Path, synsets: list[str]) -> list[tuple[str, str, str]]:
    """(synset, category, lexfile name) for each ImageNet synset id ("n01440764"), in order."""
    lexfiles, hypernyms = read_wordnet_nouns(data_noun)
    rows = []
    for synset in synsets:
        offset = synset[1:]
        if synset[0] != "n" or offset not in lexfiles:
            raise ValueError(f"{synset!r} is not a WordNet 3.0 noun synset in {data_noun}")
        lexfile = lexfiles[offset]
        rows.append((synset, categorize(lexfile, hypernym_closure(offset, hypernyms)), lexfile))
    return rows


def _timm_info_lines(file_name: str) -> list[str]:
    import pkgutil

    data = pkgutil.get_data("timm.data", f"_info/{file_name}")
    if data is None:
        raise FileNotFoundError(f"timm ships no _info/{file_name}; upgrade timm (pip install 'timm>=1.0')")
    return data.decode("utf-8").splitlines()


def write_table(path: Path, rows: list[tuple[str, str, str]], names: dict[str, str]) -> None:
    """Write one table as TSV, byte-for-byte reproducible (LF line ends, UTF-8)."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(TABLE_HEADER) + "\n")
        for index, (synset, category, lexfile) in enumerate(rows):
            out.write(f"{index}\t{synset}\t{category}\t{lexfile}\t{names.get(synset, '')}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet/data.noun"),
                        help="WordNet 3.0 data.noun (Debian package wordnet-base)")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder for the imagenet*.tsv tables")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.wordnet.is_file():
        parser.error(f"{args.wordnet} not found; install it with 'apt-get install -y wordnet-base' "
                     "or pass --wordnet PATH/TO/data.noun (WordNet 3.0)")
    names = dict(line.split("\t", 1) for line in _timm_info_lines("imagenet_synset_to_lemma.txt"))
    args.out.mkdir(parents=True, exist_ok=True)
    for subset, (synset_file, table_file, num_classes) in SUBSETS.items():
        synsets = _timm_info_lines(synset_file)
        if len(synsets) != num_classes:
            raise ValueError(f"timm's {synset_file} has {len(synsets)} classes, expected {num_classes}")
        rows = build_table(args.wordnet, synsets)
        write_table(args.out / table_file, rows, names)
        counts = Counter(category for _, category, _ in rows)
        logger.info("%s: %d classes -> %s (%s)", subset, len(rows), args.out / table_file,
                    ", ".join(f"{c}={counts[c]}" for c in CATEGORIES))


def resolve_subset(num_classes: int, subset: str | None = None) -> str:
    """timm's subset name for a classifier head, from ``subset`` or else from ``num_classes``."""
    known = ", ".join(f"{name} ({spec[2]} classes)" for name, spec in SUBSETS.items())
    if subset is not None:
        canonical = _SUBSET_ALIASES.get(re.sub(r"[-_\s]", "", subset.lower()))
        if canonical is None:
            raise ValueError(
                f"no FakeClue category table for ImageNet subset {subset!r} (num_classes={num_classes}); tables "
                f"exist for {known}. Set categorize.model to a classifier trained on one of them, or add the "
                "subset to SUBSETS in fakeclue_builder/imagenet_categories.py and regenerate the tables")
        return canonical
    if num_classes not in _NUM_CLASSES_TO_SUBSET:
        raise ValueError(
            f"no FakeClue category table for a classifier with num_classes={num_classes}; tables exist for "
            f"{known}. Set categorize.model to an ImageNet classifier with one of these heads (do not override "
            "num_classes in categorize.model_kwargs)")
    return _NUM_CLASSES_TO_SUBSET[num_classes]


@lru_cache(maxsize=None)
def _load_table(table_file: str) -> tuple[str, ...]:
    path = DATA_DIR / table_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the package was installed without its data/*.tsv "
                                "(package-data) or the tables were never generated; reinstall fakeclue-builder")
    with open(path, encoding="utf-8", newline="") as tsv:
        reader = csv.reader(tsv, delimiter="\t", quoting=csv.QUOTE_NONE)
        if tuple(next(reader)) != TABLE_HEADER:
            raise ValueError(f"{path} does not start with the header {TABLE_HEADER}")
        return tuple(row[2] for row in reader)


def class_categories(num_classes: int, subset: str | None = None) -> list[str]:
    """FakeClue category of each class index of an ImageNet classifier head with ``num_classes`` outputs.

    ``subset`` is timm's name ("imagenet-1k", "imagenet-22k", "imagenet-21k-goog", "imagenet-12k", e.g.
    from ``timm.data.infer_imagenet_subset(model)``); None picks the table by ``num_classes``. Tables are
    read once (cached); each call returns a fresh list.
    """
    name = resolve_subset(num_classes, subset)
    _, table_file, expected = SUBSETS[name]
    if num_classes != expected:
        raise ValueError(f"ImageNet subset {name!r} has {expected} classes but the classifier has "
                         f"num_classes={num_classes}; pass the subset that matches the head "
                         "(timm.data.infer_imagenet_subset(model))")
    return list(_load_table(table_file))


if __name__ == "__main__":
    main()
