"""Page layouts for the document generator: procedural newspaper / paper / magazine layouts and M6Doc COCO layouts.

A layout is a list of `LayoutBox`es (kind + x, y, w, h in page pixels). Procedural layouts never overlap and stay
inside the page margins; every size derives from the page width, so the same layout scales with the dpi.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from fakeclue_builder.config import ConfigError

KINDS = ("title", "author", "abstract", "heading", "text", "figure", "caption", "table", "equation", "pull_quote",
         "header", "footer", "page_number", "handwriting")

_BODY_SCALE = {"newspaper": 0.0135, "paper": 0.0145, "magazine": 0.0165, "m6doc": 0.0145}


@dataclass
class LayoutBox:
    kind: str
    box: tuple[int, int, int, int]  # x, y, w, h in page pixels


@dataclass
class CocoPage:
    """One COCO image: its id, original (width, height) and boxes in original pixels."""

    image_id: str
    size: tuple[int, int]
    boxes: list[LayoutBox]


def body_size(doc_type: str, width: int) -> int:
    """Body text size in pixels for a page of this width (about 8-10 pt on A4)."""
    return max(6, round(width * _BODY_SCALE.get(doc_type, 0.0145)))


def line_height(size: int) -> int:
    return max(size + 1, round(size * 1.25))


def page_margin(width: int, height: int) -> int:
    return max(4, round(min(width, height) * 0.07))


class _Builder:
    """Collects boxes; measures in body lines (`lh`) and gaps of the layout's type scale."""

    def __init__(self, doc_type: str, width: int, height: int, rng: random.Random):
        self.rng, self.width, self.height = rng, width, height
        self.lh = line_height(body_size(doc_type, width))
        self.gap = max(2, round(self.lh * 0.6))
        m = page_margin(width, height)
        self.x0, self.y0, self.x1, self.y1 = m, m, width - m, height - m
        self.limit = self.y1  # boxes end above this line (set to the body's bottom once the footer is placed)
        self.boxes: list[LayoutBox] = []

    def add(self, kind: str, x: float, y: float, w: float, h: float) -> int:
        """Adds a box (rounded to pixels, cut at `limit`, dropped under half a line); returns its bottom edge."""
        x, y, w, h = round(x), round(y), round(w), round(h)
        h = min(h, self.limit - y)
        if w >= 1 and h >= max(2, self.lh // 2):
            self.boxes.append(LayoutBox(kind, (x, y, w, h)))
        return y + h

    def header_footer(self, footer: bool) -> tuple[int, int]:
        """Header line at the top, footer + page number (or a centred page number) at the bottom; body y-range."""
        cw = self.x1 - self.x0
        top = self.add("header", self.x0, self.y0, cw, self.lh) + self.gap
        bottom = self.y1 - self.lh
        if footer:
            self.add("footer", self.x0, bottom, cw * 0.6, self.lh)
            self.add("page_number", self.x1 - cw * 0.15, bottom, cw * 0.15, self.lh)
        else:
            self.add("page_number", self.x0 + cw * 0.45, bottom, cw * 0.1, self.lh)
        self.limit = bottom - 2 * self.gap
        return top, self.limit

    def stack(self, x: float, w: float, y: float, bottom: float, items: list[tuple[str, float | None]]) -> None:
        """Stacks items top-down in a column; the one with height None takes what is left (at least one line)."""
        fixed = sum(h for _, h in items if h is not None) + self.gap * (len(items) - 1)
        rest = max(self.lh, bottom - y - fixed)
        for kind, h in items:
            y = self.add(kind, x, y, w, rest if h is None else h) + self.gap


def _split(total: int, parts: int, rng: random.Random, lo: float = 0.6, hi: float = 1.4) -> list[int]:
    weights = [rng.uniform(lo, hi) for _ in range(parts)]
    sizes = [int(total * w / sum(weights)) for w in weights]
    sizes[-1] += total - sum(sizes)
    return sizes


def _newspaper(b: _Builder) -> None:
    rng, cw = b.rng, b.x1 - b.x0
    top, bottom = b.header_footer(footer=True)
    y = b.add("title", b.x0, top, cw, b.height * 0.06) + 2 * b.gap
    ncols = rng.randint(3, 5)
    gutter = round(b.lh * 1.2)
    colw = (cw - (ncols - 1) * gutter) / ncols
    nrows = rng.randint(2, 3)
    heights = _split(bottom - y - (nrows - 1) * 2 * b.gap, nrows, rng)
    for r, rh in enumerate(heights):
        col = 0
        while col < ncols:
            span = min(ncols - col, rng.randint(2, 3) if r == 0 and col == 0 else rng.randint(1, 3))
            _story(b, b.x0 + col * (colw + gutter), y, span, colw, gutter, y + rh)
            col += span
        y += rh + 2 * b.gap


def _story(b: _Builder, x: float, y: float, span: int, colw: float, gutter: float, bottom: float) -> None:
    """One newspaper story: headline across its columns, maybe a photo + caption, then a text box per column."""
    gw = span * colw + (span - 1) * gutter
    y = b.add("heading", x, y, gw, min(bottom - y, b.lh * (3.2 if span > 1 else 2.4))) + b.gap
    fig_h = gw * b.rng.uniform(0.45, 0.7)
    cap_h = b.lh * 1.8
    if b.rng.random() < (0.75 if span > 1 else 0.25) and bottom - y - fig_h - cap_h - 2 * b.gap >= 4 * b.lh:
        y = b.add("figure", x, y, gw, fig_h) + b.gap // 2
        y = b.add("caption", x, y, gw, cap_h) + b.gap
    for c in range(span if bottom - y >= b.lh else 0):
        b.add("text", x + c * (colw + gutter), y, colw, bottom - y)


def _paper(b: _Builder) -> None:
    rng, cw, lh = b.rng, b.x1 - b.x0, b.lh
    top, bottom = b.header_footer(footer=False)
    y = b.add("title", b.x0 + cw * 0.05, top + b.gap, cw * 0.9, lh * rng.choice((2.6, 3.6))) + b.gap
    y = b.add("author", b.x0 + cw * 0.1, y, cw * 0.8, lh * 2) + 2 * b.gap
    y = b.add("abstract", b.x0 + cw * 0.08, y, cw * 0.84, lh * rng.randint(7, 11)) + 2 * b.gap
    if rng.random() < 0.35:
        y = b.add("figure", b.x0 + cw * 0.1, y, cw * 0.8, cw * rng.uniform(0.22, 0.32)) + b.gap // 2
        y = b.add("caption", b.x0, y, cw, lh * 1.8) + 2 * b.gap
    colgap = round(lh * 1.5)
    colw = (cw - colgap) / 2
    for c in range(2):
        _paper_column(b, b.x0 + c * (colw + colgap), colw, y, bottom, first=c == 0)


def _paper_column(b: _Builder, x: float, w: float, y: float, bottom: float, first: bool) -> None:
    rng, lh = b.rng, b.lh
    items: list[tuple[str, float]] = [("heading", lh * 1.5)] if first or rng.random() < 0.5 else []
    used = sum(h for _, h in items) + b.gap * len(items)
    room = bottom - y
    while True:
        choice = rng.choices(("text", "heading", "figure", "table", "equation"), (4, 2, 2, 1.5, 1.5))[0]
        block = {
            "text": [("text", lh * rng.randint(4, 12))],
            "heading": [("text", lh * rng.randint(3, 8)), ("heading", lh * 1.5)],
            "figure": [("figure", w * rng.uniform(0.5, 0.75)), ("caption", lh * 1.8)],
            "table": [("caption", lh * 1.8), ("table", round(lh * 1.3) * rng.randint(4, 7) + 2)],
            "equation": [("text", lh * rng.randint(2, 6)), ("equation", lh * 1.8)],
        }[choice]
        if block[0][0] != "text" and (not items or items[-1][0] != "text"):
            block = [("text", lh * 3)] + block
        need = sum(h for _, h in block) + b.gap * len(block)
        if used + need + b.gap + 3 * lh > room:
            break
        items += block
        used += need
    b.stack(x, w, y, bottom, items + [("text", None)])


def _magazine(b: _Builder) -> None:
    rng, cw, lh = b.rng, b.x1 - b.x0, b.lh
    top, bottom = b.header_footer(footer=True)
    title_h, fig_h = b.height * rng.uniform(0.07, 0.1), b.height * rng.uniform(0.28, 0.4)
    variant = rng.choice(("title_first", "photo_first", "side_photo"))
    y = top
    if variant == "photo_first":
        y = b.add("figure", b.x0, y, cw, fig_h) + b.gap // 2
        y = b.add("caption", b.x0, y, cw, lh * 1.4) + b.gap
    y = b.add("title", b.x0, y, cw, title_h) + b.gap
    if variant == "title_first":
        y = b.add("figure", b.x0, y, cw, fig_h) + b.gap // 2
        y = b.add("caption", b.x0, y, cw, lh * 1.4) + b.gap
    y = b.add("author", b.x0, y, cw * 0.5, lh) + b.gap
    colgap = round(lh * 1.6)
    colw = (cw - colgap) / 2
    quote_col = 1 if variant == "side_photo" else rng.randint(0, 1)
    room = bottom - y
    for c in range(2):
        items: list[tuple[str, float | None]] = [("text", None)]
        if variant == "side_photo" and c == 0:
            items = [("figure", room * rng.uniform(0.4, 0.55)), ("caption", lh * 1.4), ("text", None)]
        if c == quote_col:
            quote = ("pull_quote", min(lh * rng.uniform(5, 7), room * 0.3))
            lead = ("text", min(lh * rng.randint(4, 10), room * 0.3))
            items = [lead, quote, ("text", None)] if rng.random() < 0.6 else [("text", None), quote]
        b.stack(b.x0 + c * (colw + colgap), colw, y, bottom, items)


_LAYOUTS = {"newspaper": _newspaper, "paper": _paper, "magazine": _magazine}


def procedural_layout(doc_type: str, width: int, height: int, rng: random.Random) -> list[LayoutBox]:
    """A non-overlapping layout of `doc_type` (newspaper | paper | magazine) inside the page margins."""
    if doc_type not in _LAYOUTS:
        raise ValueError(f"unknown doc_type {doc_type!r}; expected one of {sorted(_LAYOUTS)}")
    builder = _Builder(doc_type, width, height, rng)
    _LAYOUTS[doc_type](builder)
    return _clip(builder.boxes, builder.x0, builder.y0, builder.x1, builder.y1)


def _clip(boxes: list[LayoutBox], x0: int, y0: int, x1: int, y1: int) -> list[LayoutBox]:
    """Safety net for extreme page shapes: boxes cut to the content area; boxes left under two pixels dropped."""
    out = []
    for b in boxes:
        x, y, w, h = b.box
        cx0, cy0, cx1, cy1 = max(x, x0), max(y, y0), min(x + w, x1), min(y + h, y1)
        if cx1 - cx0 >= 2 and cy1 - cy0 >= 2:
            out.append(LayoutBox(b.kind, (cx0, cy0, cx1 - cx0, cy1 - cy0)))
    return out


# ------------------------------------------------------------------------------------------- COCO layouts

_EXACT = {"title": "title", "headline": "title", "book name": "title", "masthead": "title",
          "page number": "page_number",
          "folio": "page_number", "page-number": "page_number", "page_number": "page_number"}
_KEYWORDS = (  # first match wins, so specific names come before the generic ones
    (("page number", "page-number", "folio"), "page_number"),
    (("caption", "credit"), "caption"),
    (("header",), "header"), (("footer",), "footer"),
    (("table",), "table"),
    (("figure", "photo", "image", "picture", "mugshot", "advertisement", "qr code", "barcode", "chart", "flag",
      "logo", "graphic"), "figure"),
    (("formula", "equation"), "equation"),
    (("handwrit",), "handwriting"),
    (("pull quote", "pull-quote", "quote"), "pull_quote"),
    (("author", "editor", "institute", "byline"), "author"),
    (("abstract", "lead"), "abstract"),
    (("title", "subhead", "kicker", "heading", "section"), "heading"),
)


def kind_for_category(name: str) -> str:
    """Maps an M6Doc / COCO category name to a layout kind; unknown names are body text."""
    key = name.strip().lower().replace("_", " ")
    if key in _EXACT:
        return _EXACT[key]
    for words, kind in _KEYWORDS:
        if any(w in key for w in words):
            return kind
    return "text"


def _coco_error(path: Path, what: str) -> ConfigError:
    return ConfigError(f"documents.layouts {path}: {what}; point documents.layouts at an M6Doc-style COCO json "
                       "(images with id/width/height, annotations with image_id/bbox [x, y, w, h]/category_id, "
                       "categories with id/name) or remove the key to use procedural layouts")


def _read_coco(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise _coco_error(path, f"cannot be read ({type(e).__name__}: {e})") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _coco_error(path, f"is not valid JSON ({e})") from e
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                       "categories")):
        raise _coco_error(path, "needs top-level lists 'images', 'annotations' and 'categories'")
    return data


