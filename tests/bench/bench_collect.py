"""Collect benchmark (`make bench`): figures and ratios measured in one run, never a test.

- throughput: collect over 5,000 generated photo-like images (mixed JPEG/PNG, 256-1024 px) in images/s,
  and its ratio to `sha256sum` over the same files (both with the files in the page cache);
- memory: peak RSS of the whole process tree (main + workers, summed while sampling) at 2,000 and 8,000 images;
- resume: wall time of a no-op rerun on the finished 5,000-image run.

Goals (issue #2): ratio >= 0.5, peak RSS flat between 2k and 8k and <= 400 MB, no-op rerun <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

from fakeclue_builder.demo import make_bench_images

EXE = [sys.executable, "-m", "fakeclue_builder.cli"]


def _link_subset(images: list[Path], n: int, dst: Path) -> Path:
    """A folder holding the first n images by index, JPEG and PNG interleaved (hardlinks: same bytes, no copy)."""
    if dst.exists():
        shutil.rmtree(dst)
    for sub in ("jpeg", "png"):
        (dst / sub).mkdir(parents=True)
    for path in sorted(images, key=lambda p: p.stem)[:n]:
        os.link(path, dst / path.parent.name / path.name)
    return dst


def _config(images_dir: Path, path: Path, workers: int) -> Path:
    cfg = {"collect": {"workers": workers, "shard_size": 500, "sources": [
        {"kind": "folder", "name": "bench_real", "root": str(images_dir / "jpeg"), "label": "real"},
        {"kind": "folder", "name": "bench_fake", "root": str(images_dir / "png"), "label": "fake"},
    ]}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_sampled(cmd: list[str], sample_rss: bool = True) -> tuple[float, float]:
    """Wall seconds and the peak summed RSS (MB) of the process tree, sampled every 20 ms.

    Sampling costs CPU, so throughput runs switch it off (`sample_rss=False`) and memory runs have their own.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()
    if not sample_rss:
        stop.set()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
            while not stop.is_set():
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, total)
                time.sleep(0.02)
        except psutil.Error:
            pass

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    stop.set()
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.decode()[-3000:]}")
    return time.perf_counter() - start, peak / 2**20


def _warm(files: list[Path]) -> None:
    for path in files:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


def _sha256sum_seconds(root: Path) -> float:
    start = time.perf_counter()
    subprocess.run(f"find {root} -type f -print0 | xargs -0 sha256sum > /dev/null", shell=True, check=True)
    return time.perf_counter() - start


def _collect(images_dir: Path, work: Path, name: str, workers: int, sample_rss: bool) -> tuple[float, float, dict]:
    run_dir = work / f"run-{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = _config(images_dir, work / f"{name}.yaml", workers)
    seconds, rss = _run_sampled([*EXE, "collect", "-q", "--config", str(cfg), "--run-dir", str(run_dir)], sample_rss)
    stats = json.loads((run_dir / "collect" / "_stats.json").read_text())
    return seconds, rss, stats


def _per_format_costs(subset: Path, n: int = 300) -> None:
    """Where the time goes: one core's probe (full decode + pHash) vs sha256sum, per format."""
    from fakeclue_builder import images

    print("\n== cost per image, one core (probe = full decode check + pHash)")
    for fmt in ("jpeg", "png"):
        files = sorted((subset / fmt).iterdir())[:n]
        blobs = [p.read_bytes() for p in files]
        images.probe_image(blobs[0], max_pixels=10**9, allowed_formats={"JPEG", "PNG"})  # warm imports
        start = time.perf_counter()
        for data in blobs:
            images.probe_image(data, max_pixels=10**9, allowed_formats={"JPEG", "PNG"})
        probe_ms = (time.perf_counter() - start) / len(blobs) * 1000
        start = time.perf_counter()
        subprocess.run(["sha256sum", *map(str, files)], stdout=subprocess.DEVNULL, check=True)
        sha_ms = (time.perf_counter() - start) / len(files) * 1000
        kb = sum(map(len, blobs)) / len(blobs) / 1024
        print(f"{fmt:5s} avg {kb:6.0f} KB   probe {probe_ms:6.2f} ms   sha256sum {sha_ms:5.2f} ms   "
              f"best possible ratio on 2 cores, zero overhead: {2 * sha_ms / probe_ms:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="Work directory (images are cached).")
    parser.add_argument("--n", type=int, default=5000, help="Images for the throughput figure.")
    parser.add_argument("--rss-sizes", default="2000,8000", help="Image counts for the memory figures.")
    parser.add_argument("--workers", type=int, default=2, help="collect.workers")
    args = parser.parse_args()
    sizes = [int(s) for s in args.rss_sizes.split(",")]
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pool = make_bench_images(work / "images", max([args.n, *sizes]), seed=0)
    print(f"generated/cached {len(pool)} images in {time.perf_counter() - t0:.1f}s")

    subset = _link_subset(pool, args.n, work / f"subset-{args.n}")
    files = sorted(p for p in subset.rglob("*") if p.is_file())
    total_mb = sum(p.stat().st_size for p in files) / 2**20
    _warm(files)
    sha_s = _sha256sum_seconds(subset)
    col_s, _, stats = _collect(subset, work, str(args.n), args.workers, sample_rss=False)
    assert stats["in"] == stats["kept"] + stats["dropped"] == args.n, stats
    noop_s, _ = _run_sampled([*EXE, "collect", "-q", "--config", str(work / f"{args.n}.yaml"),
                              "--run-dir", str(work / f"run-{args.n}")], sample_rss=False)
    print(f"\n== throughput: {args.n} images, {total_mb:.0f} MB, workers={args.workers}, blob_mode=hardlink")
    print(f"sha256sum           {sha_s:7.2f} s   {args.n / sha_s:8.1f} images/s")
    print(f"collect             {col_s:7.2f} s   {args.n / col_s:8.1f} images/s   (kept {stats['kept']}, "
          f"dropped {stats['dropped']} {stats['dropped_by_reason']})")
    print(f"ratio collect/sha256sum speed: {sha_s / col_s:.2f}   (goal >= 0.5)")
    print(f"no-op rerun         {noop_s:7.2f} s   (goal <= 3 s)")
    _per_format_costs(subset)

    print("\n== memory: peak RSS of the process tree (main + workers, summed)")
    peaks = {}
    for n in sizes:
        sub = _link_subset(pool, n, work / f"subset-{n}")
        _warm(sorted(p for p in sub.rglob("*") if p.is_file()))
        seconds, rss, stats = _collect(sub, work, str(n), args.workers, sample_rss=True)
        peaks[n] = rss
        print(f"{n:6d} images   peak RSS {rss:7.1f} MB   ({seconds:.1f} s, {n / seconds:.0f} images/s)")
    lo, hi = peaks[min(sizes)], peaks[max(sizes)]
    print(f"RSS growth {min(sizes)} -> {max(sizes)} images: {hi - lo:+.1f} MB ({hi / lo:.2f}x); goal: flat and <= 400 MB")


if __name__ == "__main__":
    main()
