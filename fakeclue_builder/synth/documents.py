"""Fake document pages, layout first, then content (the FakeClue authors' recipe for synthetic documents).

`DocumentRenderer(spec).render(index, seed, figures)` picks a layout (procedural newspaper / paper / magazine, or an
M6Doc COCO page scaled to the configured page size), then fills every box: corpus text set with real font metrics,
headlines, captions, tables of random numbers, equations, real photos cropped into figure boxes (or charts drawn with
PIL when no photo is given) and, with `handwriting`, pen annotations. Same (index, seed, figures) -> same pixels.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fakeclue_builder.config import DocumentsGenerator
from fakeclue_builder.synth import documents_draw as draw
from fakeclue_builder.synth.documents_layout import (
    LayoutBox, body_size, line_height, load_coco_layouts, load_coco_pages, procedural_layout, scale_layout,
)
from fakeclue_builder.synth.documents_text import (
    DEFAULT_CORPUS, Corpus, FontBook, PageContext, fit_text, resolve_fonts, set_text,
)

__all__ = ["DEFAULT_CORPUS", "DocumentRenderer", "LayoutBox", "RenderedPage", "load_coco_layouts",
           "procedural_layout"]

_PAPER = {"newspaper": (243, 240, 231), "paper": (255, 255, 255), "magazine": (252, 251, 248), "m6doc": (250, 249, 246)}
_SECTIONS = ("Introduction", "Related Work", "Background", "Method", "Data Collection", "Experiments", "Results",
             "Analysis", "Discussion", "Limitations", "Conclusion")


@dataclass
class RenderedPage:
    image: Image.Image  # RGB page
    doc_type: str  # newspaper | paper | magazine | m6doc
    layout: list[LayoutBox]
    params: dict[str, str]


# ------------------------------------------------------------------------------------------ box renderers


def _text(page: PageContext, b: LayoutBox) -> None:
    set_text(page, b.box, page.corpus.tokens(page.rng), page.style("body", page.body), justify=True)


def _title(page: PageContext, b: LayoutBox) -> None:
    rng, h = page.rng, b.box[3]
    if page.doc_type == "newspaper":
        fit_text(page, b.box, draw.identity(page)["name"], "title", h, align="center", valign="center")
    elif page.doc_type == "paper":
        fit_text(page, b.box, page.corpus.headline(rng, 6, 14), "title", page.body * 1.9, "center", "center")
    else:
        ink = draw.accent(rng) if page.doc_type == "magazine" else (20, 20, 20)
        fit_text(page, b.box, page.corpus.headline(rng, 2, 7), "title", h, "left", "center", ink)


def _heading(page: PageContext, b: LayoutBox) -> None:
    if page.doc_type == "paper":
        text = f"{page.next('section')} {page.rng.choice(_SECTIONS)}"
        fit_text(page, b.box, text, "heading", page.body * 1.25, valign="center")
    else:
        fit_text(page, b.box, page.corpus.headline(page.rng, 3, 10), "heading", min(b.box[3] / 1.25, page.body * 2.4))


def _author(page: PageContext, b: LayoutBox) -> None:
    rng, (x, y, w, h) = page.rng, b.box
    names = [draw.person(rng) for _ in range(rng.randint(1, 4 if page.doc_type == "paper" else 1))]
    if page.doc_type == "paper":
        half = (x, y, w, h // 2)
        fit_text(page, half, ", ".join(names), "author", page.body * 1.1, "center", "center")
        fit_text(page, (x, y + h // 2, w, h - h // 2), draw.affiliation(rng), "meta", page.body, "center", "center")
    else:
        fit_text(page, b.box, "By " + names[0], "author", page.body, valign="center")


def _abstract(page: PageContext, b: LayoutBox) -> None:
    x, y, w, h = b.box
    size = page.body * 0.95
    head = min(h, line_height(round(size)))
    fit_text(page, (x, y, w, head), "Abstract", "heading", size, align="center")
    if h - head >= 1:
        tokens = (t for t in page.corpus.tokens(page.rng) if t is not None)  # one paragraph
        set_text(page, (x, y + head, w, h - head), tokens, page.style("body", size), indent=False)


def _caption(page: PageContext, b: LayoutBox) -> None:
    i = next(k for k, other in enumerate(page.layout) if other is b)
    before = page.layout[i - 1].kind if i > 0 else ""
    after = page.layout[i + 1].kind if i + 1 < len(page.layout) else ""
    text = page.corpus.sentence(page.rng, 24)
    if page.doc_type == "paper":
        label = "Table" if after == "table" and before != "figure" else "Figure"
        text = f"{label} {page.next(label)}: {text}"
    tokens = iter(text.split())
    set_text(page, b.box, tokens, page.style("caption", page.body * 0.88), justify=False, indent=False)


def _pull_quote(page: PageContext, b: LayoutBox) -> None:
    x, y, w, h = b.box
    ink = draw.accent(page.rng) if page.doc_type == "magazine" else (40, 40, 40)
    rule = max(1, page.body // 8)
    page.draw.rectangle((x, y, x + w - 1, y + rule - 1), fill=ink)
    page.draw.rectangle((x, y + h - rule, x + w - 1, y + h - 1), fill=ink)
    inner = (x, y + 2 * rule, w, max(1, h - 4 * rule))
    fit_text(page, inner, f"\u201c{page.corpus.phrase(page.rng, 8, 18)}\u201d", "quote", page.body * 1.7,
             "center", "center", ink)


def _header(page: PageContext, b: LayoutBox, rule_at_top: bool = False) -> None:
    x, y, w, h = b.box
    size = min(page.body * 0.85, h / 1.3)
    left, right = draw.running_head(page)
    fit_text(page, (x, y, w // 2, h), left, "meta", size)
    fit_text(page, (x + w // 2, y, w - w // 2, h), right, "meta", size, align="right")
    ry = y if rule_at_top else y + h - 1
    page.draw.line((x, ry, x + w - 1, ry), fill=(60, 60, 60), width=1)


def _footer(page: PageContext, b: LayoutBox) -> None:
    x, y, w, h = b.box
    page.draw.line((x, y, x + w - 1, y), fill=(60, 60, 60), width=1)
    fit_text(page, (x, y + 2, w, max(1, h - 2)), draw.running_foot(page), "meta",
             min(page.body * 0.8, h / 1.3))


def _page_number(page: PageContext, b: LayoutBox) -> None:
    align = "center" if page.doc_type == "paper" else "right"
    fit_text(page, b.box, draw.identity(page)["page"], "meta", page.body * 0.9, align, "center")


def _figure(page: PageContext, b: LayoutBox) -> None:
    if page.figures:
        draw.paste_photo(page.image, b.box, page.figures, page.rng)
    else:
        draw.chart(page, b.box)


def _handwriting(page: PageContext, b: LayoutBox) -> None:
    draw.scribble_note(page, b.box, page.rng)


_RENDERERS: dict[str, Callable[[PageContext, LayoutBox], None]] = {
    "title": _title, "author": _author, "abstract": _abstract, "heading": _heading, "text": _text, "figure": _figure,
    "caption": _caption, "table": lambda p, b: draw.table(p, b.box), "equation": lambda p, b: draw.equation(p, b.box),
    "pull_quote": _pull_quote, "header": _header, "footer": _footer, "page_number": _page_number,
    "handwriting": _handwriting,
}


class DocumentRenderer:
    """Renders fake document pages for one `documents` generator spec (corpus, fonts and layouts loaded once)."""

    def __init__(self, spec: DocumentsGenerator):
        self.spec = spec
        mm_w, mm_h = spec.page_size_mm
        self.width, self.height = round(mm_w / 25.4 * spec.dpi), round(mm_h / 25.4 * spec.dpi)
        self.corpus_dir = Path(spec.corpus) if spec.corpus else DEFAULT_CORPUS
        self.corpus = Corpus.load(self.corpus_dir)
        self.book = FontBook(resolve_fonts(spec.fonts))
        self.coco = load_coco_pages(spec.layouts) if spec.layouts else None

    def _layout(self, index: int, rng: random.Random) -> tuple[str, list[LayoutBox], str]:
        if self.coco:
            src = self.coco[index % len(self.coco)]
            boxes = scale_layout(src.boxes, src.size, self.width, self.height)
            return "m6doc", boxes, f"{Path(self.spec.layouts).name}#{src.image_id}"
        doc_type = self.spec.doc_types[index % len(self.spec.doc_types)]
        return doc_type, procedural_layout(doc_type, self.width, self.height, rng), "procedural"

    def render(self, index: int, seed: int, figures: list[Image.Image]) -> RenderedPage:
        """Page `index` of the run; the layout and content are drawn from (seed, index) alone."""
        rng = random.Random(f"documents/{seed}/{index}")
        doc_type, layout, source = self._layout(index, rng)
        tint = rng.randint(-3, 0)
        background = tuple(max(0, c + tint) for c in _PAPER[doc_type])
        image = Image.new("RGB", (self.width, self.height), background)
        page = PageContext(image, rng, doc_type, body_size(doc_type, self.width), self.book, self.corpus,
                           list(figures), layout)
        for b in layout:
            _RENDERERS[b.kind](page, b)
        if doc_type == "newspaper":
            draw.column_rules(page)
        if self.spec.handwriting:
            layout = layout + draw.annotate(page, random.Random(f"handwriting/{seed}/{index}"))
        fonts = sorted({self.book.files[r].name if self.book.files.get(r) else "pillow-default" for r in page.roles})
        params = {
            "doc_type": doc_type, "width": str(self.width), "height": str(self.height), "dpi": str(self.spec.dpi),
            "page_size_mm": "x".join(f"{v:g}" for v in self.spec.page_size_mm), "fonts": ",".join(fonts),
            "corpus": str(self.corpus_dir), "corpus_files": ",".join(self.corpus.files), "layout_source": source,
            "n_boxes": str(len(layout)), "figures": "photo" if figures else "procedural",
            "handwriting": str(self.spec.handwriting).lower(), "seed": str(seed), "page_index": str(index),
        }
        return RenderedPage(image, doc_type, layout, params)
