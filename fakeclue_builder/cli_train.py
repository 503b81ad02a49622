"""`fakeclue-builder train`: fine-tune FakeVLM (LLaVA-1.5) on the export (only typer and stdlib imported here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

ResumeOpt = Annotated[bool, typer.Option(
    "--resume/--no-resume", help="Continue from the last checkpoint-N in the output directory when there is one "
    "(weights, optimizer, scheduler, data position); --no-resume starts from train.model.")]


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _write_resolved(section, out_dir: Path) -> None:
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "config.resolved.yaml.tmp"
    tmp.write_text(yaml.safe_dump({"train": section.model_dump(mode="json", by_alias=True)}, sort_keys=False))
    tmp.replace(out_dir / "config.resolved.yaml")


def _quiet_libraries(quiet: bool) -> None:
    import transformers

    if quiet:
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def train(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Build config YAML with a `train:` section "
                                                   "(see stages/train_demo.yaml, stages/train_paper.yaml).")] = None,
    run_dir: Annotated[Path, typer.Option("--run-dir", "-r", help="Run directory: data are read from "
                                          "<run-dir>/export, outputs go to <run-dir>/train unless the config says "
                                          "otherwise.")] = Path("runs/default"),
    set_: Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key: --set "
                                                      "train.max_steps=20 (repeatable; value parsed as YAML).")] = None,
    resume: ResumeOpt = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Fine-tune FakeVLM (LLaVA-1.5, `LlavaForConditionalGeneration`) on the exported Parquet shards or the
    released FakeClue json, with the prompt format `evaluate` uses and the loss on the answer tokens only.

    Objectives: explanation (the full caption, FakeVLM), label_only (just 'real'/'fake'), linear_probe (a linear
    head on frozen features). Multi-GPU: launch with `torchrun --nproc_per_node 8 -m fakeclue_builder.cli train ...`
    or `accelerate launch`, with train.deepspeed=stages/deepspeed_zero3.json. Writes <output_dir>/checkpoint-N/,
    <output_dir>/final/ (model + processor) and <output_dir>/train_summary.json."""
    from fakeclue_builder.cli import _fail, _load, _setup_logging
    from fakeclue_builder.config_base import ConfigError

    _setup_logging(quiet, verbose)
    _quiet_libraries(quiet)
    cfg = _load(config, set_, run_dir, "train")
    from fakeclue_builder.train.trainer import output_dir, run_train

    try:
        if _is_main_process():
            _write_resolved(cfg.train, output_dir(cfg.train, run_dir))
        result = run_train(cfg.train, run_dir, resume=resume)
    except ConfigError as e:
        _fail(str(e))
    if _is_main_process():
        logged = [h["loss"] for h in result.log_history if "loss" in h]
        loss = f"mean loss {result.train_loss:.4f}" if result.train_loss is not None else "no loss"
        last = f", last logged loss {logged[-1]:.4f}" if logged else ""
        typer.echo(f"train ({result.objective}): {result.rows} rows, {result.global_step} steps, {loss}{last}")
        typer.echo(f"model: {result.final_dir}")
        typer.echo(f"summary: {Path(result.output_dir) / 'train_summary.json'}")


def register(app: typer.Typer) -> None:
    """Add the `train` command to the main app."""
    app.command("train")(train)
