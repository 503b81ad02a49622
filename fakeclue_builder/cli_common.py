"""What every CLI command shares: option types, logging, errors, ranks, config loading, the stage wrapper.

Only typer and the standard library are imported at the top (the CLI must start fast).
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from fakeclue_builder.cli_output import print_summary
from fakeclue_builder.config import ConfigError

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Build config YAML; top-level keys are stage "
                                                   "names (collect:, ...). See stages/demo.yaml.")]
RunDirOpt = Annotated[Path, typer.Option("--run-dir", "-r", help="Run directory: shards, blobs, markers, stats.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key: --set "
                                                     "collect.seed=3 (repeatable; value parsed as YAML).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo every shard even if its done-marker is current.")]
RankOpt = Annotated[Optional[int], typer.Option("--rank", help="This process's rank: it runs shards with index % "
                                                "world-size == rank (default: $SLURM_ARRAY_TASK_ID or 0).")]
WorldOpt = Annotated[Optional[int], typer.Option("--world-size", help="Number of ranks (default: "
                                                 "$SLURM_ARRAY_TASK_COUNT or 1).")]


class Executor(str, Enum):
    local = "local"
    ray = "ray"


ExecutorOpt = Annotated[Executor, typer.Option("--executor", help="Where the shards run: this process (local) or "
                                               "Ray Data actors (ray; settings in the config's `ray:` section, e.g. "
                                               "--set ray.address=auto).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; warnings and errors only.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def _setup_logging(quiet: bool, verbose: bool) -> None:
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(show_path=False, console=_err_console())], force=True)


def _err_console():
    from rich.console import Console

    return Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    _err_console().print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None:
        rank = int(os.environ.get("SLURM_ARRAY_TASK_ID", 0)) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", 0))
    if world_size is None:
        world_size = int(os.environ.get("SLURM_ARRAY_TASK_COUNT", 1))
    if world_size < 1 or not 0 <= rank < world_size:
        _fail(f"--rank {rank} --world-size {world_size}: rank must be in [0, world-size); e.g. --rank 0 --world-size 4")
    return rank, world_size


OPTIONAL_SECTIONS = {"synthesize"}  # a build without generators simply has no synthetic images


def _load(config: Path | None, overrides: list[str] | None, run_dir: Path, section: str):
    from fakeclue_builder.config import load_build_config

    try:
        cfg = load_build_config(config, overrides, variables={"run_dir": str(run_dir)})
    except ConfigError as e:
        _fail(str(e))
    if getattr(cfg, section) is None and section in OPTIONAL_SECTIONS:
        return cfg
    if getattr(cfg, section) is None:
        from pydantic import ValidationError

        try:  # a stage whose every key has a default runs on defaults
            setattr(cfg, section, type(cfg).model_fields[section].annotation.__args__[0]())
        except ValidationError:
            _fail(f"the config has no `{section}:` section; add one (see stages/demo.yaml) or pass --config")
    return cfg


def _run_stage(stage: str, config: Path | None, overrides: list[str] | None, run_dir: Path, force: bool,
               rank: int | None, world_size: int | None, quiet: bool, verbose: bool, body) -> None:
    """What every stage command does: logging, ranks, config (exit 2 on problems), progress, summary.

    `body(cfg, rank, world_size, progress, before_write)` runs the stage and returns its StageSummary;
    `before_write` writes config.resolved.yaml once the stage's own checks have passed.
    """
    _setup_logging(quiet, verbose)
    rank, world_size = _rank_world(rank, world_size)
    cfg = _load(config, overrides, run_dir, stage)
    from fakeclue_builder.config import dump_resolved
    from fakeclue_builder.progress import progress_bars

    def write_resolved() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_resolved(cfg, run_dir / "config.resolved.yaml")

    try:
        with progress_bars(enabled=not quiet) as progress:
            summary = body(cfg, rank, world_size, progress, write_resolved)
    except ConfigError as e:
        _fail(str(e))
    print_summary(summary, run_dir)
