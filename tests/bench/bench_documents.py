"""Document generator benchmark (`make bench`): A4 pages per second at 150 dpi on ONE core.

Renders 20 pages (newspaper, paper, magazine in turn) twice: with procedural charts as figures and with real photos
(scikit-image's bundled sample photos) cropped into the figure boxes. The first pass starts from cold caches (fonts,
word widths, word masks), so it includes the cache fill a generator pays once per run. PNG encoding
(`Image.save(BytesIO, "PNG", compress_level=6)`) is timed separately. Goal (issue brief): >= 2 pages/s rendering.
"""

from __future__ import annotations

import argparse
import io
import os
import time

from PIL import Image

from fakeclue_builder.config import DocumentsGenerator
from fakeclue_builder.synth.documents import DocumentRenderer

GOAL = 2.0


def _photos() -> list[Image.Image]:
    import skimage.data

    return [Image.fromarray(getattr(skimage.data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]


def _run(renderer: DocumentRenderer, pages: int, figures: list[Image.Image], label: str) -> None:
    render_s = encode_s = 0.0
    per_type: dict[str, list[float]] = {}
    png_bytes = 0
    for i in range(pages):
        t0 = time.perf_counter()
        page = renderer.render(i, seed=1000 + i, figures=figures)
        t1 = time.perf_counter()
        buf = io.BytesIO()
        page.image.save(buf, format="PNG", compress_level=6)
        t2 = time.perf_counter()
        render_s, encode_s, png_bytes = render_s + t1 - t0, encode_s + t2 - t1, png_bytes + buf.tell()
        per_type.setdefault(page.doc_type, []).append(t1 - t0)
    types = ", ".join(f"{k} {1000 * sum(v) / len(v):.0f} ms" for k, v in per_type.items())
    print(f"{label}: {pages} pages {renderer.width}x{renderer.height}")
    print(f"  render      {pages / render_s:6.2f} pages/s  ({1000 * render_s / pages:.0f} ms/page; {types})")
    print(f"  PNG encode  {pages / encode_s:6.2f} pages/s  ({1000 * encode_s / pages:.0f} ms/page, "
          f"{png_bytes / pages / 1e6:.2f} MB/page at compress_level 6)")
    total = pages / (render_s + encode_s)
    print(f"  render+PNG  {total:6.2f} pages/s   goal >= {GOAL} pages/s rendering: "
          f"{'met' if pages / render_s >= GOAL else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--dpi", type=int, default=150)
    ap.add_argument("--handwriting", action="store_true", help="also draw the pen annotations")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    spec = DocumentsGenerator(kind="documents", dpi=args.dpi, handwriting=args.handwriting)
    t0 = time.perf_counter()
    renderer = DocumentRenderer(spec)
    print(f"setup (corpus + font resolution): {1000 * (time.perf_counter() - t0):.0f} ms; one core; "
          f"handwriting={args.handwriting}")
    _run(renderer, args.pages, [], "charts (no photos), cold caches")
    _run(renderer, args.pages, _photos(), "real photos, warm caches")


if __name__ == "__main__":
    main()
