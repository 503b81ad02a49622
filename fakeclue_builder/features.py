"""The exported columns: the HF `datasets` features (embedded in every Parquet shard's metadata, written out
here so that exporting never imports `datasets`), the card's YAML form of them, and Parquet write options."""

from __future__ import annotations

import json
from functools import lru_cache

LABEL_NAMES = ["fake", "real"]  # ClassLabel: 0 = fake, 1 = real, as in FakeClue
COLUMNS = [  # (name, type) in file order
    ("image", "image"), ("label", "label"), ("cate", "string"), ("question", "string"), ("answer", "string"),
    ("image_id", "string"), ("source", "string"), ("generator", "string"), ("source_path", "string"),
    ("group_id", "string"), ("format", "string"), ("width", "int64"), ("height", "int64"), ("n_bytes", "int64"),
    ("annotators", "strings"), ("annotator_models", "strings"), ("annotator_revisions", "strings"),
    ("prompt_id", "string"), ("prompt_sha256", "string"), ("aggregate_mode", "string"),
]
LIST_COLUMNS = [name for name, kind in COLUMNS if kind == "strings"]
COLUMN_DOCS = {
    "image": "the original file bytes (never re-encoded) and a content-addressed file name `<sha256>.<ext>`",
    "label": "ClassLabel: 0 = fake, 1 = real (FakeClue's convention)",
    "cate": "deepfake, human, animal, object, scene, satellite or doc",
    "question": "`Does the image looks real/fake?` (FakeClue's literal question)",
    "answer": "the explanation: `This is a real|fake image.` followed by evidence grouped by aspect",
    "image_id": "sha256 of the image bytes", "source": "the configured source (collect) or generator (synthesize)",
    "generator": "the generator of a fake (null for real images)", "source_path": "where the image was read",
    "group_id": "rows of one group (an FF++ video, a synthetic fake and its real tile) share a split",
    "format": "image format identified from the bytes", "width": "pixels", "height": "pixels",
    "n_bytes": "file size", "annotators": "annotators whose answers passed validation",
    "annotator_models": "their model ids (same order)", "annotator_revisions": "their model revisions",
    "prompt_id": "the annotation prompt template", "prompt_sha256": "sha256 of the rendered prompt",
    "aggregate_mode": "consensus or llm",
}
# `datasets`' serialized form of each type ("Sequence" is read by datasets 2.x-3.x and, as List, by 4.x+)
_HF_TYPES = {
    "image": {"_type": "Image"},
    "label": {"names": LABEL_NAMES, "_type": "ClassLabel"},
    "string": {"dtype": "string", "_type": "Value"},
    "int64": {"dtype": "int64", "_type": "Value"},
    "strings": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
}
_YAML_TYPES = {
    "image": {"dtype": "image"},
    "label": {"dtype": {"class_label": {"names": {str(i): n for i, n in enumerate(LABEL_NAMES)}}}},
    "string": {"dtype": "string"},
    "int64": {"dtype": "int64"},
    "strings": {"sequence": "string"},
}


@lru_cache(maxsize=1)
def arrow_schema():
    """pyarrow schema with the HF features in its metadata (what `datasets` reads back as Image/ClassLabel)."""
    import pyarrow as pa

    types = {"image": pa.struct([("bytes", pa.binary()), ("path", pa.string())]), "label": pa.int64(),
             "string": pa.string(), "int64": pa.int64(), "strings": pa.list_(pa.string())}
    features = {name: _HF_TYPES[kind] for name, kind in COLUMNS}
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema([(name, types[kind]) for name, kind in COLUMNS], metadata=metadata)


def parquet_options() -> dict:
    """Image bytes are stored as they are (already compressed; no dictionary, no min/max statistics);
    everything else zstd with dictionaries and statistics."""
    columns = ["image.path"] + [f"{name}.list.element" if kind == "strings" else name
                                for name, kind in COLUMNS if name != "image"]
    return {"compression": {"image.bytes": "NONE", **{c: "ZSTD" for c in columns}}, "use_dictionary": columns,
            "write_statistics": columns}


def yaml_features() -> list[dict]:
    """The card's `dataset_info.features` (the Hub's YAML form)."""
    return [{"name": name, **_YAML_TYPES[kind]} for name, kind in COLUMNS]
