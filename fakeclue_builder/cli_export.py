"""`export` and `push` commands (registered on the main app by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fakeclue_builder.cli_common import (ConfigOpt, ForceOpt, QuietOpt, RunDirOpt, SetOpt, VerboseOpt, _fail, _run_stage,
                                  _setup_logging)


def _build_config(run_dir: Path, cfg):
    """What the card describes: the run's resolved config (every stage that ran), else this command's."""
    from fakeclue_builder.config import ConfigError, load_build_config

    resolved = run_dir / "config.resolved.yaml"
    try:
        return load_build_config(resolved) if resolved.is_file() else cfg
    except ConfigError:
        return cfg


def _print_export(run_dir: Path) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    stats = json.loads((run_dir / "export" / "_stats.json").read_text())
    extra = stats["extra"]
    table = Table(title="export: rows per cate / label and split")
    for col in ("cate/label", "train", "test"):
        table.add_column(col, justify="left" if col == "cate/label" else "right")
    for key, counts in extra["per_stratum"].items():
        table.add_row(key, str(counts.get("train", 0)), str(counts.get("test", 0)))
    console = Console()
    console.print(table)
    leaks = extra["leakage"]
    console.print(f"split: train={extra['splits']['train']} test={extra['splits']['test']} in {extra['groups']} "
                  f"groups; leakage: groups across={leaks['groups_across']}, near-duplicate pairs across="
                  f"{leaks['phash_pairs_across']}")
    console.print(f"dataset: {run_dir / 'export'}  (load_dataset(\"{run_dir / 'export'}\"); card: README.md)")


def export(config: ConfigOpt = None, run_dir: RunDirOpt = Path("runs/default"), set_: SetOpt = None,
           force: ForceOpt = False, quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """Split aggregate's rows (group-aware, stratified, seeded, leak-checked) and write DIR/export/, a folder
    that is a Hub dataset repo: data/{train,test}-NNNNN-of-NNNNN.parquet with the original image bytes, the
    dataset card README.md, and with export.fakeclue_layout the released FakeClue json + image trees."""

    def body(cfg, rank, world_size, progress, before_write):
        from fakeclue_builder import export as export_stage

        return export_stage.run(cfg.export, run_dir, force=force, progress=progress, before_write=before_write,
                                build_config=_build_config(run_dir, cfg))

    _run_stage("export", config, set_, run_dir, force, 0, 1, quiet, verbose, body)
    _print_export(run_dir)


def push(run_dir: RunDirOpt = Path("runs/default"),
         repo_id: Annotated[str, typer.Option("--repo-id", help="Hub dataset repo, ORG/NAME (created if missing).")] = ...,
         private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
         revision: Annotated[Optional[str], typer.Option("--revision", help="Branch to push to (created if "
                                                         "missing; default: main).")] = None,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="List every file and size that would go up; "
                                               "contact nothing.")] = False,
         folder: Annotated[Optional[Path], typer.Option("--folder", help="Export folder (default: "
                                                        "RUN_DIR/export).")] = None,
         quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """Upload DIR/export to the Hugging Face Hub as a dataset repo (resumable: rerun after an interruption).
    The token comes from HF_TOKEN or 'hf auth login' and is never printed; stage bookkeeping stays local."""
    _setup_logging(quiet, verbose)
    from rich.console import Console

    from fakeclue_builder.hub import PushError
    from fakeclue_builder.hub import push as push_folder

    if "/" not in repo_id or repo_id.count("/") != 1:
        _fail(f"--repo-id {repo_id!r}: expected ORG/NAME, e.g. --repo-id my-lab/fakeclue-rebuilt")
    folder = folder or run_dir / "export"
    try:
        files = push_folder(folder, repo_id, private=private, revision=revision, dry_run=dry_run)
    except PushError as e:
        _fail(str(e), code=1)
    console = Console()
    if dry_run:
        for f in files:
            typer.echo(f"{f.size:>14,d}  {f.path}")
        console.print(f"dry run: {len(files)} files, {sum(f.size for f in files):,d} bytes would go to "
                      f"datasets/{repo_id}" + (f" (branch {revision})" if revision else ""), highlight=False)
    else:
        console.print(f"pushed {len(files)} files to https://huggingface.co/datasets/{repo_id}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command()(push)
