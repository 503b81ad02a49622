"""`fakeclue-builder report`: one self-contained HTML page that shows what a run built.

`build_report(run_dir)` reads a run directory (read-only) and writes `DIR/report/index.html`: counts per
cate x label x split, source and generator mix, image format / size / JPEG-quality distributions per label with
a warning when one of them separates real from fake (a shortcut a detector could learn), caption statistics,
annotators, dropped rows by stage and reason with examples, and a gallery per category. Plots are PNGs and
thumbnails JPEGs, both embedded as data URIs: the file can be mailed or opened offline.

Memory and time are bounded for ~100k rows: rows are streamed (counters only); image files are opened for their
header only (JPEG quantisation tables); only the gallery images (`gallery_per_category` per category, the rows
with the smallest image_id per cate/label, so the choice is deterministic) are decoded, with `Image.draft`.

Shortcut rules (documented in the page): format separates the labels when the total variation distance of
the per-label format distributions is >= 0.3; a numeric feature (pixels, file size, JPEG quality) when the
best single-threshold classifier reaches a balanced accuracy >= 0.8. Each needs >= 5 images of each label.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from fakeclue_builder.pipeline import STAGE_ORDER as STAGES  # noqa: F401 - pipeline order, used below
from fakeclue_builder.records import REAL, Row

log = logging.getLogger(__name__)

ROW_STAGES = (("aggregate",), ("annotate",), ("prompts",), ("categorize",), ("collect", "synthesize"))  # latest first
TVD_THRESHOLD = 0.3
BALANCED_ACCURACY_THRESHOLD = 0.8
MIN_PER_LABEL = 5
EXAMPLES_PER_REASON = 3

# IJG (libjpeg) standard luminance quantisation table, natural order, quality 50
IJG_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
            14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
            49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]


# ---------------------------------------------------------------------------------------------- JPEG quality


def ijg_table(quality: int) -> list[int]:
    """The luminance table libjpeg writes for `quality` (1..100)."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, int((v * scale + 50) // 100))) for v in IJG_LUMA]


_IJG_TABLES = {q: ijg_table(q) for q in range(1, 101)}


def estimate_jpeg_quality(quantization: dict | None) -> int | None:
    """The IJG quality whose scaled standard luminance table is closest (L1) to table 0; None without tables.
    Exact for files written by libjpeg (PIL, most cameras' software); the nearest equivalent otherwise."""
    if not quantization or 0 not in quantization or len(quantization[0]) != 64:
        return None
    return _nearest_quality(tuple(quantization[0]))


