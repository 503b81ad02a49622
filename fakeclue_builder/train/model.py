"""Loading the LLaVA checkpoint for training: dtype, frozen parts, gradient checkpointing, optional LoRA."""

from __future__ import annotations

import logging
from typing import Any

from fakeclue_builder.config_base import ConfigError
from fakeclue_builder.config_train import TrainConfig

log = logging.getLogger(__name__)


def resolve_device(cfg: TrainConfig) -> str:
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no GPU is visible; set train.device=cpu or auto")
    return cfg.device


def use_bf16(cfg: TrainConfig, device: str) -> bool:
    import torch

    if cfg.bf16 is not None:
        return cfg.bf16
    return device == "cuda" and torch.cuda.is_bf16_supported()


def load_processor(cfg: TrainConfig):
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(cfg.model), revision=cfg.revision)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load a processor from train.model {cfg.model!r}: {e}; point train.model at a "
                          "LLaVA checkpoint folder (or `fakeclue-builder models make-tiny DIR --only llava`)") from None


def load_model(cfg: TrainConfig, bf16: bool):
    import torch
    from transformers import LlavaForConditionalGeneration

    try:
        model = LlavaForConditionalGeneration.from_pretrained(
            str(cfg.model), revision=cfg.revision, dtype=torch.bfloat16 if bf16 else torch.float32)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load LlavaForConditionalGeneration from train.model {cfg.model!r}: {e}; "
                          "point train.model at a LLaVA-family checkpoint (e.g. llava-hf/llava-1.5-7b-hf)") from None
    model.config.use_cache = False  # caching is for generation; it conflicts with gradient checkpointing
    return model


def vision_tower(model) -> Any:
    return model.model.vision_tower


def _numel(parameter) -> int:
    return getattr(parameter, "ds_numel", None) or parameter.numel()  # ZeRO-3 partitions leave numel() == 0


def prepare_for_training(model, cfg: TrainConfig):
    """Freeze what the recipe does not train, enable gradient checkpointing, wrap LoRA adapters; returns the model."""
    if not cfg.train_vision_tower:
        for parameter in vision_tower(model).parameters():
            parameter.requires_grad_(False)
    if cfg.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x; older: the alias
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # checkpointed blocks need a grad-requiring input (frozen embeddings)
    if cfg.lora.enabled:
        model = _wrap_lora(model, cfg)
    trainable = sum(_numel(p) for p in model.parameters() if p.requires_grad)
    total = sum(_numel(p) for p in model.parameters())
    log.info("trainable parameters: %s of %s (%.1f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))
    return model


def _wrap_lora(model, cfg: TrainConfig):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("train.lora.enabled needs peft; install the train extra: pip install -e '.[train]'") from None
    # adapters only in the language model (the vision tower's attention uses the same q/k/v names); fully trained
    # parts go to modules_to_save, so that checkpoints and the final adapter folder hold them too
    pattern = r".*language_model.*\.(" + "|".join(cfg.lora.target_modules) + r")$"
    full = (["multi_modal_projector"] if cfg.lora.train_projector else []) + (
        ["vision_tower"] if cfg.train_vision_tower else [])
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, target_modules=pattern,
                      modules_to_save=full or None, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)
