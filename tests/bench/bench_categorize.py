"""Categorize benchmark (`make bench`): images/s at batch 32, and where the time goes.

Two random-weight models with EVA-02's real architecture: the 2-layer, 56-px model the tests and the demo
use, and timm's EVA-02-Tiny (5.7 M parameters, 224 px), the smallest real EVA-02. Decoding runs in a thread
pool one batch ahead of the model; `waited` is the time the model loop sat idle for decoded images, i.e. the
part of decoding that was not hidden. Goal (issue #4): decoding is never the bottleneck.
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


def _eva02_tiny_224(out: Path) -> Path:
    import timm
    from timm.models import save_for_hf

    if not (out / "model.safetensors").is_file():
        model = timm.create_model("eva02_tiny_patch14_224", pretrained=False, num_classes=1000)
        save_for_hf(model, out, safe_serialization=True)
    return out


def _bench(label: str, model_dir: Path, files: list[Path], batch_size: int, decode_workers: int) -> None:
    cfg = CategorizeConfig(model=f"local-dir:{model_dir}", device="cpu", batch_size=batch_size,
                           decode_workers=decode_workers, min_confidence=0.0)
    clf = categorize.load_classifier(cfg)

    def rows() -> list[Row]:
        return [Row(source="bench", source_path=str(p), label=1, blob=str(p.resolve())) for p in files]

    list(categorize.run(cfg, rows()[:batch_size], Path("/"), classifier=clf))  # warm-up
    clf.timings = categorize.Timings()
    start = time.perf_counter()
    out = list(categorize.run(cfg, rows(), Path("/"), classifier=clf))
    wall = time.perf_counter() - start
    t = clf.timings
    assert t.images == len(out) == len(files)
    params = sum(p.numel() for p in clf.model.parameters()) / 1e6
    print(f"\n== categorize, {label}: {params:.2f} M params, {len(files)} images (JPEG/PNG 256-1024 px), "
          f"batch {batch_size}, {decode_workers} decode threads, CPU")
    print(f"throughput                 {len(files) / wall:8.1f} images/s   (wall {wall:.2f} s)")
    print(f"model                      {t.model_s:8.2f} s   ({100 * t.model_s / wall:.0f}% of wall)")
    print(f"decode + transform         {t.decode_s:8.2f} s   summed over threads, overlapped with the model")
    verdict = "decoding hidden" if t.wait_s < 0.1 * wall else "decoding NOT hidden: the CPU is the bottleneck"
    print(f"model waited for decoding  {t.wait_s:8.2f} s   ({100 * t.wait_s / wall:.0f}% of wall) -> {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decode-workers", type=int, default=2)
    args = parser.parse_args()
    files = sorted(make_bench_images(args.out / "images", 8000, seed=0), key=lambda p: p.stem)
    _bench("2-layer test model (56 px)", make_tiny_eva02(args.out / "models" / "eva02"), files[:640],
           args.batch_size, args.decode_workers)
    _bench("EVA-02-Tiny (224 px)", _eva02_tiny_224(args.out / "models" / "eva02-tiny-224"), files[:192],
           args.batch_size, args.decode_workers)


if __name__ == "__main__":
    main()
