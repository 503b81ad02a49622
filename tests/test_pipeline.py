"""collect -> categorize -> prompts through the CLI on the demo sources, resumable, with status."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from fakeclue_builder.cli import app
from fakeclue_builder.store import StageDir, read_rows
from fakeclue_builder.tiny_models import make_tiny_eva02

runner = CliRunner()


def test_collect_categorize_prompts(demo_sources, tmp_path):
    run_dir = tmp_path / "run"
    model = make_tiny_eva02(tmp_path / "models" / "eva02")
    cfg = tmp_path / "build.yaml"
    cfg.write_text(yaml.safe_dump({
        "collect": {"workers": 1, "shard_size": 10, "sources": [
            {"kind": "genimage", "root": str(demo_sources["genimage"])},
            {"kind": "chameleon", "root": str(demo_sources["chameleon"])},
            {"kind": "ffpp", "root": str(demo_sources["ffpp"]), "methods": ["Deepfakes", "Face2Face"],
             "frames_per_video": 2},
        ]},
        "categorize": {"model": f"local-dir:{model}", "device": "cpu", "batch_size": 8, "min_confidence": 0.3,
                       "fallback": "object"},
    }))
    for stage in ("collect", "categorize", "prompts"):
        result = runner.invoke(app, [stage, "-q", "--config", str(cfg), "--run-dir", str(run_dir)])
        assert result.exit_code == 0, (stage, result.output)
    collected = list(StageDir(run_dir, "collect").iter_rows())
    prompted = list(StageDir(run_dir, "prompts").iter_rows())
    dropped = read_rows(StageDir(run_dir, "prompts").dropped_path)
    assert len(prompted) + len(dropped) == len(collected)
    for row in prompted:
        assert row.cate and row.prompt and row.prompt_id and len(row.prompt_sha256) == 64
        expected = "This is a real image." if row.label == 1 else "This is a fake image."
        assert expected in row.prompt
        if row.source == "ffpp":
            assert row.cate == "deepfake" and row.cate_source == "source" and row.cate_scores == {}
        else:
            assert row.cate_source in ("classifier", "fallback") and row.cate_scores
        if row.source == "chameleon" and row.label == 0:
            assert row.prompt_id.endswith("+no_forced_artifacts")
    for stage in ("categorize", "prompts"):
        stats = json.loads((run_dir / stage / "_stats.json").read_text())
        assert stats["in"] == stats["kept"] + stats["dropped"] == len(collected)
    # resumable: a rerun does nothing; status shows all three stages complete
    result = runner.invoke(app, ["categorize", "--config", str(cfg), "--run-dir", str(run_dir)])
    assert "shards run=0" in result.output
    result = runner.invoke(app, ["status", "--run-dir", str(run_dir)], terminal_width=200)
    assert result.exit_code == 0 and "next: annotate" in result.output
    for stage in ("collect", "categorize", "prompts"):
        assert stage in result.output


def test_categorize_before_collect_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["categorize", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "collect" in result.output and "first" in result.output


def test_prompts_show(tmp_path):
    result = runner.invoke(app, ["prompts", "show", "--cate", "doc", "--label", "fake"])
    assert result.exit_code == 0 and "This is a fake image." in result.output
    result = runner.invoke(app, ["prompts", "show", "--cate", "dragon", "--label", "fake"])
    assert result.exit_code == 2 and "dragon" in result.output
