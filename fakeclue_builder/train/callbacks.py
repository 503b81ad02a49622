"""Throughput (samples/s, tokens/s) in every training log record, and one readable log line per record.

The rates are added in `Trainer.log` (so they reach log_history, TensorBoard and W&B alike) over the interval since
the previous record: samples = optimizer steps x global batch, tokens = the non-padding input tokens the Trainer
counts (image tokens included).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def _trainer_base():
    from transformers import Trainer

    return Trainer


class ThroughputMeter:
    """Rates over the interval since the previous call."""

    def __init__(self, global_batch: int) -> None:
        self.global_batch = global_batch
        self.last: tuple[float, int, int] | None = None

    def rates(self, step: int, tokens: int) -> dict[str, float]:
        now = time.perf_counter()
        if self.last is None or step <= self.last[1]:
            self.last = (now, step, tokens)
            return {}
        seconds = max(now - self.last[0], 1e-9)
        rates = {"samples_per_second": round((step - self.last[1]) * self.global_batch / seconds, 3),
                 "tokens_per_second": round((tokens - self.last[2]) / seconds, 1)}
        self.last = (now, step, tokens)
        return rates


def reload_pretrained(model, checkpoint: str) -> bool:
    """Load a full-model checkpoint through `from_pretrained` (which maps its saved key names back); False when
    the checkpoint is not one (adapters, DeepSpeed shards: the Trainer's own loading handles those).

    transformers 5 saves LLaVA weights under their legacy names (`language_model.model.*`), but the Trainer's resume
    loads the file raw with strict=False, so a resumed run silently restarted from the base weights."""
    from pathlib import Path

    from transformers import PreTrainedModel

    folder = Path(checkpoint)
    if not isinstance(model, PreTrainedModel) or not (folder / "config.json").is_file() or not any(
            folder.glob("model*.safetensors")):
        return False
    loaded = type(model).from_pretrained(str(folder), dtype=next(model.parameters()).dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    log.info("model weights restored from %s", folder)
    return True


def make_trainer(global_batch: int, **kwargs):
    """A transformers Trainer whose training log records carry samples/s and tokens/s."""
    base = _trainer_base()

    class FakeVLMTrainer(base):
        def __init__(self, **inner) -> None:
            super().__init__(**inner)
            self.throughput = ThroughputMeter(global_batch)

        def log(self, logs: dict, *args, **kw) -> None:
            if "loss" in logs:
                logs = {**logs, **self.throughput.rates(self.state.global_step, self.state.num_input_tokens_seen)}
            super().log(logs, *args, **kw)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
            model = model if model is not None else self.model
            if not reload_pretrained(model, resume_from_checkpoint):
                super()._load_from_checkpoint(resume_from_checkpoint, model)

    return FakeVLMTrainer(**kwargs)


def log_line_callback():
    """A TrainerCallback writing each record (step, loss, lr, throughput) through `logging` on the main process."""
    from transformers import TrainerCallback

    class LogLine(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                log.info("training: %d optimizer steps, %d per device x %d accumulation, lr %g", state.max_steps,
                         args.per_device_train_batch_size, args.gradient_accumulation_steps, args.learning_rate)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            parts = [f"step {state.global_step}/{state.max_steps}", f"loss {logs['loss']:.4f}"]
            if "learning_rate" in logs:
                parts.append(f"lr {logs['learning_rate']:.3g}")
            if "samples_per_second" in logs:
                parts.append(f"{logs['samples_per_second']:.2f} samples/s")
                parts.append(f"{logs['tokens_per_second']:.0f} tokens/s")
            log.info("  ".join(parts))

    return LogLine()
