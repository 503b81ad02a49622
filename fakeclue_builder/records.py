"""The row schema shared by every stage: one row is one image.

Columns are only ever added, never renamed. FakeClue's own names are used where they exist
(`label` 1 = real / 0 = fake, `cate`). A stage reads `Row`s and yields `Row`s; Parquet files between
stages carry exactly `SCHEMA`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # pyarrow is imported on first use: worker processes that only probe images never load it
    import pyarrow as pa

REAL = 1
FAKE = 0
CATEGORIES = ("deepfake", "human", "animal", "object", "scene", "satellite", "doc")
STATUS_OK = "ok"
STATUS_DROPPED = "dropped"


def label_name(label: int) -> str:
    """"real" for 1, "fake" for 0 (FakeClue's convention)."""
    return "real" if label == REAL else "fake"


@dataclass(slots=True)
class Row:
    """One image and everything the pipeline knows about it."""

    source: str  # name of the configured source this row came from
    source_path: str  # path (or zip member / video path) the image was read from
    label: int  # 1 = real, 0 = fake
    image_id: str | None = None  # sha256 of the original bytes (None if the file could not be read)
    generator: str | None = None  # generator name for fakes (None for real)
    cate: str | None = None  # deepfake|human|animal|object|scene|satellite|doc, None until known
    group_id: str | None = None  # rows of one group never straddle splits (e.g. an FF++ video)
    format: str | None = None  # JPEG, PNG, WEBP, GIF, ... as identified from the bytes
    width: int | None = None
    height: int | None = None
    mode: str | None = None  # PIL mode of the decoded image (RGB, CMYK, I;16, P, LA, RGBA, ...)
    n_frames: int | None = None  # > 1 for animated GIF/WebP
    exif_orientation: int | None = None  # EXIF tag 274 if present (bytes are never rotated)
    n_bytes: int | None = None
    phash: str | None = None  # 64-bit perceptual hash, 16 hex chars (imagehash.phash)
    blob: str | None = None  # path of the original bytes in the run's blob store, relative to the run dir
    status: str = STATUS_OK  # ok | dropped
    reason: str | None = None  # why the row was dropped (a fixed vocabulary, see images.REASONS)
    detail: str | None = None  # free-text detail for the reason (exception message, kept row, ...)
    duplicate_of: str | None = None  # image_id of the kept row this duplicate was dropped for
    frame_index: int | None = None  # frame number in the source video (FF++)
    encoding: str | None = None  # how we encoded bytes we created ("png-lossless:face-crop"), None if original
    no_forced_artifacts: bool = False  # high-quality fake: the prompt must not force an artifact (Chameleon)
    release_caption: str | None = None  # caption carried over from an imported FakeClue release
    sample_key: str | None = None  # seeded sampling priority (lower = chosen first)
    quota_group: str | None = None  # the group quotas are counted in (generator/label, method, ...)
    meta: dict[str, str] = field(default_factory=dict)  # source-specific extras, string valued
    # categorize
    cate_source: str | None = None  # where `cate` came from: source | classifier | fallback
    cate_confidence: float | None = None  # summed probability of the chosen category
    cate_scores: dict[str, float] = field(default_factory=dict)  # summed probability per category
    cate_uncertain: bool = False  # confidence below categorize.min_confidence (flagged, not guessed)
    cate_model: str | None = None  # classifier that decided (timm name + checkpoint)
    # prompts
    prompt_id: str | None = None  # template id, e.g. "fake_animal" or "fake_scene+no_forced_artifacts"
    prompt_sha256: str | None = None  # sha256 of the rendered prompt text
    prompt: str | None = None  # the rendered prompt given to the annotators
    # annotate: one entry per annotator (see ANNOTATION_FIELDS)
    annotations: list[dict] = field(default_factory=list)
    # aggregate
    caption: str | None = None  # the final explanation: "This is a real|fake image. <evidence; ...>"
    caption_claims: list[dict] = field(default_factory=list)  # kept claims: text, aspect, support, annotators, critical
    aggregate_mode: str | None = None  # consensus | llm

    def drop(self, reason: str, detail: str | None = None, duplicate_of: str | None = None) -> "Row":
        """Mark this row dropped (returns self for chaining)."""
        self.status = STATUS_DROPPED
        self.reason = reason
        self.detail = detail
        self.duplicate_of = duplicate_of
        return self

    @property
    def kept(self) -> bool:
        return self.status == STATUS_OK


_FIELD_NAMES = [f.name for f in dataclasses.fields(Row)]
_MAPS = ("meta", "cate_scores")  # dict fields, stored as Arrow maps
_FLAGS = ("no_forced_artifacts", "cate_uncertain")  # non-null booleans


def _annotation_fields(pa) -> list[tuple[str, "pa.DataType"]]:
    """One annotator's answer for one row."""
    return [
        ("annotator", pa.string()),  # the name in annotate.annotators
        ("model", pa.string()),  # model path or hub id
        ("revision", pa.string()),
        ("text", pa.string()),  # the answer (response prefix included)
        ("finish_reason", pa.string()),
        ("tokens", pa.int32()),
        ("ok", pa.bool_()),  # passed validation
        ("reason", pa.string()),  # why not (empty, no_verdict, verdict_mismatch, truncated, repetition, ...)
        ("attempts", pa.int16()),
        ("cached", pa.bool_()),  # served from the request cache
    ]


@lru_cache(maxsize=1)
def _schema() -> "pa.Schema":
    import pyarrow as pa

    schema = pa.schema(
        [
            pa.field("image_id", pa.string()),
            pa.field("source", pa.string(), nullable=False),
            pa.field("source_path", pa.string(), nullable=False),
            pa.field("label", pa.int8(), nullable=False),
            pa.field("generator", pa.string()),
            pa.field("cate", pa.string()),
            pa.field("group_id", pa.string()),
            pa.field("format", pa.string()),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("mode", pa.string()),
            pa.field("n_frames", pa.int32()),
            pa.field("exif_orientation", pa.int16()),
            pa.field("n_bytes", pa.int64()),
            pa.field("phash", pa.string()),
            pa.field("blob", pa.string()),
            pa.field("status", pa.string(), nullable=False),
            pa.field("reason", pa.string()),
            pa.field("detail", pa.string()),
            pa.field("duplicate_of", pa.string()),
            pa.field("frame_index", pa.int32()),
            pa.field("encoding", pa.string()),
            pa.field("no_forced_artifacts", pa.bool_(), nullable=False),
            pa.field("release_caption", pa.string()),
            pa.field("sample_key", pa.string()),
            pa.field("quota_group", pa.string()),
            pa.field("meta", pa.map_(pa.string(), pa.string())),
            pa.field("cate_source", pa.string()),
            pa.field("cate_confidence", pa.float32()),
            pa.field("cate_scores", pa.map_(pa.string(), pa.float32())),
            pa.field("cate_uncertain", pa.bool_(), nullable=False),
            pa.field("cate_model", pa.string()),
            pa.field("prompt_id", pa.string()),
            pa.field("prompt_sha256", pa.string()),
            pa.field("prompt", pa.string()),
            pa.field("annotations", pa.list_(pa.struct([pa.field(n, t) for n, t in _annotation_fields(pa)]))),
            pa.field("caption", pa.string()),
            pa.field("caption_claims", pa.list_(pa.struct([
                pa.field("text", pa.string()), pa.field("aspect", pa.string()), pa.field("support", pa.int16()),
                pa.field("annotators", pa.list_(pa.string())), pa.field("critical", pa.bool_())]))),
            pa.field("aggregate_mode", pa.string()),
        ]
    )
    assert sorted(_FIELD_NAMES) == sorted(schema.names), "records.Row and records.SCHEMA disagree"
    return schema


def __getattr__(name: str):
    if name == "SCHEMA":  # the explicit pyarrow schema of every stage's Parquet files
        return _schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def rows_to_table(rows: Iterable[Row]) -> "pa.Table":
    """Columnar conversion with the explicit schema (never inferred)."""
    import pyarrow as pa

    rows = list(rows)
    schema = _schema()
    if not rows:  # (pyarrow's list conversion imports pandas on first use: 0.2 s for nothing)
        return pa.Table.from_batches([], schema=schema)
    columns = {name: [getattr(row, name) for row in rows] for name in schema.names if name not in _MAPS}
    for name in _MAPS:
        columns[name] = [list(getattr(row, name).items()) for row in rows]
    return pa.Table.from_pydict(columns, schema=schema)


def table_to_rows(table: "pa.Table") -> list[Row]:
    """Inverse of `rows_to_table`; unknown extra columns are ignored, missing ones take defaults."""
    names = [n for n in table.column_names if n in _FIELD_NAMES]
    out = []
    for record in table.select(names).to_pylist():
        for name in _MAPS:
            if name in record:
                record[name] = dict(record[name] or [])
        for name in ("annotations", "caption_claims"):
            if record.get(name) is None:
                record.pop(name, None)
        for name in _FLAGS:
            if record.get(name) is None:
                record[name] = False
        out.append(Row(**record))
    return out