def load_coco_pages(path: Path) -> list[CocoPage]:
    """The annotated images of a COCO json in file order (images without annotations are left out)."""
    data = _read_coco(path)
    try:
        kinds = {c["id"]: kind_for_category(str(c["name"])) for c in data["categories"]}
        pages = {img["id"]: CocoPage(str(img["id"]), (int(img["width"]), int(img["height"])), [])
                 for img in data["images"]}
        for ann in data["annotations"]:
            x, y, w, h = (float(v) for v in ann["bbox"])
            page = pages[ann["image_id"]]
            if w > 0 and h > 0:
                page.boxes.append(LayoutBox(kinds[ann["category_id"]], (round(x), round(y), round(w), round(h))))
    except (KeyError, TypeError, ValueError) as e:
        raise _coco_error(path, f"malformed entry ({type(e).__name__}: {e})") from e
    result = [p for p in pages.values() if p.boxes and p.size[0] > 0 and p.size[1] > 0]
    if not result:
        raise _coco_error(path, "has no image with a positive size and at least one annotation")
    return result


def load_coco_layouts(path: Path) -> list[tuple[tuple[int, int], list[LayoutBox]]]:
    """Per annotated COCO image: (original width, height) and its boxes with kinds mapped from category names."""
    return [(p.size, p.boxes) for p in load_coco_pages(path)]


def scale_layout(boxes: list[LayoutBox], size: tuple[int, int], width: int, height: int) -> list[LayoutBox]:
    """Boxes from an image of `size` scaled onto a width x height page, clipped to the page."""
    sx, sy = width / size[0], height / size[1]
    out = []
    for b in boxes:
        x, y, w, h = b.box
        x0, y0 = max(0, round(x * sx)), max(0, round(y * sy))
        x1, y1 = min(width, round((x + w) * sx)), min(height, round((y + h) * sy))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            out.append(LayoutBox(b.kind, (x0, y0, x1 - x0, y1 - y0)))
    return out
