"""`fakeclue-builder train`: FakeVLM fine-tuning with transformers' Trainer on our shards.

The library does the recipe (cosine schedule, warm-up, gradient accumulation, bf16, gradient checkpointing, DeepSpeed,
checkpoints and resume, TensorBoard / W&B); this module supplies the data, the answer-only collator, the batch
arithmetic, the throughput log and the outputs: `<output_dir>/checkpoint-N/` while training, `<output_dir>/final/`
(model + processor, loadable by `evaluate`) and `<output_dir>/train_summary.json` at the end.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fakeclue_builder import chat
from fakeclue_builder.config_base import ConfigError
from fakeclue_builder.config_train import TrainConfig
from fakeclue_builder.train.callbacks import log_line_callback, make_trainer
from fakeclue_builder.train.collate import AnswerOnlyCollator
from fakeclue_builder.train.data import TrainExamples, load_export, load_fakeclue_json
from fakeclue_builder.train.model import load_model, load_processor, prepare_for_training, resolve_device, use_bf16

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced (also written to train_summary.json)."""

    objective: str
    output_dir: str
    final_dir: str
    rows: int
    global_step: int
    resumed_from: str | None
    train_loss: float | None
    log_history: list[dict] = field(default_factory=list)


def world_size() -> int:
    """Processes taking part (torchrun / accelerate launch set WORLD_SIZE; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def gradient_accumulation(global_batch: int, per_device: int, world: int) -> int:
    """global = per_device x world x accumulation, exactly; else a clear error naming the values and the fix."""
    per_step = per_device * world
    if global_batch % per_step:
        raise ConfigError(f"train.global_batch_size {global_batch} is not a multiple of per_device_batch_size "
                          f"{per_device} x world size {world} = {per_step}; choose a global batch that is "
                          f"(e.g. {per_step * max(1, round(global_batch / per_step))})")
    return global_batch // per_step


def output_dir(cfg: TrainConfig, run_dir: Path) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else Path(run_dir) / "train"


def load_examples(cfg: TrainConfig, run_dir: Path) -> TrainExamples:
    if cfg.json_path is not None:
        source = load_fakeclue_json(cfg.json_path, cfg.image_root, cfg.max_rows)
    else:
        source = load_export(cfg.data or Path(run_dir) / "export", cfg.split, cfg.max_rows, cfg.row_group_cache)
    log.info("training rows: %d from %s", len(source.texts), source.origin)
    return TrainExamples(source, cfg.question or chat.QUESTION)


def last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out)) if out.is_dir() else None


def installed_loggers(names: list[str]) -> list[str]:
    """The requested loggers whose package is installed (others are skipped with a warning, never fatal)."""
    import importlib.util

    packages = {"tensorboard": "tensorboard", "wandb": "wandb"}
    found = [n for n in names if importlib.util.find_spec(packages[n]) is not None]
    for name in sorted(set(names) - set(found)):
        log.warning("train.report_to %s: %s is not installed; not logging to it (pip install %s)", name, name, name)
    return found


def training_arguments(cfg: TrainConfig, out: Path, device: str, bf16: bool):
    from transformers import TrainingArguments

    accumulation = gradient_accumulation(cfg.global_batch_size, cfg.per_device_batch_size, world_size())
    if cfg.deepspeed is not None and not Path(cfg.deepspeed).is_file():
        raise ConfigError(f"train.deepspeed {cfg.deepspeed} does not exist; use stages/deepspeed_zero3.json")
    return TrainingArguments(
        output_dir=str(out), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.per_device_batch_size, gradient_accumulation_steps=accumulation,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay, bf16=bf16,  # gradient checkpointing: enabled on the model (prepare_for_training)
        logging_steps=cfg.logging_steps, logging_first_step=True, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, report_to=installed_loggers(cfg.report_to) or "none", seed=cfg.seed,
        data_seed=cfg.seed, use_cpu=device == "cpu", dataloader_num_workers=cfg.dataloader_workers,
        dataloader_persistent_workers=cfg.dataloader_workers > 0, remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding", deepspeed=str(cfg.deepspeed) if cfg.deepspeed else None,
        disable_tqdm=True, save_only_model=False,
    )


def run_train(cfg: TrainConfig, run_dir: Path, resume: bool = True) -> TrainResult:
    """Fine-tune (objective explanation / label_only) or fit the linear probe (objective linear_probe)."""
    if cfg.objective == "linear_probe":
        from fakeclue_builder.train.probe import run_probe

        return run_probe(cfg, run_dir)
    from transformers import PrinterCallback, set_seed

    out = output_dir(cfg, run_dir)
    set_seed(cfg.seed)
    device = resolve_device(cfg)
    bf16 = use_bf16(cfg, device)
    examples = load_examples(cfg, run_dir)
    processor = load_processor(cfg)
    args = training_arguments(cfg, out, device, bf16)  # before the model: ZeRO-3 partitions it while loading
    model = prepare_for_training(load_model(cfg, bf16), cfg)
    collator = AnswerOnlyCollator(processor, cfg.objective, cfg.max_length, cfg.chat_template)
    trainer = make_trainer(cfg.global_batch_size, model=model, args=args, train_dataset=examples,
                           data_collator=collator, processing_class=processor, callbacks=[log_line_callback()])
    trainer.remove_callback(PrinterCallback)  # our log line replaces its raw dict prints
    checkpoint = last_checkpoint(out) if resume else None
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    final = out / "final"
    trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(final))
    result = TrainResult(cfg.objective, str(out), str(final), len(examples), trainer.state.global_step, checkpoint,
                         output.training_loss, trainer.state.log_history)
    write_summary(result, out, trainer.is_world_process_zero())
    return result


def write_summary(result: TrainResult, out: Path, main_process: bool = True) -> None:
    if not main_process:
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "train_summary.json.tmp"
    tmp.write_text(json.dumps(asdict(result), indent=2, default=str))
    tmp.replace(out / "train_summary.json")
