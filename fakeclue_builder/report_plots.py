"""PNG plots (matplotlib's Agg canvas, no pyplot state) and image thumbnails, as data URIs for the report."""

from __future__ import annotations

import base64
import io
from collections import Counter
from pathlib import Path

from fakeclue_builder.records import REAL

COLORS = {REAL: "#2b8a3e", 1 - REAL: "#c92a2a"}
THUMB_PX = 256


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_uri(path: Path, size: int = THUMB_PX) -> str | None:
    """A JPEG thumbnail (PNG when the image has transparency) of the file, or None when it does not decode."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (size, size))  # DCT scaling: decode at 1/2..1/8 size
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            im.thumbnail((size, size))
            alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            im = im.convert("RGBA" if alpha else "RGB")
            buf = io.BytesIO()
            im.save(buf, "PNG" if alpha else "JPEG", quality=85)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return data_uri(buf.getvalue(), "image/png" if alpha else "image/jpeg")


def _figure(width: float = 6.4, height: float = 3.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90, layout="constrained")
    return fig, fig.subplots()


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return data_uri(buf.getvalue(), "image/png")


def grouped_bars(categories: list[str], per_label: dict[int, list[int]], title: str, horizontal: bool = False) -> str:
    """One bar per (category, label), real and fake side by side."""
    fig, ax = _figure(6.4, max(2.6, 0.35 * len(categories) + 1) if horizontal else 3.0)
    width = 0.4
    for i, label in enumerate((REAL, 1 - REAL)):
        pos = [j + (i - 0.5) * width for j in range(len(categories))]
        values = per_label.get(label, [0] * len(categories))
        name = "real" if label == REAL else "fake"
        (ax.barh if horizontal else ax.bar)(pos, values, width, label=name, color=COLORS[label])
    ticks = list(range(len(categories)))
    if horizontal:
        ax.set_yticks(ticks, categories)
        ax.invert_yaxis()
    else:
        ax.set_xticks(ticks, categories, rotation=30, ha="right")
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def single_bars(counter: Counter, title: str, color: str = "#5f3dc4") -> str:
    items = counter.most_common(25)
    fig, ax = _figure(6.4, max(2.6, 0.3 * len(items) + 1))
    ax.barh([str(k) for k, _ in items], [v for _, v in items], color=color)
    ax.invert_yaxis()
    ax.set_title(title)
    return _png(fig)


def _edges(values: list, log_x: bool, bins: int, edges):
    import numpy as np

    if edges is not None:
        return np.asarray(edges, dtype=float)
    lo, hi = min(values), max(values)
    if log_x:
        return np.geomspace(max(lo, 1) / 1.05, max(hi, 2) * 1.05, bins + 1)
    if all(float(v).is_integer() for v in values) and hi - lo <= 60:  # one bar per integer value
        return np.arange(lo - 0.5, hi + 1.5)
    return np.linspace(lo, hi, bins + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])


def histogram(per_label: dict[int, Counter], title: str, xlabel: str, log_x: bool = False, bins: int = 30,
              edges=None) -> str:
    """Histograms of a numeric feature as a share of each label's images, real and fake overlaid
    (counters: value -> images)."""
    values = [v for c in per_label.values() for v in c]
    edges = _edges(values, log_x, bins, edges)
    fig, ax = _figure()
    for label in (REAL, 1 - REAL):
        counter = per_label.get(label)
        if not counter:
            continue
        n = sum(counter.values())
        ax.hist(list(counter), bins=edges, weights=[v / n for v in counter.values()], alpha=0.55,
                color=COLORS[label], label=f"{'real' if label == REAL else 'fake'} (n={n})")
    if log_x:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of images")
    ax.legend()
    return _png(fig)
