"""annotate end to end with two tiny VLM families through the real transformers backend, and crash safety:
after a SIGKILL, the rerun asks the backend only for the requests that were not answered yet."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image
from skimage import data as skdata

from fakeclue_builder.records import FAKE, REAL, Row
from fakeclue_builder.store import StageDir, StageRunner, shard_rows
from fakeclue_builder.tiny_vlms import make_tiny_llava, make_tiny_qwen2_vl

EXE = [sys.executable, "-m", "fakeclue_builder.cli"]


@pytest.fixture(scope="module")
def vlms(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlms")
    return {"qwen2_vl": make_tiny_qwen2_vl(root / "qwen2_vl"), "llava": make_tiny_llava(root / "llava")}


def _prompted_run(run_dir: Path, n: int) -> None:
    """A run whose prompts stage has finished: n rows with real photos as blobs."""
    photos = ["astronaut", "chelsea", "coffee", "rocket", "camera", "cat"]
    rows = []
    for i in range(n):
        rel = f"blobs/{i:02d}/{i}.png"
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        arr = getattr(skdata, photos[i % len(photos)])()
        Image.fromarray(arr).resize((64, 64)).rotate(7 * i).save(run_dir / rel)
        rows.append(Row(source="s", source_path=f"/p/{i}.png", label=REAL if i % 2 else FAKE, image_id=f"{i:064x}",
                        blob=rel, cate="object", prompt=f"Explain why image {i} is real or fake."))
    StageRunner(run_dir, "prompts", "fixture").run(shard_rows(rows, 3), iter)


def _config(path: Path, vlms: dict[str, Path]) -> Path:
    annotators = {name: {"backend": "transformers", "model": str(model), "device": "cpu", "batch_size": 2,
                         "sampling": {"max_tokens": 12}} for name, model in vlms.items()}
    path.write_text(yaml.safe_dump({"annotate": {"retries": 0, "annotators": annotators, "validation": {
        "reject_truncated": False, "min_chars": 0, "max_repeat_ratio": 1.0, "min_english_ratio": 0.0}}}))
    return path


def _annotate(cfg: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([*EXE, "annotate", "-q", "--config", str(cfg), "--run-dir", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _backend_requests(markers: list[dict]) -> int:
    return sum(c.get("backend_requests", 0) for m in markers for c in m.get("extra", {}).values())


def test_annotate_with_tiny_vlms_then_kill_and_resume(vlms, tmp_path):
    n_rows = 12
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    for run_dir in (reference, crashed):
        _prompted_run(run_dir, n_rows)
    cfg = _config(tmp_path / "cfg.yaml", vlms)
    proc = _annotate(cfg, reference)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-3000:]
    rows = list(StageDir(reference, "annotate").iter_rows())
    assert len(rows) == n_rows
    for row in rows:
        assert sorted(a["annotator"] for a in row.annotations) == ["llava", "qwen2_vl"]
        verdict = "This is a real image." if row.label == REAL else "This is a fake image."
        assert all(a["ok"] and a["text"].startswith(verdict) and a["tokens"] > 0 for a in row.annotations)
    stats = json.loads((reference / "annotate" / "_stats.json").read_text())
    assert stats["extra"]["qwen2_vl"]["backend_requests"] == n_rows and stats["extra"]["llava"]["images_per_s"]

    proc = _annotate(cfg, crashed)
    cache = crashed / "annotate" / "_cache.sqlite"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if len(list((crashed / "annotate" / "_done").glob("part-*"))) >= 1:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    answered = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    done = [json.loads(p.read_text()) for p in (crashed / "annotate" / "_done").glob("part-*")]
    assert 1 <= len(done) < 4 and answered < 2 * n_rows, "the kill must land midway"
    before = _backend_requests(done)
    proc = _annotate(cfg, crashed)
    assert proc.wait(timeout=600) == 0
    after = json.loads((crashed / "annotate" / "_stats.json").read_text())
    rerun_requests = sum(c["backend_requests"] for c in after["extra"].values()) - before
    assert rerun_requests == 2 * n_rows - answered  # only the unanswered requests were asked again
    got = {r.source_path: [a["text"] for a in r.annotations] for r in StageDir(crashed, "annotate").iter_rows()}
    want = {r.source_path: [a["text"] for a in r.annotations] for r in rows}
    assert got == want  # temperature 0: same answers as the uninterrupted run
