"""Crash safety and determinism: SIGKILL a running collect, rerun, and get exactly an uninterrupted run's rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from fakeclue_builder.demo import make_bench_images

EXE = [sys.executable, "-m", "fakeclue_builder.cli"]


@pytest.fixture(scope="module")
def many_images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("many")
    make_bench_images(root, 96, seed=3)
    return root


def _config(tmp_path: Path, images: Path, demo_sources: dict) -> Path:
    cfg = {"collect": {"workers": 2, "shard_size": 4, "seed": 11, "sources": [
        {"kind": "folder", "name": "jpeg", "root": str(images / "jpeg"), "label": "real", "quota": 40},
        {"kind": "folder", "name": "png", "root": str(images / "png"), "label": "fake"},
        {"kind": "ffpp", "root": str(demo_sources["ffpp"]), "methods": ["Deepfakes", "Face2Face"],
         "frames_per_video": 3},
    ]}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _all_rows(run_dir: Path) -> pa.Table:
    """Every row of the finished stage, kept and dropped, in a canonical order."""
    stage = run_dir / "collect"
    kept = pq.read_table(sorted(stage.glob("part-*.parquet")))
    dropped = pq.read_table(stage / "dropped.parquet")
    table = pa.concat_tables([kept, dropped])
    return table.sort_by([("source", "ascending"), ("source_path", "ascending"), ("frame_index", "ascending"),
                          ("status", "ascending")])


def _collect(cfg: Path, run_dir: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([*EXE, "collect", "-q", "--config", str(cfg), "--run-dir", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kw)


def test_sigkill_midway_then_rerun_equals_uninterrupted_run(tmp_path, many_images, demo_sources):
    cfg = _config(tmp_path, many_images, demo_sources)
    reference = tmp_path / "reference"
    assert _collect(cfg, reference).wait(timeout=300) == 0

    crashed = tmp_path / "crashed"
    proc = _collect(cfg, crashed)
    markers = crashed / "collect" / "_probe" / "_done"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(markers.glob("part-*"))) < 3:
        time.sleep(0.005)
    n_done = len(list(markers.glob("part-*")))
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker processes, mid-shard
    proc.wait()
    n_shards = len(list((reference / "collect" / "_probe" / "_done").glob("part-*")))
    assert 3 <= n_done < n_shards, "the kill must land midway"
    assert not (crashed / "collect" / "_stats.json").exists()

    rerun = _collect(cfg, crashed)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()[-2000:]
    assert _all_rows(crashed).equals(_all_rows(reference))
    kept = pq.read_table(sorted((crashed / "collect").glob("part-*.parquet")))
    ids = kept.column("image_id").to_pylist()
    assert len(ids) == len(set(ids))  # no duplicates
    assert not [p for p in crashed.rglob("*.tmp")]  # the killed run's partial files are gone
    blobs = {p.name.split(".")[0] for p in (crashed / "blobs").rglob("*") if p.is_file()}
    assert set(ids) <= blobs


def test_same_seed_same_rows_and_noop_rerun(tmp_path, many_images, demo_sources):
    cfg = _config(tmp_path, many_images, demo_sources)
    a, b = tmp_path / "a", tmp_path / "b"
    assert _collect(cfg, a).wait(timeout=300) == 0
    assert _collect(cfg, b).wait(timeout=300) == 0
    assert _all_rows(a).equals(_all_rows(b))
    marker = a / "collect" / "_done" / "part-00000"
    before = marker.stat().st_mtime_ns
    proc = _collect(cfg, a)
    assert proc.wait(timeout=300) == 0
    assert marker.stat().st_mtime_ns == before  # nothing was redone
    assert b"shards run=0" in proc.stdout.read()
