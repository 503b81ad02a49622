"""The dataset card (`export/README.md`): Hub YAML header, counts, provenance, licences, how it was built,
known biases, columns, citations. Everything in it is computed from the export's own rows and stats."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from pathlib import Path

import yaml

from fakeclue_builder.records import CATEGORIES, REAL, Row, label_name
from fakeclue_builder.split import TEST, TRAIN

UPSTREAM_BY_KIND = {"genimage": "genimage", "chameleon": "chameleon", "ffpp": "ffpp", "fakeclue": "fakeclue"}
UPSTREAM_BY_CATE = {"satellite": ["cvusa", "vigor"], "doc": ["m6doc"]}  # where the paper took these categories
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]


class CardFacts:
    """What the card needs from the full rows, gathered while the export streams them."""

    def __init__(self) -> None:
        self.annotators: Counter = Counter()  # (name, model, revision) -> rows it supports
        self.prompt_ids: Counter = Counter()
        self.modes: Counter = Counter()

    def observe(self, row: Row) -> None:
        for a in row.annotations or []:
            if a.get("ok"):
                self.annotators[(a["annotator"], a.get("model") or "", a.get("revision") or "")] += 1
        self.prompt_ids[row.prompt_id or "none"] += 1
        self.modes[row.aggregate_mode or "none"] += 1


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _size_category(n: int) -> str:
    return next((name for limit, name in SIZE_CATEGORIES if n < limit), "n>1M")


def header(cfg, plan, stats) -> dict:
    from fakeclue_builder.features import yaml_features

    splits = stats["extra"]["splits"]
    bytes_per = Counter()
    for shard in plan.shards:
        bytes_per[shard.split] += shard.n_bytes
    return {
        "pretty_name": cfg.pretty_name, "license": cfg.license,
        **({"license_name": "mixed-upstream"} if cfg.license == "other" else {}),  # per source: see the card
        "language": ["en"], "task_categories": ["image-classification", "visual-question-answering",
                                                "image-text-to-text"],
        "tags": ["ai-generated-image-detection", "deepfake-detection", "explainability", "fakeclue"],
        "size_categories": [_size_category(len(plan.rows))],
        "configs": [{"config_name": "default", "data_files": [
            {"split": s, "path": f"data/{s}-*"} for s in (TRAIN, TEST) if splits[s]]}],
        "dataset_info": {"features": yaml_features(), "splits": [
            {"name": s, "num_bytes": bytes_per[s], "num_examples": splits[s]} for s in (TRAIN, TEST) if splits[s]]},
    }


def _counts_section(plan) -> str:
    cells: dict[tuple, Counter] = defaultdict(Counter)
    for row in plan.rows:
        cells[(row.cate, label_name(row.label))][plan.split[row.image_id]] += 1
    rows = [[cate, side, cells[(cate, side)][TRAIN], cells[(cate, side)][TEST]]
            for cate in CATEGORIES for side in ("fake", "real") if cells[(cate, side)]]
    total = Counter(plan.split.values())
    rows.append(["**all**", "", total[TRAIN], total[TEST]])
    return "## Counts\n\n" + _table(["cate", "label", TRAIN, TEST], rows)


def _provenance_section(plan) -> str:
    by_source: dict[str, Counter] = defaultdict(Counter)
    by_generator: Counter = Counter()
    for row in plan.rows:
        by_source[row.source][label_name(row.label)] += 1
        if row.label != REAL:
            by_generator[row.generator or "unknown"] += 1
    sources = _table(["source", "real", "fake"], [[s, c["real"], c["fake"]] for s, c in sorted(by_source.items())])
    generators = _table(["generator", "fake images"], [[g, n] for g, n in by_generator.most_common()])
    return f"## Sources and generators\n\n{sources}\n\n{generators}"


def _bias_section(plan) -> str:
    from fakeclue_builder.report import TVD_THRESHOLD, total_variation  # the report's shortcut rule, one place

    formats: dict[str, Counter] = defaultdict(Counter)
    sizes: dict[str, list] = defaultdict(list)
    for row in plan.rows:
        formats[label_name(row.label)][row.format or "unknown"] += 1
        sizes[label_name(row.label)].append(row)
    names = sorted(set(formats["real"]) | set(formats["fake"]))
    share = {side: {f: formats[side][f] / max(1, sum(formats[side].values())) for f in names} for side in formats}
    tv = total_variation(formats["real"], formats["fake"])
    rows = [[f, f"{100 * share.get('real', {}).get(f, 0):.1f}%", f"{100 * share.get('fake', {}).get(f, 0):.1f}%"]
            for f in names]
    size_rows = []
    for side in ("real", "fake"):
        if sizes[side]:
            size_rows.append([side, statistics.median(r.width or 0 for r in sizes[side]),
                              statistics.median(r.height or 0 for r in sizes[side]),
                              int(statistics.median(r.n_bytes or 0 for r in sizes[side]))])
    warning = (f"\n\n> **Shortcut warning:** the file format alone separates real from fake images "
               f"(total variation distance {tv:.2f}). A detector can learn the format instead of the content; "
               "evaluate with this in mind or balance formats." if tv >= TVD_THRESHOLD else "")
    return ("## Known biases\n\nImage bytes are exported exactly as collected (never re-encoded), so format, "
            "size and compression differ between real and fake images wherever the upstream sources differ.\n\n"
            + _table(["format", "real", "fake"], rows) + "\n\n"
            + _table(["label", "median width", "median height", "median bytes"], size_rows) + warning)


def _build_section(cfg, stats, facts: CardFacts, build_config) -> str:
    annotators = _table(["annotator", "model", "revision", "rows it supports"],
                        [[n, m, r or "-", c] for (n, m, r), c in sorted(facts.annotators.items())])
    prompts = ", ".join(f"`{p}` ({n})" for p, n in facts.prompt_ids.most_common())
    categorize = getattr(getattr(build_config, "categorize", None), "model", None)
    extra = stats["extra"]
    return (
        "## How it was built\n\nBuilt with fakeclue-builder (collect → synthesize → "
        "categorize → prompts → annotate → aggregate → export). Each image was explained by several VLM "
        "annotators given its ground-truth label; the answers were merged into one explanation keeping what at "
        "least two annotators said (aggregation: "
        + ", ".join(f"{m} ({n})" for m, n in facts.modes.most_common()) + ").\n\n"
        + (f"Category classifier: `{categorize}`.\n\n" if categorize else "")
        + annotators + f"\n\nPrompt templates used: {prompts}.\n\n"
        f"Split: group-aware and stratified by cate × label (seed {cfg.seed}); frames of one video, a synthetic "
        f"fake and the real image it came from, and near duplicates (pHash distance ≤ {cfg.phash_threshold}) "
        f"never straddle train and test. {extra['groups']} groups; leakage check: "
        f"{extra['leakage']['groups_across']} groups and {extra['leakage']['phash_pairs_across']} near-duplicate "
        "pairs across the split. The exact configuration that ran is in the run directory's "
        "`config.resolved.yaml`; the export's config hash is `" + stats["config_hash"] + "`.")


def _columns_section() -> str:
    from fakeclue_builder.features import COLUMN_DOCS, COLUMNS

    return "## Columns\n\n" + _table(["column", "type", "meaning"],
                                     [[f"`{n}`", k, COLUMN_DOCS.get(n, "")] for n, k in COLUMNS])


def _upstreams(build_config, plan) -> list:
    from fakeclue_builder.manifests import ManifestError, load_manifest

    names = ["fakeclue"]
    for source in getattr(getattr(build_config, "collect", None), "sources", None) or []:
        if source.kind in UPSTREAM_BY_KIND:
            names.append(UPSTREAM_BY_KIND[source.kind])
    for cate in sorted({r.cate for r in plan.rows}):
        names += UPSTREAM_BY_CATE.get(cate, [])
    found = []
    for name in dict.fromkeys(names):
        try:
            found.append(load_manifest(name))
        except (ManifestError, FileNotFoundError, OSError):
            continue
    return found


def _licence_and_citation(build_config, plan) -> str:
    upstreams = _upstreams(build_config, plan)
    licences = _table(["upstream", "licence", "homepage"],
                      [[m.name, " ".join(m.licence.split()), m.homepage] for m in upstreams])
    bib = "\n".join(m.citation.strip() for m in upstreams if m.citation)
    return ("## Licences\n\nThis dataset redistributes images from upstream datasets; their terms apply "
            "(satellite and document rows come from the configured folders — when those are the paper's sources, "
            "the rows below apply).\n\n" + licences + "\n\n## Citation\n\nCite the FakeClue paper and every "
            "upstream dataset you use:\n\n```bibtex\n" + bib + "\n```")


def render_card(cfg, plan, stats, facts: CardFacts, build_config=None) -> str:
    repo = cfg.repo_id or "ORG/NAME"
    intro = (f"# {cfg.pretty_name}\n\nReal and AI-generated / manipulated images in {len(CATEGORIES)} categories, "
             "each with an explanation of why it is real or fake, in the format of FakeClue (*Spot the Fake*, "
             "arXiv 2503.14905): question `Does the image looks real/fake?`, answer `This is a real|fake image.` "
             "followed by evidence grouped by aspect.\n\n```python\nfrom datasets import load_dataset\n\n"
             f'ds = load_dataset("{repo}")  # or load_dataset("path/to/export")\n'
             'ds["test"][0]["image"], ds["test"][0]["answer"]\n```')
    parts = [intro, _counts_section(plan), _provenance_section(plan), _bias_section(plan),
             _build_section(cfg, stats, facts, build_config), _columns_section(),
             _licence_and_citation(build_config, plan)]
    front = yaml.safe_dump(header(cfg, plan, stats), sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n\n".join(parts) + "\n"


def write_card(out_dir: Path, cfg, plan, stats, facts: CardFacts, build_config=None) -> Path:
    from fakeclue_builder.store import atomic_write_bytes

    path = Path(out_dir) / "README.md"
    atomic_write_bytes(path, render_card(cfg, plan, stats, facts, build_config).encode("utf-8"))
    return path
