"""`report` command (registered on the main app by cli.py): DIR/report/index.html, one self-contained page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

RunDirOpt = Annotated[Path, typer.Option("--run-dir", "-r", help="Run directory: shards, blobs, markers, stats.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for index.html (default: "
                                                "RUN_DIR/report).")]
GalleryOpt = Annotated[int, typer.Option("--gallery", min=0, help="Gallery images per category (decoded into "
                                         "thumbnails; the rest of the report never decodes an image).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def report(run_dir: RunDirOpt = Path("runs/default"), out: OutOpt = None, gallery: GalleryOpt = 12,
           quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """Write DIR/report/index.html: counts per cate x label x split, sources and generators, format / size /
    JPEG-quality per label (with a warning when they separate real from fake), caption statistics, annotators,
    dropped rows with examples, and a gallery per category. Works on a partial run (missing stages: "not run")."""
    from fakeclue_builder.cli_common import _fail, _setup_logging

    _setup_logging(quiet, verbose)
    if not run_dir.is_dir():
        _fail(f"run directory {run_dir} does not exist; build one first, e.g. 'fakeclue-builder collect "
              f"--run-dir {run_dir}' (then the later stages), and run 'fakeclue-builder report --run-dir {run_dir}'")
    if not any((run_dir / name).is_dir() for name in ("collect", "synthesize")):
        _fail(f"{run_dir} has no stage output yet; run 'fakeclue-builder collect --run-dir {run_dir}' first")
    from fakeclue_builder.report import build_report

    path = build_report(run_dir, out, gallery_per_category=gallery)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command()(report)
