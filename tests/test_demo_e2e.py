"""The embedded demo profile end to end (what `make build-dataset` runs), offline with tiny models.

Every stage completes with `in == kept + dropped`, a rerun does nothing, and every output caption passes the
aggregate validation (the issue's acceptance: asserted over the whole demo output)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fakeclue_builder.cli import app
from fakeclue_builder.config import load_build_config
from fakeclue_builder.consensus import validate_caption
from fakeclue_builder.demo import make_demo_sources
from fakeclue_builder.pipeline import STAGE_ORDER
from fakeclue_builder.store import StageDir
from fakeclue_builder.tiny_models import make_tiny

DEMO = Path(__file__).resolve().parent.parent / "stages" / "demo.yaml"
runner = CliRunner()


def test_demo_profile_end_to_end(tmp_path):
    run_dir = tmp_path / "demo"
    make_demo_sources(run_dir / "sources")
    make_tiny(run_dir / "models")
    for stage in STAGE_ORDER:
        result = runner.invoke(app, [stage, "-q", "--config", str(DEMO), "--run-dir", str(run_dir)])
        assert result.exit_code == 0, (stage, result.output)
        stats = json.loads((run_dir / stage / "_stats.json").read_text())
        assert stats["in"] == stats["kept"] + stats["dropped"], stage
    cfg = load_build_config(DEMO, variables={"run_dir": str(run_dir)}).aggregate
    rows = list(StageDir(run_dir, "aggregate").iter_rows())
    assert rows and {r.source.split("-")[0] for r in rows} >= {"genimage", "chameleon", "ffpp", "synth"}
    for row in rows:
        validate_caption(row.caption, row.label, len(row.caption_claims), row.no_forced_artifacts, cfg)
        assert row.cate and row.prompt and len(row.annotations) == 3 and row.image_id
    result = runner.invoke(app, ["aggregate", "--config", str(DEMO), "--run-dir", str(run_dir)])
    assert "shards run=0" in result.output  # resumable: nothing left to do
    result = runner.invoke(app, ["status", "--run-dir", str(run_dir)], terminal_width=200)
    assert "all stages complete" in result.output
