"""Configuration of `fakeclue-builder train` (FakeVLM fine-tuning; re-exported by `fakeclue_builder.config`).

Defaults are the released FakeVLM recipe for 8 GPUs (LLaVA-1.5-7B, full fine-tune, 2 epochs, cosine, 3% warm-up,
global batch 256 = 32 per device x 8, lr 2e-5, max length 1024, vision tower trained, bf16, gradient checkpointing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from fakeclue_builder.config_base import _Model


class LoraSettings(_Model):
    enabled: bool = Field(False, description="Train LoRA adapters (peft) instead of the full model (small budgets).")
    r: int = Field(128, ge=1, description="LoRA rank (LLaVA-1.5's LoRA recipe: 128).")
    alpha: int = Field(256, ge=1, description="LoRA alpha (LLaVA-1.5's LoRA recipe: 256).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names (in the language model) that get adapters.",
    )
    train_projector: bool = Field(True, description="Also fully train the multi-modal projector (peft modules_to_save).")


class ProbeSettings(_Model):
    features: Literal["vision", "llm", "both"] = Field(
        "both", description="Frozen features of the linear probe: vision = the vision tower's pooled CLS output; "
        "llm = the language model's last-layer hidden state at the last prompt token (where the answer starts); "
        "both = the two concatenated.",
    )
    epochs: int = Field(20, ge=1, description="Passes of the linear head over the extracted features.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate of the linear head.")
    batch_size: int = Field(64, ge=1, description="Feature vectors per optimizer step of the head.")


class TrainConfig(_Model):
    model: str = Field("llava-hf/llava-1.5-7b-hf",
                       description="LLaVA-family checkpoint: a local folder or a Hub id (LlavaForConditionalGeneration).")
    revision: str | None = Field(None, description="Hub revision (commit, tag or branch) to pin.")
    data: Path | None = Field(
        None, description="Export directory holding data/<split>-*.parquet (default: <run-dir>/export). "
        "Ignored when `json` is given.")
    json_path: Path | None = Field(None, alias="json",
                                   description="Released FakeClue data_json/train.json (LLaVA conversations format).")
    image_root: Path | None = Field(None, description="With `json`: the folder the records' `image` paths are relative to.")
    split: str = Field("train", description="Export split to train on (data/<split>-*.parquet).")
    max_rows: int | None = Field(None, ge=1, description="Use only the first N rows (quick runs).")
    output_dir: Path | None = Field(None, description="Checkpoints, logs and the final model (default: <run-dir>/train).")
    objective: Literal["explanation", "label_only", "linear_probe"] = Field(
        "explanation", description="explanation: answer = the full caption (FakeVLM); label_only: answer = just "
        "'real'/'fake' (paper Fig. 3 (3)); linear_probe: frozen model, linear head on pooled features (Fig. 3 (2)).")
    question: str | None = Field(
        None, description="The question asked with every image (default: FakeClue's 'Does the image looks "
        "real/fake?', fakeclue_builder.prompts.QUESTION, the one evaluate asks).")
    chat_template: str | None = Field(None, description="Override the processor's chat template (default: its own).")
    epochs: float = Field(2.0, gt=0, description="Training epochs (paper: 2).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs; demos).")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate: 2e-5 in the released script, 2e-4 in the paper.")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name (cosine, linear, constant_with_warmup, ...).")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of the optimizer steps spent warming up linearly.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (released script: 0).")
    per_device_batch_size: int = Field(32, ge=1, description="Examples per device per forward pass.")
    global_batch_size: int = Field(
        256, ge=1, description="Examples per optimizer step over all devices; gradient accumulation = global / "
        "(per_device x world size), which must divide exactly.")
    max_length: int = Field(1024, ge=8, description="Longest token sequence (image tokens included); answers are cut.")
    bf16: bool | None = Field(None, description="bfloat16 mixed precision (None: on when a bf16-capable GPU is used).")
    gradient_checkpointing: bool = Field(True, description="Recompute activations in backward (saves memory).")
    train_vision_tower: bool = Field(True, description="Train the CLIP vision tower too (FakeVLM: yes).")
    deepspeed: Path | None = Field(None, description="DeepSpeed config json (stages/deepspeed_zero3.json for 7B full FT).")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="Optional LoRA adapters.")
    probe: ProbeSettings = Field(default_factory=ProbeSettings, description="objective linear_probe: the head.")
    logging_steps: int = Field(10, ge=1, description="Log loss, learning rate and throughput every N optimizer steps.")
    save_steps: int = Field(500, ge=1, description="Save a checkpoint every N optimizer steps (and at the end).")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most this many checkpoints (None: all).")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list, description="Extra loggers, used when installed (tensorboard, wandb).")
    seed: int = Field(0, description="Seed of model init, shuffling and dropout.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: the GPUs when visible, else cpu.")
    dataloader_workers: int = Field(4, ge=0, description="Processes reading and decoding images per device.")
    row_group_cache: int = Field(4, ge=1, description="Parquet row groups of images kept decoded-from-disk per worker.")

    @model_validator(mode="after")
    def _json_needs_images(self) -> "TrainConfig":
        if self.json_path is not None and self.image_root is None:
            raise ValueError("train.json is set but train.image_root is not; point it at the unzipped image folder")
        return self
