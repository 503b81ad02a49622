"""`fakeclue-builder`: one subcommand per stage, plus status and demo data.

Start-up stays light: heavy modules (pyarrow, PIL, OpenCV, torch) are imported inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fakeclue_builder.cli_common import (  # noqa: F401 - re-exported for command modules
    ConfigOpt, Executor, ExecutorOpt, ForceOpt, QuietOpt, RankOpt, RunDirOpt, SetOpt, VerboseOpt, WorldOpt, _err_console, _fail, _load,
    _rank_world, _run_stage, _setup_logging)
from fakeclue_builder.cli_output import print_annotator_stats, print_balance, print_quality
from fakeclue_builder.executors import make_executor
from fakeclue_builder.config import ConfigError

app = typer.Typer(
    name="fakeclue-builder",
    help="Build the FakeClue dataset (real vs. synthetic images, each fake explained) end to end, reproducibly. "
    "Every stage reads and writes a run directory (--run-dir) and resumes where it stopped.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
demo_app = typer.Typer(help="Offline demo data in the exact upstream layouts (for the demo profile and tests).",
                       no_args_is_help=True)
app.add_typer(demo_app, name="demo")

@app.command()
def collect(config: ConfigOpt = None, run_dir: RunDirOpt = Path("runs/default"), set_: SetOpt = None,
            force: ForceOpt = False, rank: RankOpt = None, world_size: WorldOpt = None, quiet: QuietOpt = False,
            verbose: VerboseOpt = False) -> None:
    """Collect images from GenImage, FF++, Chameleon, plain folders and the released FakeClue: probe, hash,
    store the original bytes, drop bad files and duplicates (with reasons), apply quotas and the fake:real ratio."""

    def body(cfg, rank, world_size, progress, before_write):
        from fakeclue_builder import collect as collect_stage

        return collect_stage.run(cfg.collect, run_dir, rank=rank, world_size=world_size, force=force,
                                 progress=progress, before_write=before_write)

    _run_stage("collect", config, set_, run_dir, force, rank, world_size, quiet, verbose, body)


@app.command()
def synthesize(config: ConfigOpt = None, run_dir: RunDirOpt = Path("runs/default"), set_: SetOpt = None,
               force: ForceOpt = False, rank: RankOpt = None, world_size: WorldOpt = None, quiet: QuietOpt = False,
               verbose: VerboseOpt = False) -> None:
    """Generate the fakes no open dataset has: satellite images (diffusers img2img from real tiles, or
    txt2img), document pages (layout first, then content) and any category from a prompt list."""

    def body(cfg, rank, world_size, progress, before_write):
        from fakeclue_builder import synthesize as synthesize_stage

        if cfg.synthesize is None:
            _err_console().print("synthesize: the config has no `synthesize:` section; nothing to generate")
            raise typer.Exit(0)
        summary = synthesize_stage.run(cfg.synthesize, run_dir, rank=rank, world_size=world_size, force=force,
                                       progress=progress, before_write=before_write)
        if summary.complete:
            print_balance(run_dir)
        return summary

    _run_stage("synthesize", config, set_, run_dir, force, rank, world_size, quiet, verbose, body)


def _run_closing_stage(name: str, section, stage, run_dir: Path, output: str, report, **kwargs):
    """A row stage whose function holds models (closed afterwards) and whose `_stats.json` is reported."""
    from fakeclue_builder.pipeline import run_row_stage

    try:
        summary = run_row_stage(name, section, stage, run_dir, output=output, **kwargs)
    finally:
        stage.close()
    if summary.complete:
        report(run_dir / output / "_stats.json")
    return summary


@app.command()
def annotate(config: ConfigOpt = None, run_dir: RunDirOpt = Path("runs/default"), set_: SetOpt = None,
             force: ForceOpt = False, rank: RankOpt = None, world_size: WorldOpt = None, quiet: QuietOpt = False,
             verbose: VerboseOpt = False, executor: ExecutorOpt = Executor.local,
             model: Annotated[Optional[list[str]], typer.Option("--model", help="Run only this annotator (repeatable): "
                              "a per-model job that fills the request cache into annotate/_<name>/; a later run "
                              "without --model assembles every answer from the cache.")] = None) -> None:
    """Ask every configured VLM annotator (Qwen2-VL, InternVL, DeepSeek-VL2, ...) to explain every prompted row,
    through its backend (vllm, transformers or an OpenAI-compatible server), with a request cache, answer
    validation and retries; rows with fewer than annotate.min_annotators good answers are dropped."""

    def body(cfg, rank, world_size, progress, before_write):
        from fakeclue_builder.annotate import AnnotateStage

        stage = AnnotateStage(cfg.annotate, run_dir, only=model)
        output = f"annotate/_{'+'.join(sorted(model))}" if model else "annotate"
        return _run_closing_stage("annotate", cfg.annotate, stage, run_dir, output, print_annotator_stats,
                                  rank=rank, world_size=world_size, force=force, progress=progress,
                                  before_write=before_write, config_salt="+".join(sorted(model or [])),
                                  executor=make_executor(executor, cfg.ray, "annotate"))

    _run_stage("annotate", config, set_, run_dir, force, rank, world_size, quiet, verbose, body)


@app.command()
def aggregate(config: ConfigOpt = None, run_dir: RunDirOpt = Path("runs/default"), set_: SetOpt = None,
              force: ForceOpt = False, rank: RankOpt = None, world_size: WorldOpt = None, quiet: QuietOpt = False,
              verbose: VerboseOpt = False, executor: ExecutorOpt = Executor.local) -> None:
    """Merge each row's annotations into one explanation: claims at least two annotators make (sentence
    embeddings), critical single-model claims, grouped by aspect, `This is a real|fake image. ...`; or the
    paper's LLM merge (aggregate.mode=llm) with consensus as the fallback. Prints caption-quality statistics."""

    def body(cfg, rank, world_size, progress, before_write):
        from fakeclue_builder.aggregate import AggregateStage

        stage = AggregateStage(cfg.aggregate, run_dir)
        return _run_closing_stage("aggregate", cfg.aggregate, stage, run_dir, "aggregate", print_quality,
                                  rank=rank, world_size=world_size, force=force, progress=progress,
                                  before_write=before_write, executor=make_executor(executor, cfg.ray, "aggregate"))

    _run_stage("aggregate", config, set_, run_dir, force, rank, world_size, quiet, verbose, body)


