"""Non-prose content of fake document pages: figures (cropped photos or PIL charts), tables, equations, newspaper
rules, invented names and running heads, and handwriting-like pen annotations."""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from fakeclue_builder.synth.documents_layout import LayoutBox, line_height, page_margin
from fakeclue_builder.synth.documents_text import PageContext, fit_text

Box = tuple[int, int, int, int]

MASTHEADS = ("The Riverside Courier", "Evening Chronicle", "The Northern Ledger", "Harbour Town Gazette",
             "The Valley Herald", "Morning Dispatch", "The County Observer")
_MAGAZINES = ("HORIZON", "FIELD & FORM", "QUARTERLY LENS", "MODERN LIVING", "OUTLOOK", "THE LONG VIEW")
_JOURNALS = ("Journal of Applied Observation", "Proceedings of the Workshop on Data Systems",
             "Transactions on Measurement Science", "Letters in Computational Studies")
_FIRST = ("Anna", "Tomas", "Mei", "Rafael", "Ingrid", "Kwame", "Laura", "Daniel", "Priya", "Jonas", "Elena", "Omar",
          "Sofia", "Henrik", "Yuki", "Marta", "Lucas", "Nadia")
_LAST = ("Keller", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Haddad", "Fischer", "Costa", "Brennan",
         "Petrov", "Alvarez", "Sato", "Nilsen", "Rossi", "Walsh")
_FIELDS = ("Computer Science", "Physics", "Earth Sciences", "Economics", "Statistics", "Engineering")
_PLACES = ("Northfield", "Lakeside", "Westbrook", "Eastvale", "Marston", "Hollow Bay")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ACCENTS = ((178, 34, 34), (20, 70, 140), (0, 110, 90), (200, 110, 0), (110, 40, 120), (30, 30, 30))
_METRICS = ("Acc.", "F1", "Prec.", "Recall", "AUC", "Time (s)", "Params", "Loss", "mAP", "Error")
_ROWS = ("Baseline", "Ours", "Ours + aug.", "Linear", "Random", "Oracle", "Model A", "Model B", "w/o prior",
         "Ensemble", "Small", "Large")
_NOTES = ("check this!", "see p. 4", "why?", "important", "ask Tom", "not sure", "revise", "source?", "call back",
          "ok", "yes!", "compare w/ fig 2", "keep", "hmm")


def accent(rng: random.Random) -> tuple[int, int, int]:
    return rng.choice(_ACCENTS)


def person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def affiliation(rng: random.Random) -> str:
    return f"Department of {rng.choice(_FIELDS)}, University of {rng.choice(_PLACES)}"


def identity(page: PageContext) -> dict[str, str]:
    """The page's publication: name, date, volume line and page number, drawn once per page and reused."""
    if "identity" not in page.memo:
        rng = page.rng
        name = {"paper": _JOURNALS, "magazine": _MAGAZINES}.get(page.doc_type, MASTHEADS)
        year, month, day = rng.randint(1995, 2024), rng.choice(_MONTHS), rng.randint(1, 28)
        page.memo["identity"] = {
            "name": rng.choice(name), "date": f"{rng.choice(_DAYS)}, {day} {month} {year}",
            "month": f"{month.upper()} {year}", "page": str(rng.randint(2, 48)),
            "volume": f"VOL. {rng.randint(12, 160)} \u00b7 NO. {rng.randint(1, 365)}",
            "issue": f"Vol. {rng.randint(3, 40)}, No. {rng.randint(1, 12)} \u00b7 {year}",
        }
    return page.memo["identity"]


def running_head(page: PageContext) -> tuple[str, str]:
    """(left, right) text of the header line."""
    ident = identity(page)
    if page.doc_type == "paper":
        return ident["name"], ident["issue"]
    if page.doc_type == "magazine":
        return ident["name"], ident["month"]
    return ident["volume"], ident["date"]


def running_foot(page: PageContext) -> str:
    ident = identity(page)
    if page.doc_type == "paper":
        return ident["name"]
    if page.doc_type == "magazine":
        return f"{ident['name']} \u00b7 {ident['month'].title()}"
    return f"{ident['name']} \u00b7 {ident['date']}"


# ------------------------------------------------------------------------------------------------ figures


