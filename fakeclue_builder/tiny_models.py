"""Tiny random models with real architectures and configs, saved the way real checkpoints are.

They let every model stage run its real loading and inference code offline on CPU (demo profile, tests).
Their outputs are meaningless by design. `fakeclue-builder models make-tiny DIR` builds them.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

EVA02_TINY_ARGS = {"depth": 2, "embed_dim": 48, "num_heads": 2, "img_size": 56}


def make_tiny_eva02(out_dir: Path, num_classes: int = 1000, seed: int = 0) -> Path:
    """A 2-layer EVA-02 (timm `eva02_tiny_patch14_224` shrunk) with an ImageNet head, saved as a timm/HF
    folder (config.json + model.safetensors) that loads with `timm.create_model("local-dir:DIR")`."""
    import timm
    import torch
    from timm.models import save_for_hf

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file():
        return out_dir
    torch.manual_seed(seed)
    size = EVA02_TINY_ARGS["img_size"]
    model = timm.create_model("eva02_tiny_patch14_224", pretrained=False, num_classes=num_classes,
                              pretrained_cfg_overlay={"input_size": (3, size, size)}, **EVA02_TINY_ARGS)
    save_for_hf(model, out_dir, model_args=dict(EVA02_TINY_ARGS), safe_serialization=True)  # no pickles
    log.info("tiny EVA-02 (%d classes) saved to %s", num_classes, out_dir)
    return out_dir


def _sd(out_dir: Path) -> Path:
    from fakeclue_builder.synth.tiny_diffusers import make_tiny_sd

    return make_tiny_sd(out_dir)


def _controlnet(out_dir: Path) -> Path:
    from fakeclue_builder.synth.tiny_diffusers import make_tiny_controlnet

    return make_tiny_controlnet(out_dir, out_dir.parent / "sd")


def _vlm(family: str, seed: int = 0):
    def build(out_dir: Path) -> Path:
        from fakeclue_builder.tiny_vlms import TINY_VLMS

        return TINY_VLMS[family](out_dir, seed=seed)

    return build


TINY_MODELS = {"eva02": make_tiny_eva02, "sd": _sd, "controlnet": _controlnet, "qwen2_vl": _vlm("qwen2_vl"),
               "llava": _vlm("llava"), "qwen2_vl_alt": _vlm("qwen2_vl", seed=1)}


def make_tiny(out_dir: Path, only: list[str] | None = None) -> dict[str, Path]:
    """Build the tiny models under `out_dir/<name>`; returns name -> folder."""
    names = only or list(TINY_MODELS)
    unknown = sorted(set(names) - set(TINY_MODELS))
    if unknown:
        raise ValueError(f"unknown tiny model(s) {unknown}; choose from {sorted(TINY_MODELS)}")
    return {name: TINY_MODELS[name](Path(out_dir) / name) for name in names}
