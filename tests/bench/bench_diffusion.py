"""Tiny diffusers pipeline benchmark (`make bench`): images/s of the synthesize stage's diffusers path on CPU.

The pipeline is a random-weight Stable Diffusion with the real architecture (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel, DDIM), built offline; the figure measures the stage's own overhead and the
code path, not a real model's speed (on a GPU, a 512-px SD 1.x/2.x image takes on the order of a second).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image

from fakeclue_builder.config import DiffusionGenerator, SatelliteGenerator
from fakeclue_builder.synth.diffusion import DiffusersRunner
from fakeclue_builder.synth.tiny_diffusers import make_tiny_sd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    model = make_tiny_sd(args.out / "models" / "sd")
    common = {"model": str(model), "device": "cpu", "steps": args.steps, "height": args.size, "width": args.size,
              "batch_size": 4}
    print(f"== tiny diffusers pipeline, CPU, {args.size} px, {args.steps} steps, batch 4, {args.n} images")
    txt = DiffusersRunner(DiffusionGenerator(kind="diffusion", prompts=["a teapot"], **common), "txt2img")
    txt.load()
    txt.txt2img(["warm-up"], [0])
    start = time.perf_counter()
    txt.txt2img([f"prompt {i}" for i in range(args.n)], list(range(args.n)))
    print(f"txt2img   {args.n / (time.perf_counter() - start):7.1f} images/s")
    img = DiffusersRunner(SatelliteGenerator(kind="satellite", mode="img2img", **common), "img2img")
    img.load()
    tile = Image.new("RGB", (args.size, args.size), (90, 120, 80))
    img.img2img([tile], ["warm-up"], [0.6], [0])
    start = time.perf_counter()
    img.img2img([tile] * args.n, ["aerial view"] * args.n, [0.6] * args.n, list(range(args.n)))
    print(f"img2img   {args.n / (time.perf_counter() - start):7.1f} images/s (strength 0.6)")


if __name__ == "__main__":
    main()
