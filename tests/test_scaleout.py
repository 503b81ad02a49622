"""Scale-out: the Ray Data executor gives exactly the local executor's rows (categorize and annotate with tiny
models), resumes from the store's markers, turns a failing batch into dropped rows; Slurm-style ranks in two
processes write disjoint shards whose union is the single-process stage."""

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
    make_tiny(root, ["eva02", "qwen2_vl", "llava"])
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
    annotators = {name: {"backend": "transformers", "model": str(models / name), "device": "cpu", "batch_size": 2,
                         "sampling": {"max_tokens": 10}} for name in ("qwen2_vl", "llava")}
    path.write_text(yaml.safe_dump({
        "categorize": {"model": f"local-dir:{models / 'eva02'}", "device": "cpu", "batch_size": 4,
                       "min_confidence": 0.0, "fallback": "object"},
        "prompts": {},
        "annotate": {"retries": 0, "annotators": annotators, "validation": {
            "reject_truncated": False, "min_chars": 0, "max_repeat_ratio": 1.0, "min_english_ratio": 0.0}},
        "ray": {"concurrency": 2, "num_cpus": 1},
    }))
    return path


def _run(stage: str, cfg_path: Path, run_dir: Path, executor=None):
    """One row stage as the CLI runs it, with the given executor."""
    from fakeclue_builder.annotate import AnnotateStage
    from fakeclue_builder.categorize import LazyClassifier
    from fakeclue_builder.pipeline import run_row_stage
    from fakeclue_builder.prompts import config_hash
    from fakeclue_builder.prompts import run as render

    cfg = load_build_config(cfg_path)
    if stage == "categorize":
        classify = LazyClassifier(cfg.categorize)
        return run_row_stage(stage, cfg.categorize, lambda rows: classify(rows, run_dir), run_dir, executor=executor)
    if stage == "prompts":
        return run_row_stage(stage, cfg.prompts, lambda rows: render(cfg.prompts, rows), run_dir,
                             config_salt=config_hash(cfg.prompts))
    fn = AnnotateStage(cfg.annotate, run_dir)
    try:
        return run_row_stage(stage, cfg.annotate, fn, run_dir, executor=executor)
    finally:
        fn.close()


def _rows(run_dir: Path, stage: str) -> list[tuple]:
    return sorted((r.image_id, r.cate, tuple(sorted(r.cate_scores.items())), r.prompt_sha256,
                   tuple((a["annotator"], a["text"], a["ok"]) for a in r.annotations))
                  for r in StageDir(run_dir, stage).iter_rows())


def test_ray_executor_gives_the_local_rows_and_resumes(ray_session, models, tmp_path):
    cfg = _config(tmp_path / "cfg.yaml", models)
    local, distributed = tmp_path / "local", tmp_path / "ray"
    for run_dir in (local, distributed):
        _collected_run(run_dir)
    executor = RayExecutor(RayConfig(concurrency=2), "categorize")
    for stage in ("categorize", "prompts", "annotate"):
        _run(stage, cfg, local)
        summary = _run(stage, cfg, distributed, executor if stage != "prompts" else None)
        assert summary.complete and summary.rows_in == summary.kept + summary.dropped == 12
        assert _rows(distributed, stage) == _rows(local, stage), stage
    assert all(a[1] for row in _rows(distributed, "annotate") for a in row[4])  # real generated text
    stats = json.loads((distributed / "annotate" / "_stats.json").read_text())
    assert stats["extra"]["qwen2_vl"]["backend_requests"] == 12  # per-shard counters merged as locally

    # a crash loses only unfinished shards: remove two shards' outputs and markers, rerun, same rows
    stage_dir = StageDir(distributed, "annotate")
    for index in (1, 3):
        stage_dir.marker_path(index).unlink()
        stage_dir.shard_path(index).unlink()
    again = _run("annotate", cfg, distributed, RayExecutor(RayConfig(concurrency=2), "annotate"))
    assert (again.shards_run, again.shards_skipped) == (2, 2)
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
