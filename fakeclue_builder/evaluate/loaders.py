"""Benchmark loaders, one per benchmark, on the exact public formats (see the README's layouts).

Each returns a `Benchmark`: a name, the number of examples (for the progress bar) and an iterator of small
`Example`s (id, image path or bytes, label, category, question, reference explanations, FF++ method). Images are
not decoded here; the export's Parquet is streamed by row group so memory stays flat.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from fakeclue_builder.config_base import ConfigError
from fakeclue_builder.evaluate.verdict import FAKE, REAL, Asks, explanation, parse_verdict, question_asks
from fakeclue_builder.prompts import QUESTION

if TYPE_CHECKING:
    from fakeclue_builder.config_evaluate import EvaluateConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
FFPP_REAL_METHODS = frozenset({"original", "originals", "youtube", "real", "original_sequences", "actors"})
_LOKI_TYPE_RE = re.compile(r"_(real|fake)_ask_(real|fake)_(.+)$")


@dataclass
class Example:
    id: str
    label: int  # 1 = real, 0 = fake
    question: str
    cate: str | None = None
    references: list[str] = field(default_factory=list)  # reference explanations (verdict sentence removed)
    method: str | None = None  # FF++ manipulation method / generator (None or "original" for real)
    asks: Asks | None = None  # what a yes/no question asks (LOKI); None for open questions
    image_path: Path | None = None
    image_bytes: bytes | None = None
    image_error: str | None = None  # why the image cannot be found (becomes an error prediction)
    origin: str | None = None  # where in-memory bytes came from (the export's source_path)

    @property
    def source(self) -> str:
        if self.image_path is not None:
            return str(self.image_path)
        return f"bytes:{self.origin or self.id}"

    def read_bytes(self) -> bytes:
        if self.image_error:
            raise FileNotFoundError(self.image_error)
        if self.image_bytes is not None:
            return self.image_bytes
        assert self.image_path is not None
        return self.image_path.read_bytes()


@dataclass
class Benchmark:
    name: str
    total: int
    examples: Iterator[Example]


def _references(text: str | None) -> list[str]:
    ref = explanation(text) if text else ""
    return [ref] if ref else []


def _require(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist; {fix}")
    return path


def _read_json(path: Path, key: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{key} {path} is not readable JSON ({e}); point {key} at the benchmark's json") from None


# ---------------------------------------------------------------------------------------------- fakeclue


def load_fakeclue(cfg: EvaluateConfig, run_dir: Path) -> Benchmark:
    """Our export (<dir>/data/<split>-*.parquet) or the released FakeClue json (data_json/<split>.json)."""
    data = Path(cfg.data) if cfg.data is not None else Path(run_dir) / "export"
    fix = ("pass --data <export dir> (holding data/<split>-*.parquet) or --data <FakeClue>/data_json/"
           f"{cfg.split}.json with --images <image root>")
    if data.is_file():
        return _fakeclue_json(cfg, data)
    _require(data, "evaluate.data", fix)
    shards = sorted((data / "data").glob(f"{cfg.split}-*.parquet")) or sorted(data.glob(f"{cfg.split}-*.parquet"))
    if shards:
        return _fakeclue_export(cfg, shards)
    if (data / "data_json" / f"{cfg.split}.json").is_file():
        return _fakeclue_json(cfg, data / "data_json" / f"{cfg.split}.json")
    raise ConfigError(f"evaluate.data {data} holds neither data/{cfg.split}-*.parquet nor data_json/{cfg.split}.json; "
                      + fix)


def _fakeclue_export(cfg: EvaluateConfig, shards: list[Path]) -> Benchmark:
    import pyarrow.parquet as pq

    total = sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
    return Benchmark("fakeclue", total, _iter_export(cfg, shards))


def _iter_export(cfg: EvaluateConfig, shards: list[Path]) -> Iterator[Example]:
    import pyarrow.parquet as pq

    wanted = ["image", "label", "cate", "question", "answer", "image_id", "generator", "source_path"]
    for shard in shards:
        parquet = pq.ParquetFile(shard)
        columns = [c for c in wanted if c in parquet.schema_arrow.names]
        if "image" not in columns or "label" not in columns:
            raise ConfigError(f"export shard {shard} has no image/label column; is it a FakeClue export?")
        offset = 0
        for batch in parquet.iter_batches(batch_size=64, columns=columns):
            for i, row in enumerate(batch.to_pylist()):
                image = row["image"] or {}
                yield Example(
                    id=row.get("image_id") or f"{shard.stem}:{offset + i}", label=int(row["label"]),
                    question=row.get("question") or cfg.question or QUESTION, cate=row.get("cate"),
                    references=_references(row.get("answer")), method=row.get("generator"),
                    image_bytes=image.get("bytes"), origin=row.get("source_path"),
                    image_error=None if image.get("bytes") else f"row {offset + i} of {shard} has no image bytes")
            offset += batch.num_rows


def _human_question(conversations: list[dict]) -> str | None:
    for turn in conversations:
        if turn.get("from") == "human":
            return turn["value"].replace("<image>", "").strip()
    return None


def _gpt_answer(conversations: list[dict]) -> str | None:
    return next((turn["value"] for turn in conversations if turn.get("from") == "gpt"), None)


def _released_image_root(path: Path, records: list[dict], split: str) -> Path:
    """<root>/<split>/ (the unzipped test.zip, as our export writes it) or <root>/, for data_json/<split>.json."""
    root = path.parent.parent
    candidates = [root / split, root]
    first = records[0]["image"] if records and isinstance(records[0], dict) and "image" in records[0] else None
    for candidate in candidates:
        if first is not None and (candidate / first).is_file():
            return candidate
    return next((c for c in candidates if c.is_dir()), root)


def _fakeclue_json(cfg: EvaluateConfig, path: Path) -> Benchmark:
    records = _read_json(path, "evaluate.data")
    if not isinstance(records, list):
        raise ConfigError(f"evaluate.data {path} is not a FakeClue json (a list of records)")
    root = Path(cfg.images) if cfg.images is not None else _released_image_root(path, records, cfg.split)
    _require(root, "evaluate.images", "pass --images <the folder the json's image paths are relative to>")

    def examples() -> Iterator[Example]:
        for index, rec in enumerate(records):
            conversations = rec.get("conversations") or []
            yield Example(id=str(rec.get("id") or rec["image"]), label=int(rec["label"]), cate=rec.get("cate"),
                          question=_human_question(conversations) or cfg.question or QUESTION,
                          references=_references(_gpt_answer(conversations)), image_path=root / rec["image"])

    return Benchmark("fakeclue", len(records), examples())


# ---------------------------------------------------------------------------------------------- LOKI


def _read_utf16_json(path: Path) -> Any:
    raw = path.read_bytes()
    for encoding in ("utf-16", "utf-8-sig", "utf-16-le"):
        try:
            return json.loads(raw.decode(encoding))
        except (UnicodeDecodeError, ValueError):
            continue
    raise ConfigError(f"evaluate.explanations {path} is neither UTF-16 nor UTF-8 JSON; pass LOKI's open_ended_vqa.json")


def _loki_reference(record: dict) -> str:
    problems = record.get("problems") or {}
    parts = [p.get("desc", "") for p in problems.get("global") or []]
    parts += [p.get("desc", "") for p in problems.get("regional") or []]
    return " ".join(p.strip() for p in parts if p and p.strip())


def loki_explanations(path: Path) -> dict[str, str]:
    """image file name -> LOKI's human artifact description (global then regional descriptions, concatenated)."""
    data = _read_utf16_json(path)
    records = list(data.values()) if isinstance(data, dict) else data
    out: dict[str, str] = {}
    for record in records:
        if isinstance(record, dict) and record.get("image_path"):
            text = _loki_reference(record)
            if text:
                out[Path(record["image_path"]).name] = text
    return out


