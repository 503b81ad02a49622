"""Scale-out: on the demo profile the Ray Data executor builds exactly the local executor's dataset (categorize,
annotate, aggregate with the tiny models) and resumes from the store's markers; a failing batch becomes dropped
rows; Slurm-style ranks in two processes write disjoint shards whose union is the single-process stage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image
from skimage import data as skdata

from fakeclue_builder.config import RayConfig, load_build_config
from fakeclue_builder.executors import RayExecutor
from fakeclue_builder.records import FAKE, REAL, Row
from fakeclue_builder.store import StageDir, StageRunner, shard_rows
from fakeclue_builder.tiny_models import make_tiny

ray = pytest.importorskip("ray", reason="the Ray executor needs the ray extra (pip install -e '.[ray]')")
EXE = [sys.executable, "-m", "fakeclue_builder.cli"]
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "cat"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_tiny(root, ["eva02"])
    return root


def _collected_run(run_dir: Path, n: int = 12) -> None:
    """A finished collect stage: n photos (no category yet) with blobs, 3 rows per shard."""
    rows = []
    for i in range(n):
        rel = f"blobs/{i:02d}/{i}.png"
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(skdata, PHOTOS[i % len(PHOTOS)])()).resize((64, 64)).rotate(9 * i).save(run_dir / rel)
        rows.append(Row(source="photos", source_path=f"/p/{i}.png", label=REAL if i % 2 else FAKE,
                        image_id=f"{i:064x}", blob=rel, format="PNG", width=64, height=64))
    StageRunner(run_dir, "collect", "fixture").run(shard_rows(rows, 3), iter)


def _config(path: Path, models: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "categorize": {"model": f"local-dir:{models / 'eva02'}", "device": "cpu", "batch_size": 4,
                       "min_confidence": 0.0, "fallback": "object"},
        "prompts": {},
    }))
    return path


def _run(stage: str, cfg_path: Path, run_dir: Path):
    """categorize or prompts as the CLI runs them (locally)."""
    from fakeclue_builder.categorize import LazyClassifier
    from fakeclue_builder.pipeline import run_row_stage
    from fakeclue_builder.prompts import config_hash
    from fakeclue_builder.prompts import run as render

    cfg = load_build_config(cfg_path)
    if stage == "categorize":
        classify = LazyClassifier(cfg.categorize)
        return run_row_stage(stage, cfg.categorize, lambda rows: classify(rows, run_dir), run_dir)
    return run_row_stage(stage, cfg.prompts, lambda rows: render(cfg.prompts, rows), run_dir,
                         config_salt=config_hash(cfg.prompts))


def _rows(run_dir: Path, stage: str) -> list[tuple]:
    return sorted((r.image_id, r.cate, tuple(sorted(r.cate_scores.items())), r.prompt_sha256,
                   tuple((a["annotator"], a["text"], a["ok"]) for a in r.annotations))
                  for r in StageDir(run_dir, stage).iter_rows())


def _drops(run_dir: Path, stage: str) -> list:
    """Why rows were dropped (shown when the executors disagree)."""
    import pyarrow.parquet as pq

    path = run_dir / stage / "dropped.parquet"
    return [(r["reason"], r["detail"]) for r in pq.ParquetFile(path).read(columns=["reason", "detail"]).to_pylist()
            ] if path.exists() else []


def _export_rows(run_dir: Path) -> dict:
    import pyarrow.parquet as pq

    rows = {}
    for path in sorted((run_dir / "export" / "data").glob("*.parquet")):
        for r in pq.ParquetFile(path).read(columns=["image_id", "cate", "answer", "annotators"]).to_pylist():
            rows[r["image_id"]] = (path.name.split("-")[0], r["cate"], r["answer"], tuple(r["annotators"]))
    return rows


def test_both_executors_build_the_same_demo_dataset_and_ray_resumes(ray_session, tmp_path):
    """The demo profile: collect and synthesize once, then categorize / annotate / aggregate locally and on Ray."""
    from typer.testing import CliRunner

    from fakeclue_builder.cli import app
    from fakeclue_builder.demo import make_demo_sources

    runner = CliRunner()
    demo = Path(__file__).resolve().parent.parent / "stages" / "demo.yaml"
    local, distributed = tmp_path / "local", tmp_path / "ray"
    make_demo_sources(local / "sources")
    make_tiny(local / "models")

    def stage(name: str, run_dir: Path, *extra: str):
        result = runner.invoke(app, [name, "-q", "--config", str(demo), "--run-dir", str(run_dir), *extra])
        assert result.exit_code == 0, (name, result.output)
        return result.output

    for name in ("collect", "synthesize"):
        stage(name, local)
    shutil.copytree(local, distributed, symlinks=True)  # ${run_dir} paths inside the run are relative to it
    # one actor: the demo's shards are tiny, and concurrent actors are covered by the failing-batch test below
    ray_args = ("--executor", "ray", "--set", "ray.concurrency=1")
    for name in ("categorize", "prompts", "annotate", "aggregate", "export"):
        stage(name, local)
        stage(name, distributed, *(ray_args if name in ("categorize", "annotate", "aggregate") else ()))
        if name != "export":  # export's shards are the Hub files, compared below
            assert _rows(distributed, name) == _rows(local, name), (name, _drops(distributed, name))
    assert _export_rows(distributed) == _export_rows(local) and len(_export_rows(local)) > 50
    stats = json.loads((distributed / "annotate" / "_stats.json").read_text())
    assert stats["in"] == stats["kept"] + stats["dropped"] and stats["extra"]["qwen2_vl"]["backend_requests"] > 0

    # a crash loses only unfinished shards: remove two shards' outputs and markers, rerun on Ray, same rows
    annotate_dir = StageDir(distributed, "annotate")
    for index in (1, 3):
        annotate_dir.marker_path(index).unlink()
        annotate_dir.shard_path(index).unlink()
    output = stage("annotate", distributed, *ray_args)
    assert "shards run=2" in output
    assert _rows(distributed, "annotate") == _rows(local, "annotate")


def test_a_failing_batch_drops_its_rows_instead_of_ending_the_job(ray_session, tmp_path):
    rows = [Row(source="s", source_path=f"/p/{i}", label=REAL, image_id=f"{i:064x}") for i in range(8)]

    def sometimes_fails(batch):
        batch = list(batch)
        if any(r.image_id == f"{5:064x}" for r in batch):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        for row in batch:
            row.cate = "object"
            yield row

    summary = StageRunner(tmp_path, "categorize", "x").run(shard_rows(rows, 2), sometimes_fails,
                                                          executor=RayExecutor(RayConfig(), "categorize"))
    assert summary.complete and (summary.kept, summary.dropped) == (6, 2)
    stats = json.loads((tmp_path / "categorize" / "_stats.json").read_text())
    assert stats["dropped_by_reason"] == {"batch_failed": 2}
    dropped = list(StageDir(tmp_path, "categorize").as_inputs(include_dropped=True)[2].read())
    assert {r.detail for r in dropped if r.reason} == {"RuntimeError: CUDA error: an illegal memory access was "
                                                       "encountered"}


def test_cli_executor_ray(models, tmp_path):
    cfg = _config(tmp_path / "cfg.yaml", models)
    _collected_run(tmp_path / "run")
    out = subprocess.run([*EXE, "categorize", "-q", "--config", str(cfg), "--run-dir", str(tmp_path / "run"),
                          "--executor", "ray", "--set", "ray.init_kwargs.num_cpus=2"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "in=12 kept=12" in out.stdout and StageDir(tmp_path / "run", "categorize").is_complete()


def test_ray_run_killed_midway_then_rerun_equals_local(models, tmp_path):
    """SIGKILL a Ray run (driver, raylet, workers: a node crash) after two shards, rerun, compare."""
    import signal
    import time

    import psutil

    cfg = _config(tmp_path / "cfg.yaml", models)
    local, killed = tmp_path / "local", tmp_path / "killed"
    for run_dir in (local, killed):
        _collected_run(run_dir, n=24)
    _run("categorize", cfg, local)
    command = [*EXE, "categorize", "-q", "--config", str(cfg), "--run-dir", str(killed), "--executor", "ray",
               "--set", "ray.concurrency=1", "--set", "ray.init_kwargs.num_cpus=2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    done = killed / "categorize" / "_done"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and len(list(done.glob("part-*"))) < 2:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    # Ray's workers are children of the raylet and may sit outside the driver's process group: kill the whole tree
    # and wait until every process is gone, so no worker finishes a shard after we count the markers.
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    os.killpg(proc.pid, signal.SIGKILL)
    for member in tree:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(tree, timeout=30)
    finished = len(list(done.glob("part-*")))
    assert 2 <= finished < 8
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"shards run={8 - finished} skipped={finished}" in " ".join(out.stdout.split())
    assert _rows(killed, "categorize") == _rows(local, "categorize")


def test_slurm_ranks_write_disjoint_shards_whose_union_is_the_stage(models, tmp_path):
    cfg = _config(tmp_path / "cfg.yaml", models)
    single, array = tmp_path / "single", tmp_path / "array"
    for run_dir in (single, array):
        _collected_run(run_dir)
    _run("categorize", cfg, single)
    procs = []
    for task in (0, 1):  # an sbatch --array=0-1 job: each task reads its rank from Slurm's environment
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": "2",
               "SLURM_ARRAY_TASK_MIN": "0"}
        procs.append(subprocess.Popen([*EXE, "categorize", "-q", "--config", str(cfg), "--run-dir", str(array)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-3000:]
    markers = [json.loads(p.read_text()) for p in sorted((array / "categorize" / "_done").iterdir())]
    assert len(markers) == 4 and StageDir(array, "categorize").is_complete()
    assert _rows(array, "categorize") == _rows(single, "categorize")
    assert json.loads((array / "categorize" / "_stats.json").read_text())["in"] == 12
    status = subprocess.run([*EXE, "status", "--run-dir", str(array)], capture_output=True, text=True)
    assert "next: prompts" in status.stdout
    _run("prompts", cfg, array)  # the next stage reads the array's shards, no merge step
    assert len(list(StageDir(array, "prompts").iter_rows())) == 12
    shutil.rmtree(single)