@app.command()
def categorize(config: ConfigOpt = None, run_dir: RunDirOpt = Path("runs/default"), set_: SetOpt = None,
               force: ForceOpt = False, rank: RankOpt = None, world_size: WorldOpt = None, quiet: QuietOpt = False,
               verbose: VerboseOpt = False, executor: ExecutorOpt = Executor.local) -> None:
    """Split rows without a category into animal / human / object / scene with an EVA-02 ImageNet classifier
    (timm); low-confidence rows are flagged and handled by categorize.fallback, never guessed."""

    def body(cfg, rank, world_size, progress, before_write):
        from fakeclue_builder.categorize import LazyClassifier, check_config
        from fakeclue_builder.pipeline import run_row_stage

        check_config(cfg.categorize)
        classify = LazyClassifier(cfg.categorize)
        return run_row_stage("categorize", cfg.categorize, lambda rows: classify(rows, run_dir), run_dir, rank=rank,
                             world_size=world_size, force=force, progress=progress, before_write=before_write,
                             executor=make_executor(executor, cfg.ray, "categorize"))

    _run_stage("categorize", config, set_, run_dir, force, rank, world_size, quiet, verbose, body)


prompts_app = typer.Typer(help="Render the category- and label-aware annotation prompt for every row "
                          "(run without a subcommand), or show one prompt.", invoke_without_command=True)
app.add_typer(prompts_app, name="prompts")