def _loki_label(record: dict, asks: Asks | None) -> tuple[int, str | None]:
    match = _LOKI_TYPE_RE.search(record.get("question_type") or "")
    if match:
        return (REAL if match.group(1) == "real" else FAKE), match.group(3)
    verdict = parse_verdict(record.get("answer"), asks)
    if verdict.label is None:
        raise ConfigError(f"LOKI record {record.get('id')!r}: neither question_type nor answer gives the label")
    return verdict.label, None


def load_loki(cfg: EvaluateConfig, run_dir: Path) -> Benchmark:
    fix = "pass --data <LOKI root> (holding data_json/image/true_or_false.json) or the json itself"
    if cfg.data is None:
        raise ConfigError(f"evaluate.data is not set for loki; {fix}")
    data = _require(Path(cfg.data), "evaluate.data", fix)
    tf_path = data if data.is_file() else data / "data_json" / "image" / "true_or_false.json"
    _require(tf_path, "LOKI judgments", fix)
    root = Path(cfg.images) if cfg.images is not None else (tf_path.parents[2] if data.is_file() else data)
    records = _read_json(tf_path, "evaluate.data")
    explained = cfg.explanations or tf_path.with_name("open_ended_vqa.json")
    references = loki_explanations(Path(explained)) if Path(explained).is_file() else {}
    if cfg.explanations is not None and not references:
        raise ConfigError(f"evaluate.explanations {cfg.explanations}: no descriptions found (missing file?)")

    def examples() -> Iterator[Example]:
        for rec in records:
            question = rec["question"].replace("<image>", "").strip()
            asks = question_asks(question)
            label, cate = _loki_label(rec, asks)
            ref = references.get(Path(rec["image_path"]).name)
            yield Example(id=str(rec.get("id") or rec["image_path"]), label=label, cate=cate, question=question,
                          asks=asks, references=[ref] if ref else [], image_path=root / rec["image_path"])

    return Benchmark("loki", len(records), examples())


# ---------------------------------------------------------------------------------------------- DD-VQA


