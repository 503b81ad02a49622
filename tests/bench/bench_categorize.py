"""Categorize benchmark (`make bench`): images/s with the tiny EVA-02 at batch 32, and where the time goes.

Decoding runs in a thread pool one batch ahead of the model. `wait` is the time the model loop sat idle
waiting for decoded images: the part of decoding that was not hidden. Goal (issue #4): decoding is never
the bottleneck, i.e. wait << model time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fakeclue_builder import categorize
from fakeclue_builder.config import CategorizeConfig
from fakeclue_builder.demo import make_bench_images
from fakeclue_builder.records import Row
from fakeclue_builder.tiny_models import make_tiny_eva02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--n", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decode-workers", type=int, default=2)
    args = parser.parse_args()
    files = sorted(make_bench_images(args.out / "images", 8000, seed=0), key=lambda p: p.stem)[: args.n]
    model_dir = make_tiny_eva02(args.out / "models" / "eva02")
    cfg = CategorizeConfig(model=f"local-dir:{model_dir}", device="cpu", batch_size=args.batch_size,
                           decode_workers=args.decode_workers, min_confidence=0.0)
    clf = categorize.load_classifier(cfg)
    rows = [Row(source="bench", source_path=str(p), label=1, blob=str(p.resolve())) for p in files]
    list(categorize.run(cfg, rows[: args.batch_size], Path("/"), classifier=clf))  # warm-up
    clf.timings = categorize.Timings()
    start = time.perf_counter()
    out = list(categorize.run(cfg, rows, Path("/"), classifier=clf))
    wall = time.perf_counter() - start
    t = clf.timings
    assert t.images == len(out) == args.n
    print(f"== categorize: {args.n} images (JPEG/PNG 256-1024 px), tiny EVA-02 "
          f"({sum(p.numel() for p in clf.model.parameters()) / 1e6:.2f} M params, 56 px input), "
          f"batch {args.batch_size}, {args.decode_workers} decode threads")
    print(f"throughput        {args.n / wall:8.1f} images/s   (wall {wall:.2f} s)")
    print(f"model             {t.model_s:8.2f} s   ({100 * t.model_s / wall:.0f}% of wall)")
    print(f"decode (threads)  {t.decode_s:8.2f} s   (summed over threads; overlapped with the model)")
    print(f"model waited for decoding {t.wait_s:.2f} s ({100 * t.wait_s / wall:.0f}% of wall); goal: decoding never "
          f"the bottleneck -> {'met' if t.wait_s < 0.5 * t.model_s else 'NOT met: decoding dominates'}")


if __name__ == "__main__":
    main()
