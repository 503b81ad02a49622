"""The synthesize stage: plan from collect, three generators on CPU with tiny models, provenance, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from fakeclue_builder import collect, synthesize
from fakeclue_builder.config import ConfigError, SynthesizeConfig
from fakeclue_builder.records import FAKE
from fakeclue_builder.store import StageDir, read_rows
from tests.conftest import collect_config

EXE = [sys.executable, "-m", "fakeclue_builder.cli"]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from fakeclue_builder.synth.tiny_diffusers import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "sd")


@pytest.fixture(scope="module")
def collected_run(demo_sources, tmp_path_factory) -> Path:
    """A finished collect with real satellite tiles and real photos (figure material)."""
    run_dir = tmp_path_factory.mktemp("synth-run")
    collect.run(collect_config([
        {"kind": "folder", "name": "tiles", "root": str(demo_sources["satellite"]), "label": "real", "cate": "satellite"},
        {"kind": "chameleon", "root": str(demo_sources["chameleon"])},
    ]), run_dir)
    return run_dir


def _generators(sd: Path) -> list[dict]:
    common = {"model": str(sd), "device": "cpu", "steps": 2, "height": 32, "width": 32, "batch_size": 2}
    return [
        {"kind": "documents", "count": 3, "dpi": 40},
        {"kind": "satellite", "mode": "img2img", "tile_size": 32, **common},
        {"kind": "satellite", "name": "sat_prompts", "mode": "txt2img", "count": 2, **common},
        {"kind": "diffusion", "name": "objects", "cate": "object", "prompts": ["a red car", "a teapot"], **common},
    ]


def _fresh(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_three_generators_with_provenance(tiny_sd, collected_run, tmp_path):
    run_dir = _fresh(collected_run, tmp_path / "run")
    cfg = SynthesizeConfig(generators=_generators(tiny_sd), shard_size=3)
    summary = synthesize.run(cfg, run_dir)
    rows = list(StageDir(run_dir, "synthesize").iter_rows())
    tiles = [r for r in StageDir(run_dir, "collect").iter_rows() if r.cate == "satellite"]
    assert summary.complete and summary.dropped == 0
    assert len(rows) == 3 + len(tiles) + 2 + 2
    by_source = {}
    for r in rows:
        by_source.setdefault(r.source, []).append(r)
    assert set(by_source) == {"synth-documents", "synth-satellite", "synth-sat_prompts", "synth-objects"}
    for r in rows:
        assert r.label == FAKE and r.image_id and r.blob and r.format == "PNG" and r.encoding.startswith("png-lossless")
        assert (run_dir / r.blob).is_file() and r.meta["seed"] and r.meta["generator_version"]
    assert {r.cate for r in by_source["synth-documents"]} == {"doc"}
    assert all(json.loads(r.meta["layout"]) for r in by_source["synth-documents"])
    assert {r.meta["doc_type"] for r in by_source["synth-documents"]} == {"newspaper", "paper", "magazine"}
    tile_groups = {t.image_id: (t.group_id or f"image:{t.image_id}") for t in tiles}
    for r in by_source["synth-satellite"]:  # img2img fakes share their real tile's group
        assert r.cate == "satellite" and r.group_id == tile_groups[r.meta["derived_from"]]
        assert r.meta["diffusers_model"] == str(tiny_sd) and r.meta["prompt"] and r.meta["strength"]
    assert {r.cate for r in by_source["synth-objects"]} == {"object"}
    stats = json.loads((run_dir / "synthesize" / "_stats.json").read_text())
    assert stats["in"] == stats["kept"] + stats["dropped"] == len(rows)


def test_same_seed_same_bytes(tiny_sd, collected_run, tmp_path):
    def blobs(name):
        run_dir = _fresh(collected_run, tmp_path / name)
        synthesize.run(SynthesizeConfig(generators=_generators(tiny_sd), seed=5), run_dir)
        return {r.source_path: (run_dir / r.blob).read_bytes() for r in StageDir(run_dir, "synthesize").iter_rows()}

    a, b = blobs("a"), blobs("b")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_undecodable_tile_is_dropped(tiny_sd, collected_run, tmp_path):
    run_dir = _fresh(collected_run, tmp_path / "run")
    tile = next(r for r in StageDir(run_dir, "collect").iter_rows() if r.cate == "satellite")
    blob = run_dir / tile.blob
    blob.unlink()
    blob.write_bytes(b"garbage")
    cfg = SynthesizeConfig(generators=[_generators(tiny_sd)[1]])
    synthesize.run(cfg, run_dir)
    dropped = read_rows(StageDir(run_dir, "synthesize").dropped_path)
    assert [r.reason for r in dropped] == ["decode_failed"] and dropped[0].meta["derived_from"] == tile.image_id


def test_config_errors_before_work(collected_run, tmp_path):
    run_dir = _fresh(collected_run, tmp_path / "run")
    bad = SynthesizeConfig(generators=[{"kind": "diffusion", "model": str(tmp_path / "no-model"), "prompts": ["x"]}])
    with pytest.raises(ConfigError, match="model"):
        synthesize.run(bad, run_dir)
    assert not (run_dir / "synthesize").exists()
    with pytest.raises(ConfigError, match="collect"):
        synthesize.run(SynthesizeConfig(generators=[{"kind": "documents"}]), tmp_path / "empty")


def test_kill_and_rerun_gives_no_duplicates(collected_run, tmp_path):
    run_dir = _fresh(collected_run, tmp_path / "run")
    reference = _fresh(collected_run, tmp_path / "reference")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"synthesize": {"shard_size": 1, "generators": [
        {"kind": "documents", "count": 12, "dpi": 60}]}}))

    def start(target: Path) -> subprocess.Popen:
        return subprocess.Popen([*EXE, "synthesize", "-q", "--config", str(cfg), "--run-dir", str(target)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    assert start(reference).wait(timeout=300) == 0
    proc = start(run_dir)
    markers = run_dir / "synthesize" / "_done"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(markers.glob("part-*"))) < 2:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len(list(markers.glob("part-*"))) < 12
    assert start(run_dir).wait(timeout=300) == 0
    got = pq.read_table(sorted((run_dir / "synthesize").glob("part-*.parquet")))
    want = pq.read_table(sorted((reference / "synthesize").glob("part-*.parquet")))
    assert got.num_rows == want.num_rows == 12
    assert sorted(got.column("image_id").to_pylist()) == sorted(want.column("image_id").to_pylist())
    assert len(set(got.column("source_path").to_pylist())) == 12
