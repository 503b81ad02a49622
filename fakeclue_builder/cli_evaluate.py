"""`fakeclue-builder evaluate` (and `evaluate compare RUN...`): registered on the main app by `register(app)`.

Only typer and the standard library are imported here; the evaluation code is imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

evaluate_app = typer.Typer(invoke_without_command=True)  # help: the callback's docstring

Opt = typer.Option


def _cli_overrides(values: dict[str, object]) -> list[str]:
    """CLI options as `--set` assignments (JSON-quoted, so a value is never re-typed by the YAML parser)."""
    return [f"evaluate.{key}={json.dumps(str(v) if isinstance(v, Path) else v)}" for key, v in values.items()
            if v is not None]


@evaluate_app.callback()
def evaluate(
    ctx: typer.Context,
    benchmark: Annotated[Optional[str], Opt("--benchmark", "-b", help="fakeclue, loki, ddvqa, ffpp or folder.")] = None,
    model: Annotated[Optional[str], Opt("--model", "-m", help="Model folder or Hub id (FakeVLM checkpoint, "
                                        "Qwen/Qwen2-VL-7B-Instruct, ...); openai backend: the served model name.")] = None,
    backend: Annotated[Optional[str], Opt("--backend", help="transformers (default), vllm or openai.")] = None,
    run_dir: Annotated[Path, Opt("--run-dir", "-r", help="Run directory: fakeclue reads <run-dir>/export, ffpp "
                                 "reads <run-dir>/collect; outputs go to <run-dir>/evaluate/<benchmark>/<name>.")]
    = Path("runs/default"),
    config: Annotated[Optional[Path], Opt("--config", "-c", help="YAML with an `evaluate:` section (see "
                                          "stages/evaluate_demo.yaml); CLI options override it.")] = None,
    data: Annotated[Optional[Path], Opt("--data", help="Benchmark input (export dir, FakeClue/LOKI/DD-VQA json or "
                                        "root, folder with real/ and fake/); see the README's layouts.")] = None,
    images: Annotated[Optional[Path], Opt("--images", help="Image root for json benchmarks (DD-VQA: the face "
                                          "frames).")] = None,
    explanations: Annotated[Optional[Path], Opt("--explanations", help="LOKI open_ended_vqa.json (UTF-16) used as "
                                                "explanation references.")] = None,
    split: Annotated[Optional[str], Opt("--split", help="Split of the export / released json, DD-VQA set "
                                        "(default test).")] = None,
    name: Annotated[Optional[str], Opt("--name", help="Display name in the tables (default: model folder name).")] = None,
    output: Annotated[Optional[Path], Opt("--output", "-o", help="Output folder (default: "
                                          "<run-dir>/evaluate/<benchmark>/<name>).")] = None,
    limit: Annotated[Optional[int], Opt("--limit", min=1, help="Only the first N examples (smoke run).")] = None,
    batch_size: Annotated[Optional[int], Opt("--batch-size", min=1, help="Requests per generate call.")] = None,
    device: Annotated[Optional[str], Opt("--device", help="transformers device: auto, cpu, cuda, cuda:1.")] = None,
    max_tokens: Annotated[Optional[int], Opt("--max-tokens", min=1, help="Most tokens per answer (default 256).")]
    = None,
    verdict_prefix: Annotated[Optional[str], Opt("--verdict-prefix", help="Prefill each answer with this text "
                                                 "(e.g. 'This is a') so the first generated token is the verdict "
                                                 "word (AUC read there).")] = None,
    set_: Annotated[Optional[list[str]], Opt("--set", "-s", help="Override any key: --set "
                                             "evaluate.model.tensor_parallel_size=2 (repeatable).")] = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No progress bars; warnings and errors only.")] = False,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Score a model on a benchmark: Acc, F1, ROUGE-L, CSS and AUC on FakeClue, LOKI, DD-VQA, FF++ or real/ +
    fake/ folders (run without a subcommand); `evaluate compare RUN...` puts runs side by side.

    Asks the model the benchmark's question about every image (any backend; batched; cached in
    <run-dir>/evaluate/_cache.sqlite), parses each verdict (undecidable answers are `unparsed` and scored wrong),
    reads P(fake) from the "real"/"fake" token probabilities, and writes predictions.parquet, results.json,
    results.md (paper Table 2 / Table 4 shapes) and per_category.png."""
    if ctx.invoked_subcommand is not None:
        return
    from fakeclue_builder.cli import _fail, _setup_logging

    _setup_logging(quiet, verbose)
    overrides = _cli_overrides({
        "benchmark": benchmark, "model.model": model, "model.backend": backend, "data": data, "images": images,
        "explanations": explanations, "split": split, "name": name, "output": output, "limit": limit,
        "model.batch_size": batch_size, "model.device": device, "sampling.max_tokens": max_tokens,
        "verdict_prefix": verdict_prefix}) + list(set_ or [])
    cfg = _load_config(config, overrides, run_dir)
    if cfg.evaluate is None:
        _fail("nothing to evaluate: pass --benchmark and --model (or a --config with an `evaluate:` section)")
    _run(cfg, run_dir, quiet)


def _load_config(config: Path | None, overrides: list[str], run_dir: Path):
    from fakeclue_builder.cli import _fail
    from fakeclue_builder.config import ConfigError, load_build_config

    try:
        return load_build_config(config, overrides, variables={"run_dir": str(run_dir)})
    except ConfigError as e:
        _fail(str(e))


def _run(cfg, run_dir: Path, quiet: bool) -> None:
    from fakeclue_builder.cli import _fail
    from fakeclue_builder.config import ConfigError
    from fakeclue_builder.evaluate.runner import run_evaluation
    from fakeclue_builder.evaluate.tables import overall_table
    from fakeclue_builder.progress import progress_bars

    try:
        with progress_bars(enabled=not quiet) as progress:
            result = run_evaluation(cfg.evaluate, run_dir, progress=progress)
    except ConfigError as e:
        _fail(str(e))
    typer.echo(overall_table([result.results]))
    typer.echo(f"\nresults: {result.output / 'results.json'}")


@evaluate_app.command("compare")
def evaluate_compare(
    runs: Annotated[list[Path], typer.Argument(help="Evaluate output folders (or their results.json).")],
    output: Annotated[Optional[Path], Opt("--output", "-o", help="Also write compare.md and per_category.png "
                                          "here.")] = None,
) -> None:
    """Put several evaluations side by side: the Table 2 and Table 4 shaped Markdown tables (and FF++ AUC per
    method), printed to stdout."""
    from fakeclue_builder.cli import _fail
    from fakeclue_builder.config import ConfigError
    from fakeclue_builder.evaluate.tables import compare

    try:
        typer.echo(compare(runs, output))
    except ConfigError as e:
        _fail(str(e))


def register(app: typer.Typer) -> None:
    app.add_typer(evaluate_app, name="evaluate")