def paste_photo(image: Image.Image, box: Box, figures: list[Image.Image], rng: random.Random) -> None:
    """A seeded crop of one of the photos at the box's aspect ratio, resized into the box."""
    x, y, w, h = box
    src = figures[rng.randrange(len(figures))]
    if src.mode not in ("RGB", "RGBA", "L"):
        src = src.convert("RGB")
    sw, sh = src.size
    zoom = rng.uniform(0.75, 1.0)
    cw, ch = (sh * w / h, sh) if sw / sh > w / h else (sw, sw * h / w)
    cw, ch = cw * zoom, ch * zoom
    cx, cy = rng.uniform(0, sw - cw), rng.uniform(0, sh - ch)
    img = src.resize((w, h), Image.Resampling.BILINEAR, box=(cx, cy, cx + cw, cy + ch), reducing_gap=2.0)
    image.paste(img.convert("RGB"), (x, y))


def chart(page: PageContext, box: Box) -> None:
    """A bar, line or scatter chart with axes, ticks and tick labels, drawn into the box."""
    rng, d = page.rng, page.draw
    x, y, w, h = box
    d.rectangle((x, y, x + w - 1, y + h - 1), fill=(255, 255, 255), outline=(200, 200, 200))
    ax0, ay0, ax1, ay1 = x + round(w * 0.13), y + round(h * 0.06), x + w - round(w * 0.04), y + h - round(h * 0.14)
    if ax1 - ax0 < 8 or ay1 - ay0 < 8:
        d.rectangle((x + 1, y + 1, x + w - 2, y + h - 2), fill=(150, 170, 190))
        return
    lw = max(1, page.body // 9)
    d.line((ax0, ay0, ax0, ay1, ax1, ay1), fill=(40, 40, 40), width=lw)
    fs = max(5, min(round(page.body * 0.7), round(h * 0.07)))
    style = page.style("meta", fs)
    top = rng.choice((1, 10, 50, 100))
    for i in range(5):
        ty = ay1 - (ay1 - ay0) * i / 4
        d.line((ax0 - 3 * lw, ty, ax0, ty), fill=(40, 40, 40), width=lw)
        label = f"{top * i / 4:g}"
        lx = ax0 - 4 * lw - page.book.width(style.role, fs, label) - 2
        page.book.draw_line(page.image, (max(x + 1, lx), ty - fs * 0.6), [label], style)
    kind = rng.choice(("bar", "line", "scatter"))
    {"bar": _bars, "line": _lines, "scatter": _scatter}[kind](page, (ax0, ay0, ax1, ay1), lw)


def _bars(page: PageContext, axes: Box, lw: int) -> None:
    ax0, ay0, ax1, ay1 = axes
    n = page.rng.randint(3, 9)
    step = (ax1 - ax0) / n
    color = accent(page.rng)
    for i in range(n):
        top = ay1 - (ay1 - ay0) * page.rng.uniform(0.15, 0.95)
        page.draw.rectangle((ax0 + i * step + step * 0.2, top, ax0 + (i + 0.8) * step, ay1 - lw), fill=color)


def _lines(page: PageContext, axes: Box, lw: int) -> None:
    ax0, ay0, ax1, ay1 = axes
    n = page.rng.randint(6, 24)
    for s in range(page.rng.randint(1, 3)):
        v, pts = page.rng.uniform(0.2, 0.8), []
        for i in range(n):
            v = min(0.98, max(0.02, v + page.rng.uniform(-0.12, 0.12)))
            pts.append((ax0 + (ax1 - ax0) * i / (n - 1), ay1 - (ay1 - ay0) * v))
        page.draw.line(pts, fill=_ACCENTS[s], width=max(1, 2 * lw), joint="curve")


def _scatter(page: PageContext, axes: Box, lw: int) -> None:
    ax0, ay0, ax1, ay1 = axes
    r, slope, color = max(1, 2 * lw), page.rng.uniform(-0.8, 0.8), accent(page.rng)
    for _ in range(page.rng.randint(25, 70)):
        u = page.rng.random()
        v = min(0.98, max(0.02, 0.5 + slope * (u - 0.5) + page.rng.gauss(0, 0.12)))
        px, py = ax0 + (ax1 - ax0) * u, ay1 - (ay1 - ay0) * v
        page.draw.ellipse((px - r, py - r, px + r, py + r), fill=color)


# ------------------------------------------------------------------------------------- tables, equations


def table(page: PageContext, box: Box) -> None:
    """A grid of random numbers with a bold header row."""
    rng, (x, y, w, h) = page.rng, box
    row_h = max(6, round(line_height(page.body) * 1.3))
    n_rows = max(1, (h - 1) // row_h)
    n_cols = max(2, min(6, int(w / (page.body * 4.5))))
    weights = [1.7] + [1.0] * (n_cols - 1)
    edges = [x + round(w * sum(weights[:i]) / sum(weights)) for i in range(n_cols + 1)]
    edges[-1] = x + w - 1
    header = [rng.choice(("Method", "Model", "Setting"))] + rng.sample(_METRICS, n_cols - 1)
    decimals = rng.choice((1, 2, 3))
    size = min(page.body * 0.85, row_h / 1.35)
    for r in range(n_rows):
        cells = header if r == 0 else [rng.choice(_ROWS)] + [f"{rng.uniform(0, 100):.{decimals}f}"
                                                             for _ in range(n_cols - 1)]
        for c, text in enumerate(cells):
            cell = (edges[c] + 2, y + r * row_h + 1, max(1, edges[c + 1] - edges[c] - 4), row_h - 2)
            fit_text(page, cell, text, "heading" if r == 0 else "body", size, "center", "center")
    bottom = y + n_rows * row_h
    grid = (60, 60, 60)
    for r in range(n_rows + 1):
        page.draw.line((x, y + r * row_h, x + w - 1, y + r * row_h), fill=grid, width=2 if r in (0, 1) else 1)
    for ex in edges:
        page.draw.line((ex, y, ex, bottom), fill=grid, width=1)


def _equation_text(rng: random.Random) -> str:
    a, b = rng.sample("abcxyzkmnptuv", 2)
    k = [rng.randint(2, 9) for _ in range(3)]
    return rng.choice((
        "E = m c\u00b2", f"f({a}) = {k[0]}{a}\u00b2 + {k[1]}{a} \u2212 {k[2]}",
        "L = \u2212\u03a3\u1d62 y\u1d62 log p\u1d62", "\u2207 \u00b7 E = \u03c1 / \u03b5\u2080",
        f"{a}\u209c\u208a\u2081 = {a}\u209c \u2212 \u03b7 \u2207L({a}\u209c)",
        "p(y | x) = exp(s\u1d67) / \u03a3\u2096 exp(s\u2096)",
        "\u03c3\u00b2 = (1/N) \u03a3\u1d62 (x\u1d62 \u2212 \u03bc)\u00b2", f"{b} = \u222b {a}({k[0]}t) dt + C",
        f"\u2016{a} \u2212 {b}\u2016\u2082 \u2264 {k[0]}\u03b5",
    ))


def equation(page: PageContext, box: Box) -> None:
    """A centred equation with its number right-aligned, e.g. `E = m c² (3)`."""
    x, y, w, h = box
    number = f"({page.next('equation')})"
    size = min(page.body * 1.15, h / 1.3)
    num_w = round(page.book.width(page.style("body", size).role, max(5, round(size)), number)) + 2
    fit_text(page, (x + w - num_w, y, num_w, h), number, "body", size, "right", "center")
    fit_text(page, (x + num_w, y, max(1, w - 2 * num_w), h), _equation_text(page.rng), "serif_italic", size,
             "center", "center")


def column_rules(page: PageContext) -> None:
    """Newspaper rules: vertical lines in the gutters between text columns, horizontal lines above story headlines."""
    ink, lw = (70, 70, 70), max(1, page.body // 12)
    texts = [b.box for b in page.layout if b.kind == "text"]
    for ax, ay, aw, ah in texts:
        for cx, cy, cw, ch in texts:
            gap, top, bottom = cx - (ax + aw), max(ay, cy), min(ay + ah, cy + ch)
            if 0 < gap <= 3 * page.body and bottom > top:
                page.draw.line((ax + aw + gap // 2, top, ax + aw + gap // 2, bottom), fill=ink, width=lw)
    gap = max(2, round(line_height(page.body) * 0.6))
    for b in page.layout:
        if b.kind == "heading":
            x, y, w, _ = b.box
            page.draw.line((x, y - gap, x + w - 1, y - gap), fill=ink, width=lw)


# ------------------------------------------------------------------------------------------- handwriting


def _pen(rng: random.Random) -> tuple[int, int, int]:
    return rng.choice(((25, 45, 160), (170, 30, 30), (35, 35, 35)))


def wobbly_line(d: ImageDraw.ImageDraw, p0: tuple[float, float], p1: tuple[float, float], rng: random.Random,
                amp: float, width: int, pen: tuple[int, int, int]) -> None:
    """A hand-drawn stroke from p0 to p1: a polyline with a smoothed random sideways wander."""
    length = math.dist(p0, p1)
    n = max(2, int(length / max(3.0, amp * 5)))
    off, pts = 0.0, []
    for i in range(n + 1):
        t = i / n
        off = off * 0.6 + rng.uniform(-amp, amp)
        pts.append((p0[0] + (p1[0] - p0[0]) * t, p0[1] + (p1[1] - p0[1]) * t + off))
    d.line(pts, fill=pen, width=width, joint="curve")


def _circle(d: ImageDraw.ImageDraw, word: Box, rng: random.Random, width: int, pen) -> None:
    wx, wy, ww, wh = word
    cx, cy, rx, ry = wx + ww / 2, wy + wh / 2, ww / 2 * 1.2 + 3, wh / 2 * 1.05 + 2
    a0, n = rng.uniform(0, 2 * math.pi), 36
    pts = []
    for i in range(n + 1):
        a = a0 + 2 * math.pi * 1.12 * i / n
        s = 1 + rng.uniform(-0.05, 0.05)
        pts.append((cx + rx * s * math.cos(a), cy + ry * s * math.sin(a)))
    d.line(pts, fill=pen, width=width, joint="curve")


def scribble_note(page: PageContext, box: Box, rng: random.Random, pen=None) -> None:
    """A short note in a slanted font, each letter jittered, sheared like handwriting, with a wobbly underline."""
    x, y, w, h = box
    pen, text = pen or _pen(rng), rng.choice(_NOTES)
    size = max(5, round(h * 0.6))
    style = page.style("sans_italic", size)
    while size > 5 and page.book.width(style.role, size, text) * 1.15 > w * 0.9:
        size = max(5, int(size * 0.9))
    font = page.book.font(style.role, size)
    mask = Image.new("L", (w, h), 0)
    md = ImageDraw.Draw(mask)
    cx, base = w * 0.05, (h - size * 1.3) / 2
    for ch in text:
        md.text((cx, base + rng.uniform(-0.1, 0.1) * size), ch, fill=255, font=font)
        cx += font.getlength(ch) * rng.uniform(0.95, 1.15)
    shear = rng.uniform(0.1, 0.3)
    mask = mask.transform((w, h), Image.Transform.AFFINE, (1, shear, -shear * h / 2, 0, 1, 0),
                          resample=Image.Resampling.BILINEAR)
    page.image.paste(pen, (x, y), mask)
    stroke = max(1, size // 10)
    uy = min(y + h - stroke - 1, y + base + size * 1.25)
    wobbly_line(page.draw, (x + w * 0.04, uy), (x + min(w - 2, cx), uy), rng, max(0.6, size / 12), stroke, pen)


def annotate(page: PageContext, rng: random.Random) -> list[LayoutBox]:
    """Pen marks over a finished page: underlined lines, circled words and a note in the top or bottom margin.

    Returns the note's box (kind handwriting); underlines and circles sit on existing text boxes.
    """
    d, pen, width = page.draw, _pen(rng), max(1, round(page.body / 9))
    for _ in range(rng.randint(1, 3) if page.lines else 0):
        lx, ly, lw, lh = rng.choice(page.lines)
        wobbly_line(d, (lx, ly + lh - 1), (lx + lw, ly + lh - 1), rng, max(0.5, lh / 14), width, pen)
    for _ in range(rng.randint(1, 2) if page.words else 0):
        _circle(d, rng.choice(page.words), rng, width, pen)
    W, H = page.image.size
    m = page_margin(W, H)
    if m < 10:
        return []
    nh, nw = round(m * 0.75), round(W * rng.uniform(0.22, 0.4))
    nx = rng.randint(m // 2, max(m // 2, W - m // 2 - nw))
    ny = rng.choice((round(m * 0.12), H - round(m * 0.12) - nh))
    scribble_note(page, (nx, ny, nw, nh), rng, pen)
    return [LayoutBox("handwriting", (nx, ny, nw, nh))]