@lru_cache(maxsize=4096)  # a dataset has few distinct tables: each is matched once
def _nearest_quality(table: tuple[int, ...]) -> int:
    # the median implied scale gives a first guess; the L1 match around it settles clipping and rounding
    ratios = sorted(100 * t / s for t, s in zip(table, IJG_LUMA) if t < 255) or [5000.0]  # 255: clipped
    scale = ratios[len(ratios) // 2]
    guess = round((200 - scale) / 2) if scale <= 100 else round(5000 / max(scale, 1))
    candidates = range(max(1, guess - 4), min(100, guess + 4) + 1)
    return min(candidates, key=lambda q: (sum(abs(a - b) for a, b in zip(_IJG_TABLES[q], table)), -q))


def jpeg_quality_of(path: Path) -> int | None:
    """Opens the header only (PIL's lazy open parses the DQT segments without decoding pixels)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return estimate_jpeg_quality(getattr(im, "quantization", None)) if im.format == "JPEG" else None
    except (OSError, ValueError, SyntaxError):
        return None


# ---------------------------------------------------------------------------------------------- shortcuts


def total_variation(a: Counter, b: Counter) -> float:
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


def threshold_balanced_accuracy(a: Counter, b: Counter) -> float:
    """Best balanced accuracy of `x <= t -> a` (or `-> b`) over every threshold t: 0.5 = no separation."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.5
    best, ca, cb = 0.5, 0, 0
    for value in sorted(set(a) | set(b)):
        ca, cb = ca + a[value], cb + b[value]
        acc = 0.5 * (ca / na + 1 - cb / nb)
        best = max(best, acc, 1 - acc)
    return best


@dataclass
class Shortcut:
    feature: str
    metric: str  # "total variation distance" | "threshold balanced accuracy"
    value: float
    threshold: float
    enough: bool  # >= MIN_PER_LABEL images of each label

    @property
    def warn(self) -> bool:
        return self.enough and self.value >= self.threshold


def shortcuts(features: dict[str, dict[int, Counter]]) -> list[Shortcut]:
    out = []
    for name, per_label in features.items():
        real, fake = per_label.get(REAL, Counter()), per_label.get(1 - REAL, Counter())
        enough = min(sum(real.values()), sum(fake.values())) >= MIN_PER_LABEL
        if name == "format":
            out.append(Shortcut(name, "total variation distance", total_variation(real, fake), TVD_THRESHOLD, enough))
        else:
            out.append(Shortcut(name, "threshold balanced accuracy", threshold_balanced_accuracy(real, fake),
                                BALANCED_ACCURACY_THRESHOLD, enough))
    return out


# ---------------------------------------------------------------------------------------------- rows


def size_bin(n_bytes: int) -> int:
    """File sizes binned to ~5% (keeps the counter small at 100k rows)."""
    return int(round(1.05 ** round(math.log(max(n_bytes, 1), 1.05))))


@dataclass
class RowSummary:
    """Counters over the rows of the latest finished row stage (restricted to exported rows after export)."""

    stage: str = ""
    counts: Counter = field(default_factory=Counter)  # (cate, label, split) -> rows
    sources: Counter = field(default_factory=Counter)  # (source, label)
    generators: Counter = field(default_factory=Counter)  # generator (fakes)
    features: dict = field(default_factory=lambda: {k: {} for k in ("format", "pixels", "file size", "JPEG quality")})
    caption_words: dict = field(default_factory=dict)  # label -> Counter(words -> captions)
    annotators: dict = field(default_factory=dict)  # name -> Counter(answers, ok, supports, model@revision)
    gallery: dict = field(default_factory=dict)  # (cate, label) -> sorted [(image_id, item)]
    gallery_k: int = 12
    not_exported: int = 0

    def _feature(self, name: str, label: int, value) -> None:
        self.features[name].setdefault(label, Counter())[value] += 1

    def add(self, row: Row, split: str | None, run_dir: Path) -> None:
        cate = row.cate or "unknown"
        self.counts[(cate, row.label, split)] += 1
        self.sources[(row.source, row.label)] += 1
        if row.label != REAL:
            self.generators[row.generator or "unknown"] += 1
        self._feature("format", row.label, row.format or "unknown")
        if row.width and row.height:
            self._feature("pixels", row.label, row.width * row.height)
        if row.n_bytes:
            self._feature("file size", row.label, size_bin(row.n_bytes))
        quality = jpeg_quality_of(run_dir / row.blob) if row.format == "JPEG" and row.blob else None
        if quality is not None:
            self._feature("JPEG quality", row.label, quality)
        if row.caption:
            self.caption_words.setdefault(row.label, Counter())[len(row.caption.split())] += 1
        self._annotators(row)
        self._gallery(row, cate, split, quality)

    def _annotators(self, row: Row) -> None:
        for a in row.annotations:
            c = self.annotators.setdefault(a.get("annotator") or "?", Counter())
            c["answers"] += 1
            c["ok"] += bool(a.get("ok"))
            c[f"model:{a.get('model')}@{a.get('revision')}"] += 1
        for claim in row.caption_claims:
            for name in claim.get("annotators") or []:
                self.annotators.setdefault(name, Counter())["claims supported"] += 1

    def _gallery(self, row: Row, cate: str, split: str | None, quality: int | None) -> None:
        keep = self.gallery.setdefault((cate, row.label), [])
        key = row.image_id or row.source_path
        if self.gallery_k <= 0 or (len(keep) >= self.gallery_k and key >= keep[-1][0]):
            return
        supporters = sorted({n for c in row.caption_claims for n in (c.get("annotators") or [])})
        item = {"image_id": row.image_id, "label": row.label, "cate": cate, "caption": row.caption,
                "supporters": supporters or sorted(a["annotator"] for a in row.annotations if a.get("ok")),
                "source": row.source, "generator": row.generator, "source_path": row.source_path, "blob": row.blob,
                "format": row.format, "width": row.width, "height": row.height, "n_bytes": row.n_bytes,
                "quality": quality, "split": split, "prompt_id": row.prompt_id, "group_id": row.group_id}
        bisect.insort(keep, (key, item), key=lambda kv: kv[0])
        del keep[self.gallery_k:]

    def gallery_items(self, cate: str) -> list[dict]:
        """Up to `gallery_k` rows of `cate`, alternating real and fake while both last."""
        real = [item for _, item in self.gallery.get((cate, REAL), [])]
        fake = [item for _, item in self.gallery.get((cate, 1 - REAL), [])]
        out = []
        while (real or fake) and len(out) < self.gallery_k:
            for side in (real, fake):
                if side and len(out) < self.gallery_k:
                    out.append(side.pop(0))
        return out


# ---------------------------------------------------------------------------------------------- run directory


@dataclass
class StageInfo:
    name: str
    state: str  # complete | incomplete | not run
    stats: dict | None = None


def stage_infos(run_dir: Path) -> list[StageInfo]:
    from fakeclue_builder.store import StageDir

    out = []
    for name in STAGES:
        stage = StageDir(run_dir, name)
        stats = stage.read_stats()
        if stats is not None:
            out.append(StageInfo(name, "complete", stats))
        else:
            out.append(StageInfo(name, "incomplete" if stage.path.exists() else "not run"))
    return out


def read_splits(run_dir: Path) -> dict[str, str] | None:
    """image_id -> train | test from the export's Parquet shards (the image_id column only)."""
    from fakeclue_builder.store import read_table

    data = run_dir / "export" / "data"
    if not (run_dir / "export" / "_stats.json").is_file() or not data.is_dir():
        return None
    split: dict[str, str] = {}
    for path in sorted(data.glob("*.parquet")):
        side = path.name.split("-")[0]
        for image_id in read_table(path, columns=["image_id"]).column("image_id").to_pylist():
            split[image_id] = side
    return split


def summarize_rows(run_dir: Path, split: dict[str, str] | None, gallery_k: int) -> RowSummary:
    from fakeclue_builder.store import StageDir

    summary = RowSummary(gallery_k=gallery_k)
    for names in ROW_STAGES:
        stages = [StageDir(run_dir, n) for n in names]
        if not stages[0].is_complete():
            continue
        summary.stage = " + ".join(s.name for s in stages if s.is_complete())
        for stage in stages:
            if not stage.is_complete():
                continue
            for row in stage.iter_rows():
                side = split.get(row.image_id) if split is not None else None
                if split is not None and side is None:
                    summary.not_exported += 1  # dropped by export: listed under Dropped rows
                    continue
                summary.add(row, side, run_dir)
        break
    return summary


def dropped_examples(run_dir: Path, stage: str) -> dict[str, list[dict]]:
    """Up to EXAMPLES_PER_REASON dropped rows per reason (small columns only, streamed)."""
    import pyarrow.parquet as pq

    path = run_dir / stage / "dropped.parquet"
    if not path.is_file():
        return {}
    columns = ["reason", "detail", "source", "source_path", "label", "cate", "image_id", "duplicate_of"]
    out: dict[str, list[dict]] = {}
    pf = pq.ParquetFile(path)
    names = [c for c in columns if c in pf.schema_arrow.names]
    for batch in pf.iter_batches(batch_size=4096, columns=names):
        for record in batch.to_pylist():
            examples = out.setdefault(record.get("reason") or "unknown", [])
            if len(examples) < EXAMPLES_PER_REASON:
                examples.append(record)
    return out


# ---------------------------------------------------------------------------------------------- entry point


def build_report(run_dir: Path, out_dir: Path | None = None, gallery_per_category: int = 12) -> Path:
    """Write `out_dir/index.html` (default `run_dir/report/`) and return its path."""
    from fakeclue_builder.report_html import render
    from fakeclue_builder.store import atomic_write_bytes

    started = time.monotonic()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    stages = stage_infos(run_dir)
    split = read_splits(run_dir)
    rows = summarize_rows(run_dir, split, gallery_per_category)
    dropped = {s.name: dropped_examples(run_dir, s.name) for s in stages if s.state == "complete"}
    page = render(run_dir, stages, split is not None, rows, shortcuts(rows.features), dropped)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    atomic_write_bytes(out / "index.html", page.encode("utf-8"))
    log.info("report: %s in %.1fs", out / "index.html", time.monotonic() - started)
    return out / "index.html"