@prompts_app.callback()
def prompts(ctx: typer.Context, config: ConfigOpt = None, run_dir: RunDirOpt = Path("runs/default"),
            set_: SetOpt = None, force: ForceOpt = False, rank: RankOpt = None, world_size: WorldOpt = None,
            quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """Pick the template for each row's (cate, label, no_forced_artifacts), render it with the label as a
    prior, and record prompt_id, prompt_sha256 and the text."""
    if ctx.invoked_subcommand is not None:
        return

    def body(cfg, rank, world_size, progress, before_write):
        from fakeclue_builder import prompts as prompts_stage
        from fakeclue_builder.pipeline import run_row_stage

        salt = prompts_stage.config_hash(cfg.prompts)  # the templates' text is part of the stage's config
        return run_row_stage("prompts", cfg.prompts, lambda rows: prompts_stage.run(cfg.prompts, rows), run_dir,
                             rank=rank, world_size=world_size, force=force, progress=progress, config_salt=salt,
                             before_write=before_write)

    _run_stage("prompts", config, set_, run_dir, force, rank, world_size, quiet, verbose, body)


@prompts_app.command("show")
def prompts_show(
    cate: Annotated[str, typer.Option(help="deepfake, human, animal, object, scene, satellite or doc.")],
    label: Annotated[str, typer.Option(help="real or fake.")],
    no_forced_artifacts: Annotated[bool, typer.Option(help="The high-quality-fake variant (Chameleon).")] = False,
    prompts_dir: Annotated[Optional[Path], typer.Option("--dir", help="Templates directory (default: prompts/).")] = None,
) -> None:
    """Print the rendered prompt for one (cate, label) pair."""
    from fakeclue_builder import prompts as prompts_stage
    from fakeclue_builder.config import PromptsConfig

    try:
        text = prompts_stage.show(cate, label, no_forced_artifacts=no_forced_artifacts,
                                  cfg=PromptsConfig(dir=prompts_dir))
    except ConfigError as e:
        _fail(str(e))
    typer.echo(text)


@app.command()
def status(run_dir: RunDirOpt = Path("runs/default")) -> None:
    """Per stage: shards done/total, rows in/kept/dropped by reason, time spent, and what runs next."""
    from rich.console import Console
    from rich.table import Table

    from fakeclue_builder.status import run_status

    if not run_dir.is_dir():
        _fail(f"run directory {run_dir} does not exist; run a stage first, e.g. fakeclue-builder collect "
              f"--config stages/demo.yaml --run-dir {run_dir}")
    stages, next_stage = run_status(run_dir)
    table = Table(title=f"run {run_dir}")
    for col in ("stage", "shards", "in", "kept", "dropped", "dropped by reason", "time"):
        table.add_column(col, justify="left" if col in ("stage", "dropped by reason") else "right")
    for s in stages:
        reasons = "\n".join(f"{k}: {v}" for k, v in s.dropped_by_reason.items()) or "-"
        table.add_row(s.stage, f"{s.shards_done}/{s.shards_total}", str(s.rows_in), str(s.kept), str(s.dropped),
                      reasons, f"{s.seconds:.1f}s")
    console = Console()
    console.print(table)
    console.print(f"next: {next_stage}" if next_stage else "all stages complete")


models_app = typer.Typer(help="Models for offline runs.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("make-tiny")
def models_make_tiny(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the tiny models into (one subfolder each).")],
    only: Annotated[Optional[list[str]], typer.Option(help="Build only these (eva02, sd, controlnet, qwen2_vl, llava, qwen2_vl_alt).")] = None,
) -> None:
    """Build tiny random models with the real architectures (EVA-02 classifier, Stable Diffusion, ControlNet,
    Qwen2-VL and LLaVA annotators)
    for offline demo runs
    and tests; their outputs are meaningless by design."""
    _setup_logging(quiet=False, verbose=False)
    from fakeclue_builder.tiny_models import make_tiny

    try:
        paths = make_tiny(out_dir, only)
    except ValueError as e:
        _fail(str(e))
    for name, path in sorted(paths.items()):
        typer.echo(f"{name}: {path}")


@demo_app.command("make-sources")
def demo_make_sources(
    out_dir: Annotated[Path, typer.Argument(help="Where to build the demo datasets (e.g. runs/demo/sources).")],
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same files.")] = 0,
    scale: Annotated[int, typer.Option(min=1, help="Multiply the number of images per folder.")] = 1,
) -> None:
    """Build small GenImage-, Chameleon-, FF++-, folder- and FakeClue-style trees offline from skimage photos."""
    _setup_logging(quiet=False, verbose=False)
    from fakeclue_builder.demo import make_demo_sources

    paths = make_demo_sources(out_dir, seed=seed, scale=scale)
    for name, path in sorted(paths.items()):
        typer.echo(f"{name}: {path}")


def _register_commands() -> None:
    """Commands kept in their own modules (each imports only typer at the top)."""
    from fakeclue_builder import cli_evaluate, cli_export, cli_report, cli_train

    for module in (cli_export, cli_train, cli_evaluate, cli_report):
        module.register(app)


_register_commands()


def main() -> None:  # pragma: no cover - console-script shim
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
