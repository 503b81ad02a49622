"""`make build-dataset` killed at two moments (SIGKILL to the whole process group, mid-synthesize and
mid-annotate) and run again finishes with exactly the dataset an uninterrupted build makes."""

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

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _make(run_dir: Path) -> list[str]:
    # -o install: the tests already run inside the installed environment (VENV = this interpreter's prefix)
    return ["make", "-s", "-C", str(REPO), "-o", "install", "build-dataset", f"RUN_DIR={run_dir}",
            f"VENV={sys.prefix}", "ARGS=--quiet"]


def _build(run_dir: Path, kill_when: Path | None = None, timeout: float = 900) -> bool:
    """Run the build; with `kill_when`, SIGKILL its process group as soon as that file appears.
    Returns True if the build was killed, False if it completed."""
    proc = subprocess.Popen(_make(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if kill_when is not None and kill_when.exists():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"make build-dataset did not finish in {timeout} s")
    assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
    return False


def _dataset(run_dir: Path) -> dict:
    """What the build produced: every exported row (bytes, caption, split), the json, the counts."""
    export = run_dir / "export"
    rows = {}
    for path in sorted((export / "data").glob("*.parquet")):
        split = path.name.split("-")[0]
        for record in pq.ParquetFile(path).read().to_pylist():
            rows[record["image_id"]] = (split, record["label"], record["cate"], record["answer"],
                                        record["image"]["bytes"], tuple(record["annotators"]))
    stats = json.loads((export / "_stats.json").read_text())
    return {"rows": rows, "json": (export / "data_json" / "test.json").read_text(),
            "counts": (stats["in"], stats["kept"], stats["dropped"], stats["extra"]["splits"])}


def test_killed_twice_then_rerun_gives_the_same_dataset(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert not _build(reference)
    assert _build(killed, kill_when=killed / "synthesize" / "_done" / "part-00001"), "not killed mid-synthesize"
    assert not (killed / "annotate").exists()
    assert _build(killed, kill_when=killed / "annotate" / "_done" / "part-00003"), "not killed mid-annotate"
    assert not (killed / "aggregate").exists()
    assert not _build(killed)
    got, want = _dataset(killed), _dataset(reference)
    assert got["rows"] and got["rows"] == want["rows"]
    assert got["json"] == want["json"] and got["counts"] == want["counts"]
    assert (killed / "report" / "index.html").is_file()
