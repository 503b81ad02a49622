"""Upstream source manifests: one YAML per dataset under `manifests/` (layout, label mapping, quotas, licence).

`load_manifest("genimage")` reads `<repo>/manifests/genimage.yaml` (or `$FAKECLUE_MANIFESTS_DIR/genimage.yaml`),
validates it and caches the result. A missing or malformed file raises `ManifestError` naming the file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

ENV_VAR = "FAKECLUE_MANIFESTS_DIR"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "manifests"

Kind = Literal["genimage", "ffpp", "chameleon", "folder", "fakeclue", "benchmark", "synthesize"]
Cate = Literal["deepfake", "human", "animal", "object", "scene", "satellite", "doc"]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Label = Annotated[int, Field(ge=0, le=1, strict=True)]  # 1 = real, 0 = fake (FakeClue's convention); no bools


class ManifestError(Exception):
    """A manifest is missing or malformed; the message names the file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LayoutEntry(_Model):
    pattern: Text = Field(..., description="Glob-like pattern relative to the dataset root.")
    meaning: Text = Field(..., description="What the matching files are.")


class PaperQuota(_Model):
    images: int | None = Field(None, ge=0, description="Images the FakeClue paper took from this source (null: unknown).")
    fake_real_ratio: float | None = Field(None, gt=0, description="Fake:real ratio the paper used (null: n/a or unknown).")
    notes: Text = Field(..., description="Counts, evidence, and what is unknown.")


class Manifest(_Model):
    name: Text
    kind: Kind = Field(..., description="Collect source kind that reads it, or benchmark / synthesize.")
    homepage: Text
    licence: Text = Field(..., description="SPDX id or short text, noting non-commercial terms.")
    citation: Text = Field(..., description="BibTeX entry.")
    layout: list[LayoutEntry] = Field(..., min_length=1)
    label_map: dict[str, Label] = Field(..., description="Folder name -> label (empty when labels live in json).")
    generators: list[Text] = Field(default_factory=list)
    cate: Cate | None = Field(None, description="Fixed FakeClue category, or null (set by the categorize stage).")
    paper_quota: PaperQuota
    notes: Text

    @field_validator("citation")
    @classmethod
    def _bibtex(cls, v: str) -> str:
        if not v.startswith("@") or "{" not in v:
            raise ValueError("must be a BibTeX entry starting with '@type{key,'")
        return v


def manifests_dir() -> Path:
    """The manifest directory: $FAKECLUE_MANIFESTS_DIR if set, else `<repo>/manifests`."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser().resolve() if env else DEFAULT_DIR


def list_manifests() -> list[str]:
    """Names (file stems) of all manifests, sorted."""
    directory = manifests_dir()
    if not directory.is_dir():
        raise ManifestError(f"manifest directory {directory} does not exist (set {ENV_VAR} or create it)")
    return sorted(p.stem for p in directory.glob("*.yaml") if p.is_file())


def load_manifest(name: str) -> Manifest:
    """Load and validate `<manifests_dir>/<name>.yaml` (cached per directory and name)."""
    if not name or Path(name).name != name or name.endswith((".yaml", ".yml")):
        raise ManifestError(f"invalid manifest name {name!r}: give the bare name, e.g. 'genimage'")
    return _load(manifests_dir(), name)


@lru_cache(maxsize=None)
def _load(directory: Path, name: str) -> Manifest:
    path = directory / f"{name}.yaml"
    if not path.is_file():
        available = ", ".join(p.stem for p in sorted(directory.glob("*.yaml"))) or "none"
        raise ManifestError(f"manifest {path} not found (available: {available})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ManifestError(f"manifest {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {path} must be a YAML mapping, got {type(data).__name__}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        raise ManifestError(f"manifest {path} is malformed:\n{e}") from e


def clear_cache() -> None:
    """Forget loaded manifests (after editing files or changing $FAKECLUE_MANIFESTS_DIR in-process)."""
    _load.cache_clear()
