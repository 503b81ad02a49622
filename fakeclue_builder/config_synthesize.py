"""Configuration of the synthesize stage's generators (re-exported by `fakeclue_builder.config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from fakeclue_builder.config_base import _Model


class _GeneratorBase(_Model):
    name: str | None = Field(None, description="Generator name; rows get source = synth-<name> (default: the kind).")


class DocumentsGenerator(_GeneratorBase):
    kind: Literal["documents"]
    count: int = Field(12, ge=1, description="Pages to render.")
    doc_types: list[Literal["newspaper", "paper", "magazine"]] = Field(
        ["newspaper", "paper", "magazine"], description="Procedural layout kinds, used in turn."
    )
    layouts: Path | None = Field(
        None, description="M6Doc-style COCO json (images, annotations with bbox [x,y,w,h], categories); "
        "when given, page layouts are taken from it instead of generated."
    )
    corpus: Path | None = Field(None, description="Folder of .txt files for body text (default: the built-in corpus).")
    fonts: list[Path] | None = Field(None, description="TrueType fonts (default: the DejaVu fonts matplotlib ships).")
    page_size_mm: tuple[float, float] = Field((210.0, 297.0), description="Page width and height in mm (A4).")
    dpi: int = Field(150, ge=36, le=600, description="Rendering resolution.")
    figures_from: list[str] | None = Field(
        None, description="Collect sources whose real images are cropped into figures (default: every real row)."
    )
    handwriting: bool = Field(False, description="Add handwriting-like annotations (scribbles, underlines, notes).")


class _DiffusersBase(_GeneratorBase):
    model: str = Field(..., description="diffusers model folder or Hub id (e.g. stabilityai/stable-diffusion-2-1).")
    revision: str | None = Field(None, description="Hub revision (commit, tag or branch) to pin.")
    pipeline: str = Field(
        "auto", description="diffusers pipeline class (e.g. StableDiffusionImg2ImgPipeline); auto: from the model."
    )
    steps: int = Field(30, ge=1, description="Denoising steps.")
    guidance_scale: float = Field(7.5, ge=0.0, description="Classifier-free guidance scale.")
    height: int = Field(512, ge=8, description="Output height in pixels (txt2img).")
    width: int = Field(512, ge=8, description="Output width in pixels (txt2img).")
    batch_size: int = Field(4, ge=1, description="Images per pipeline call.")
    device: str = Field("auto", description="auto (cuda if visible, else cpu), cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="auto: float16 on GPU, float32 on CPU.")
    negative_prompt: str | None = Field(None, description="Negative prompt for every call.")


class ControlNetSpec(_Model):
    model: str = Field(..., description="ControlNet model folder or Hub id.")
    revision: str | None = Field(None, description="Hub revision to pin.")
    conditioning: Literal["canny", "segmentation"] = Field("canny", description="Map computed from the real tile.")
    scale: float = Field(1.0, ge=0.0, description="controlnet_conditioning_scale.")


class SatelliteGenerator(_DiffusersBase):
    kind: Literal["satellite"]
    mode: Literal["img2img", "txt2img"] = Field("img2img", description="From real tiles, or from scene prompts.")
    tiles_from: list[str] | None = Field(
        None, description="Collect sources whose rows with cate satellite are the real tiles (default: all)."
    )
    per_tile: int = Field(1, ge=1, description="img2img: fakes per real tile.")
    tile_size: int | None = Field(
        512, ge=8, description="img2img: real tiles are centre-cropped and resized to this square size, the model's "
        "resolution (None: keep each tile's size, rounded to a multiple of 8)."
    )
    count: int = Field(8, ge=1, description="txt2img: images to generate (scene types in turn).")
    strength: dict[str, float] = Field(
        {"urban": 0.55, "suburban": 0.6, "natural": 0.7}, description="img2img strength per scene type."
    )
    prompts: dict[str, str] = Field(
        {
            "urban": "high-resolution satellite image of a dense city district, buildings, roads, cars, top-down view",
            "suburban": "high-resolution aerial image of a suburban neighbourhood, houses, gardens, streets, top-down view",
            "natural": "high-resolution satellite image of natural land, forest, fields, river, top-down view",
        },
        description="Prompt per scene type; a tile's scene type is the urban/suburban/natural folder it sits in, "
        "else the types are used in turn.",
    )
    controlnet: ControlNetSpec | None = Field(None, description="Optional ControlNet conditioned on the real tile.")


class DiffusionGenerator(_DiffusersBase):
    kind: Literal["diffusion"]
    cate: Literal["deepfake", "human", "animal", "object", "scene", "satellite", "doc"] | None = Field(
        None, description="Category of the generated images (None: the categorize stage decides)."
    )
    prompts: list[str] = Field(..., min_length=1, description="Text prompts.")
    per_prompt: int = Field(1, ge=1, description="Images per prompt.")


GeneratorSpec = Annotated[
    Union[DocumentsGenerator, SatelliteGenerator, DiffusionGenerator], Field(discriminator="kind")
]


class SynthesizeConfig(_Model):
    generators: list[GeneratorSpec] = Field(..., min_length=1, description="What to generate.")
    seed: int = Field(0, description="Base seed; each image's seed derives from it and is recorded.")
    shard_size: int = Field(16, ge=1, description="Generated images per shard.")
    format: Literal["PNG", "WEBP"] = Field("PNG", description="Lossless encoding of generated images (done once).")

    @field_validator("generators")
    @classmethod
    def _unique_names(cls, generators: list[Any]) -> list[Any]:
        names = [g.name or g.kind for g in generators]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"generator name(s) {repeated} used twice; give each generator a distinct `name:`")
        return generators
