"""The exported columns: HF `datasets` features (embedded in every Parquet shard) and Parquet write options."""

from __future__ import annotations

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


@lru_cache(maxsize=1)
def features():
    """The `datasets.Features` of an export row."""
    import datasets

    kinds = {"image": datasets.Image(), "label": datasets.ClassLabel(names=LABEL_NAMES),
             "string": datasets.Value("string"), "int64": datasets.Value("int64"),
             "strings": datasets.List(datasets.Value("string"))}
    spec = {name: kinds[kind] for name, kind in COLUMNS}
    return datasets.Features(spec)


def arrow_schema():
    """pyarrow schema with the HF features in its metadata (what `datasets` reads back as Image/ClassLabel)."""
    return features().arrow_schema


def parquet_options() -> dict:
    """Image bytes are stored as they are (already compressed; no dictionary, no min/max statistics);
    everything else zstd with dictionaries and statistics."""
    other = [name for name in arrow_schema().names if name != "image"]
    columns = ["image.path"] + [f"{name}.list.element" if name in LIST_COLUMNS else name for name in other]
    compression = {"image.bytes": "NONE", **{c: "ZSTD" for c in columns}}
    return {"compression": compression, "use_dictionary": columns, "write_statistics": columns}


def yaml_features() -> list:
    """The card's `dataset_info.features` (the Hub's YAML form of the features)."""
    return features()._to_yaml_list()
