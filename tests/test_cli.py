"""The command line: start-up cost, config errors (exit 2, nothing written), precedence, status."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

from fakeclue_builder.cli import app
from fakeclue_builder.config import ConfigError, load_build_config

runner = CliRunner()
EXE = [sys.executable, "-m", "fakeclue_builder.cli"]


def test_help_is_fast_and_imports_no_torch():
    code = ("import sys, time; t = time.perf_counter(); import fakeclue_builder.cli as c; "
            "print(time.perf_counter() - t, 'torch' in sys.modules, 'pyarrow' in sys.modules, 'PIL' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False", "False"]
    start = time.perf_counter()
    result = subprocess.run([*EXE, "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0 and "collect" in result.stdout and "status" in result.stdout
    assert elapsed < 3.0  # the goal is < 1 s; the margin absorbs a loaded CI machine


def test_every_stage_command_takes_the_common_options():
    result = runner.invoke(app, ["collect", "--help"], terminal_width=200)
    for option in ("--config", "--run-dir", "--set", "--force", "--rank", "--world-size"):
        assert option in result.output


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "build.yaml"
    path.write_text(text)
    return path


def test_malformed_yaml_exits_2_and_writes_nothing(tmp_path):
    cfg = _write(tmp_path, "collect: [unclosed\n")
    result = runner.invoke(app, ["collect", "--config", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "not valid YAML" in result.output
    assert not (tmp_path / "run").exists()


def test_unknown_source_kind_names_the_key(tmp_path):
    cfg = _write(tmp_path, "collect:\n  sources:\n    - kind: flickr\n      root: /x\n")
    result = runner.invoke(app, ["collect", "--config", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "collect.sources.0" in result.output and "unknown source kind" in result.output
    assert not (tmp_path / "run").exists()


def test_unknown_key_and_bad_value_are_named(tmp_path):
    cfg = _write(tmp_path, "collect:\n  seeed: 3\n  shard_size: -1\n  sources:\n    - {kind: folder, root: /x, label: real}\n")
    result = runner.invoke(app, ["collect", "--config", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "collect.seeed: unknown key" in result.output and "collect.shard_size" in result.output


def test_missing_root_exits_2_and_writes_nothing(tmp_path):
    cfg = _write(tmp_path, f"collect:\n  sources:\n    - {{kind: chameleon, root: {tmp_path / 'nowhere'}}}\n")
    result = runner.invoke(app, ["collect", "--config", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "nowhere" in result.output
    assert not (tmp_path / "run").exists()


def test_missing_section_and_missing_file(tmp_path):
    result = runner.invoke(app, ["collect", "--config", str(tmp_path / "nope.yaml"), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "does not exist" in result.output
    empty = _write(tmp_path, "{}\n")
    result = runner.invoke(app, ["collect", "--config", str(empty), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "collect:" in result.output


def test_set_overrides_yaml_which_overrides_defaults(tmp_path):
    cfg = _write(tmp_path, "collect:\n  seed: 5\n  sources:\n    - {kind: folder, root: \"${run_dir}/imgs\", label: real}\n")
    build = load_build_config(cfg, ["collect.shard_size=7", "collect.sources.0.label=fake"], {"run_dir": "/r"})
    assert build.collect.seed == 5  # YAML
    assert build.collect.shard_size == 7  # --set
    assert build.collect.sources[0].label == "fake"  # --set into a list item
    assert build.collect.workers == 2  # default
    assert str(build.collect.sources[0].root) == "/r/imgs"  # ${run_dir} substituted
    try:
        load_build_config(cfg, ["collect.seed"])
    except ConfigError as e:
        assert "dotted.key=value" in str(e)
    else:
        raise AssertionError("a --set without '=' must be rejected")


def test_collect_then_status(demo_sources, tmp_path):
    run_dir = tmp_path / "run"
    cfg = _write(tmp_path, yaml.safe_dump({"collect": {"workers": 1, "shard_size": 5, "sources": [
        {"kind": "chameleon", "root": str(demo_sources["chameleon"])}]}}))
    result = runner.invoke(app, ["collect", "-q", "--config", str(cfg), "--run-dir", str(run_dir),
                                 "--set", "collect.seed=3"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    assert resolved["collect"]["seed"] == 3 and resolved["collect"]["dedup"]["phash_threshold"] == 4  # defaults filled
    stats = json.loads((run_dir / "collect" / "_stats.json").read_text())
    result = runner.invoke(app, ["status", "--run-dir", str(run_dir)], terminal_width=200)
    assert result.exit_code == 0
    assert "collect" in result.output and f"{stats['kept']}" in result.output
    assert f"{stats['shards']}/{stats['shards']}" in result.output


def test_status_of_missing_run_dir(tmp_path):
    result = runner.invoke(app, ["status", "--run-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_bad_rank(tmp_path):
    result = runner.invoke(app, ["collect", "--rank", "3", "--world-size", "2", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2 and "rank" in result.output
