"""Annotate benchmark (`make bench`): the stage's overhead over a bare backend loop, measured in one run.

Same tiny Qwen2-VL (random weights, real architecture) through the transformers backend, same requests, batch 8:
(a) a bare loop calling `backend.generate` on ready-made requests, (b) the annotate stage on the same rows
(decoding, pixel budget, request cache writes, validation, bookkeeping; empty cache, so every request reaches
the backend). Goal (issue #5): overhead <= 10%.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image
from skimage import data as skdata

from fakeclue_builder.annotate import AnnotateStage
from fakeclue_builder.backends.base import build_backend
from fakeclue_builder.config import AnnotateConfig
from fakeclue_builder.records import FAKE, REAL, Row
from fakeclue_builder.tiny_vlms import make_tiny_qwen2_vl


def _rows(run_dir: Path, n: int) -> list[Row]:
    photos = ["astronaut", "chelsea", "coffee", "rocket", "camera", "cat"]
    rows = []
    for i in range(n):
        rel = f"blobs/{i:03d}.png"
        (run_dir / "blobs").mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(skdata, photos[i % 6])()).resize((96, 96)).rotate(i).save(run_dir / rel)
        rows.append(Row(source="b", source_path=f"/b/{i}", label=REAL if i % 2 else FAKE, image_id=f"{i:064x}",
                        blob=rel, cate="object", prompt=f"Explain why this image number {i} is real or fake."))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--n", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=3, help="Alternating runs of each; the best of each counts.")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    model = make_tiny_qwen2_vl(args.out / "models" / "qwen2_vl")
    cfg = AnnotateConfig(min_annotators=1, retries=0, annotators={"qwen2_vl": {
        "backend": "transformers", "model": str(model), "device": "cpu", "batch_size": 8,
        "sampling": {"max_tokens": args.max_tokens}}}, validation={"reject_truncated": False, "min_chars": 0,
                                                                     "max_repeat_ratio": 1.0, "min_english_ratio": 0.0})
    run_dir = Path(tempfile.mkdtemp(prefix="bench-annotate-"))
    try:
        rows = _rows(run_dir, args.n)
        stage = AnnotateStage(cfg, run_dir)
        annotator = stage.annotators[0]
        images = stage._decode(rows)
        requests = [stage._request(annotator, r, img, 0)[1] for r, img in zip(rows, images)]
        # the stage batches requests grouped by prompt text (prefix caching): the bare loop sends the same batches
        requests = [req for _, req in sorted(enumerate(requests), key=lambda t: (t[1].messages[0]["content"][-1]["text"], t[0]))]
        backend = build_backend(annotator.spec)
        backend.generate(requests[:8])  # warm-up (model load, first-call costs)
        annotator.backend = backend  # the same loaded model for the stage
        bare, staged = [], []
        for repeat in range(args.repeats):  # alternate, so drift on a shared machine hits both alike
            start = time.perf_counter()
            for i in range(0, len(requests), 8):
                backend.generate(requests[i : i + 8])
            bare.append(time.perf_counter() - start)
            fresh = [Row(source=r.source, source_path=r.source_path, label=r.label, image_id=r.image_id, blob=r.blob,
                         cate=r.cate, prompt=r.prompt) for r in rows]
            stage.cache = None  # an empty cache each time: every request reaches the backend
            shutil.rmtree(run_dir / "annotate", ignore_errors=True)
            start = time.perf_counter()
            out = list(stage(fresh))
            staged.append(time.perf_counter() - start)
            assert len(out) == args.n and all(len(r.annotations) == 1 for r in out)
            assert stage.shard_stats()["qwen2_vl"]["backend_requests"] == args.n
        bare, staged = min(bare), min(staged)
        stage.close()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"== annotate overhead: tiny Qwen2-VL, transformers backend, CPU, {args.n} requests, batch 8, "
          f"max_tokens {args.max_tokens}, best of {args.repeats} alternating runs each")
    print(f"bare backend.generate loop   {bare:7.2f} s   {args.n / bare:6.1f} requests/s")
    print(f"annotate stage               {staged:7.2f} s   {args.n / staged:6.1f} requests/s")
    print(f"overhead {100 * (staged / bare - 1):+.1f}%   (goal <= 10%)")


if __name__ == "__main__":
    main()