def _frame_index(images: Path) -> dict[str, Path]:
    """file stem and folder name -> an image (a folder maps to its first frame), over the whole tree."""
    index: dict[str, Path] = {}
    for path in sorted(images.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            index.setdefault(path.stem, path)
            index.setdefault(path.parent.name, path)
            index.setdefault(f"{path.parent.name}/{path.stem}", path)
    return index


def _ddvqa_label(method: str, answers: list[str]) -> int:
    for answer in answers:
        verdict = parse_verdict(answer)
        if verdict.label is not None:
            return verdict.label
    return REAL if method.lower() in FFPP_REAL_METHODS else FAKE


def _ddvqa_files(data: Path, split: str) -> list[Path]:
    if data.is_file():
        return [data]
    for folder in (data / f"{split}_set", data / split, data):
        files = sorted(folder.glob("*/*.json")) or sorted(folder.glob("*.json"))
        if files:
            return files
    raise ConfigError(f"evaluate.data {data} holds no DD-VQA json (<root>/{split}_set/<method>/<method>.json)")


def _ddvqa_examples(files: list[Path], frames: dict[str, Path], cfg: EvaluateConfig) -> Iterator[Example]:
    for path in files:
        method = path.stem
        for key, questions in _read_json(path, "evaluate.data").items():
            for qid, qa in questions.items():
                text = qa.get("question", "")
                if not ("real" in text.lower() and "fake" in text.lower()):
                    continue  # skin / eyes / nose questions are not authenticity judgments
                answers = [a for a in (qa.get("answer") or []) if isinstance(a, str)]
                short = key.split("_", 1)[1] if "_" in key else key
                frame = frames.get(f"{method}/{key}") or frames.get(key) or frames.get(f"{method}/{short}")
                label = _ddvqa_label(method, answers)
                yield Example(id=f"{method}/{key}/{qid}", label=label, cate="deepfake", question=text,
                              references=[r for a in answers for r in _references(a)],
                              method=method if label == FAKE else "original", image_path=frame,
                              image_error=None if frame else f"no face frame for {key!r} under {cfg.images}")


def load_ddvqa(cfg: EvaluateConfig, run_dir: Path) -> Benchmark:
    fix = "pass --data <DQ_FF++ root or a <method>.json> and --images <folder of FF++ face frames>"
    if cfg.data is None or cfg.images is None:
        raise ConfigError(f"evaluate.data and evaluate.images must both be set for ddvqa; {fix}")
    data = _require(Path(cfg.data), "evaluate.data", fix)
    images = _require(Path(cfg.images), "evaluate.images", fix)
    files = _ddvqa_files(data, cfg.split)
    frames = _frame_index(images)
    total = sum(1 for _ in _ddvqa_examples(files, frames, cfg))
    return Benchmark("ddvqa", total, _ddvqa_examples(files, frames, cfg))


# ---------------------------------------------------------------------------------------------- ffpp, folder


def load_ffpp(cfg: EvaluateConfig, run_dir: Path) -> Benchmark:
    from fakeclue_builder.store import StageDir

    data = Path(cfg.data) if cfg.data is not None else Path(run_dir)
    def wanted(row) -> bool:
        return row.source in cfg.ffpp_sources if cfg.ffpp_sources else (row.group_id or "").startswith("ffpp:")

    try:
        rows = [r for r in StageDir(data, "collect").iter_rows() if wanted(r)]
    except FileNotFoundError as e:
        raise ConfigError(f"ffpp reads collect's rows: {e} (e.g. fakeclue-builder collect --run-dir {data})") from None
    if not rows:
        raise ConfigError(f"collect in {data} has no FF++ rows; add an ffpp source or set evaluate.ffpp_sources")
    question = cfg.question or QUESTION
    examples = (Example(id=r.image_id or r.source_path, label=r.label, question=question, cate=r.cate or "deepfake",
                        method=r.generator or "original", image_path=data / r.blob if r.blob else None,
                        image_error=None if r.blob else f"row {r.source_path} has no stored bytes")
                for r in rows)
    return Benchmark("ffpp", len(rows), examples)


def load_folder(cfg: EvaluateConfig, run_dir: Path) -> Benchmark:
    fix = "pass --data <folder holding real/ and fake/> (e.g. DMimage)"
    if cfg.data is None:
        raise ConfigError(f"evaluate.data is not set for folder; {fix}")
    root = Path(cfg.data)
    found: list[tuple[Path, int, str | None]] = []
    for name, label in (("real", REAL), ("fake", FAKE)):
        folder = _require(root / name, "folder", fix)
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
            parts = path.relative_to(folder).parts
            found.append((path, label, parts[0] if len(parts) > 1 else None))
    question = cfg.question or QUESTION
    examples = (Example(id=str(p.relative_to(root)), label=label, question=question, cate=cfg.folder_cate,
                        method=method if label == FAKE else None, image_path=p) for p, label, method in found)
    return Benchmark("folder", len(found), examples)


LOADERS: dict[str, Callable[[EvaluateConfig, Path], Benchmark]] = {
    "fakeclue": load_fakeclue, "loki": load_loki, "ddvqa": load_ddvqa, "ffpp": load_ffpp, "folder": load_folder}


def load_benchmark(cfg: EvaluateConfig, run_dir: Path) -> Benchmark:
    return LOADERS[cfg.benchmark](cfg, run_dir)
