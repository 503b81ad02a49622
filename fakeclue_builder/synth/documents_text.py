"""Fonts, corpus and fast text setting for the document generator.

`FontBook` resolves font roles (serif, sans_bold, ...) to TrueType files once and caches fonts per size, word widths
and rendered word masks, so a page is set by pasting cached word bitmaps (greedy wrap on cached widths, justified or
left-aligned). `Corpus` holds the body text as paragraphs of words.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from fakeclue_builder.config import ConfigError
from fakeclue_builder.synth.documents_layout import LayoutBox, line_height

log = logging.getLogger(__name__)

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus"
SYSTEM_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
ROLE_FILES = {
    "serif": "DejaVuSerif.ttf", "serif_bold": "DejaVuSerif-Bold.ttf", "serif_italic": "DejaVuSerif-Italic.ttf",
    "sans": "DejaVuSans.ttf", "sans_bold": "DejaVuSans-Bold.ttf", "sans_italic": "DejaVuSans-Oblique.ttf",
    "mono": "DejaVuSansMono.ttf",
}
ROLES = {  # font role per text role and doc type
    "newspaper": {"body": "serif", "title": "serif_bold", "heading": "serif_bold", "caption": "sans_italic",
                  "meta": "sans", "quote": "serif_italic", "author": "sans_bold"},
    "paper": {"body": "serif", "title": "serif_bold", "heading": "serif_bold", "caption": "serif",
              "meta": "serif_italic", "quote": "serif_italic", "author": "serif"},
    "magazine": {"body": "sans", "title": "sans_bold", "heading": "sans_bold", "caption": "sans_italic",
                 "meta": "sans", "quote": "serif_italic", "author": "sans_bold"},
    "m6doc": {"body": "serif", "title": "sans_bold", "heading": "sans_bold", "caption": "sans_italic",
              "meta": "sans", "quote": "serif_italic", "author": "sans"},
}
_CACHE_LIMIT = 200_000  # cached word masks / widths before a cache is dropped (bounded memory over long runs)
_VOWELS = set("aeiouy")
_TITLE_SMALL = {"a", "an", "the", "and", "or", "but", "nor", "of", "to", "in", "on", "at", "by", "for", "from", "with",
                "as", "into", "over"}
_SMALL_WORDS = {"a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "by", "for", "from", "with", "as",
                "is", "are", "was", "were", "be", "that", "which", "who", "it", "its", "their", "this", "than", "so",
                "into", "about", "over", "after", "before", "when", "if", "not", "no", "has", "have", "had", "more",
                "since", "until", "while", "because", "then", "where", "there", "also", "very", "just", "each",
                "every", "some", "many", "much", "most", "could", "would", "should", "will", "can", "may", "might",
                "now", "we", "they", "he", "she", "our", "his", "her", "what", "how", "up", "out", "down"}


def _dejavu_dirs() -> list[Path]:
    dirs = []
    try:
        import matplotlib  # optional: it ships the DejaVu fonts

        dirs.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except ImportError:
        pass
    return dirs + [SYSTEM_DEJAVU]


def _role_score(role: str, name: str) -> int:
    name = name.lower()
    family = "mono" if "mono" in name else "serif" if "serif" in name else "sans"
    bold, italic = "bold" in name, "italic" in name or "oblique" in name
    want_family = role.split("_")[0]
    return (4 * (family == want_family) + 2 * (bold == role.endswith("_bold"))
            + 2 * (italic == role.endswith("_italic")))


def resolve_fonts(fonts: list[Path] | None) -> dict[str, Path | None]:
    """Role -> font file. Given fonts: each role takes the best match by file name (family, bold, italic/oblique).

    Default: the DejaVu fonts of matplotlib or of the system (fonts-dejavu); None where neither has the file, which
    means Pillow's built-in font.
    """
    if fonts:
        if missing := [str(p) for p in fonts if not Path(p).is_file()]:
            raise ConfigError(f"documents.fonts: font file(s) {', '.join(missing)} do not exist; list existing "
                              ".ttf/.otf files or remove documents.fonts to use the DejaVu fonts")
        for p in fonts:
            try:
                ImageFont.truetype(str(p), 12)
            except OSError as e:
                raise ConfigError(f"documents.fonts: {p} is not a TrueType/OpenType font ({e}); list .ttf/.otf "
                                  "files or remove documents.fonts to use the DejaVu fonts") from e
        return {role: Path(max(fonts, key=lambda p: _role_score(role, Path(p).name))) for role in ROLE_FILES}
    found: dict[str, Path | None] = {}
    for role, file in ROLE_FILES.items():
        found[role] = next((d / file for d in _dejavu_dirs() if (d / file).is_file()), None)
    if None in found.values():
        log.warning("DejaVu fonts not found (install matplotlib or fonts-dejavu); using Pillow's built-in font for %s",
                    ", ".join(r for r, p in found.items() if p is None))
    return found


def _cached(cache: dict, key, make):
    """`cache[key]`, made on a miss; the cache is emptied when it outgrows _CACHE_LIMIT (bounded memory)."""
    value = cache.get(key)
    if value is None:
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        value = cache[key] = make()
    return value


@dataclass
class WordMask:
    mask: Image.Image | None  # L-mode coverage of the word; None for blank words
    dx: int
    dy: int


@dataclass
class FontBook:
    """Fonts per (role, size), word widths and word masks, all cached for the renderer's lifetime."""

    files: dict[str, Path | None]
    _fonts: dict = field(default_factory=dict)
    _widths: dict = field(default_factory=dict)
    _masks: dict = field(default_factory=dict)

    def font(self, role: str, size: int) -> ImageFont.FreeTypeFont:
        key = (role, size)
        if key not in self._fonts:
            path = self.files.get(role)
            if path is None:
                self._fonts[key] = ImageFont.load_default(size=size)
            else:
                self._fonts[key] = ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)
        return self._fonts[key]

    def width(self, role: str, size: int, word: str) -> float:
        return _cached(self._widths, (role, size, word), lambda: self.font(role, size).getlength(word))

    def mask(self, role: str, size: int, word: str) -> WordMask:
        return _cached(self._masks, (role, size, word), lambda: self._render_mask(role, size, word))

    def _render_mask(self, role: str, size: int, word: str) -> WordMask:
        font = self.font(role, size)
        x0, y0, x1, y1 = font.getbbox(word)
        if x1 <= x0 or y1 <= y0:
            return WordMask(None, 0, 0)
        img = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(img).text((-x0, -y0), word, fill=255, font=font)
        return WordMask(img, x0, y0)

    def draw_line(self, page: Image.Image, xy: tuple[float, float], words: list[str], style: TextStyle,
                  extra: float = 0.0) -> list[tuple[int, int, int]]:
        """Pastes words from xy (top-left), adding `extra` px to each space; returns (x, y, w) per word."""
        x, y = xy
        space = self.width(style.role, style.size, " ") + extra
        placed = []
        for word in words:
            m = self.mask(style.role, style.size, word)
            if m.mask is not None:
                px, py = round(x) + m.dx, round(y) + m.dy
                page.paste(style.ink, (px, py, px + m.mask.width, py + m.mask.height), m.mask)
            w = self.width(style.role, style.size, word)
            placed.append((round(x), round(y), round(w)))
            x += w + space
        return placed


@dataclass(frozen=True)
class TextStyle:
    role: str
    size: int
    ink: tuple[int, int, int] = (20, 20, 20)


@dataclass
class Line:
    words: list[str]
    width: float
    last: bool  # ends a paragraph (never justified)


def wrap(book: FontBook, style: TextStyle, tokens: Iterator[str | None], width: float, max_lines: int,
         indent: float = 0.0, hyphenate: bool = False) -> list[Line]:
    """Greedy wrap of a token stream (None = paragraph break) into at most max_lines lines of `width` px.

    With `hyphenate`, a word that would leave a loose line is split (after a vowel, before a consonant) with a hyphen.
    """
    space = book.width(style.role, style.size, " ")
    lines: list[Line] = []
    words: list[str] = []
    used = indent
    for tok in tokens:
        if len(lines) >= max_lines:
            break
        if tok is None:
            if words:
                lines.append(Line(words, used, True))
                words, used = [], indent
            continue
        w = book.width(style.role, style.size, tok)
        if words and used + space + w > width:
            head = _hyphen_head(book, style, tok, width - used - space) if hyphenate and width - used > 2.5 * space \
                else None
            if head:
                words.append(head + "-")
                used += space + book.width(style.role, style.size, head + "-")
                tok = tok[len(head):]
                w = book.width(style.role, style.size, tok)
            lines.append(Line(words, used, False))
            words, used = [], 0.0
            if len(lines) >= max_lines:
                break
        if w > width - used:  # a word wider than the box: cut it
            tok = _cut(book, style, tok, width - used)
            w = book.width(style.role, style.size, tok)
        used += (space if words else 0.0) + w
        words.append(tok)
    if words and len(lines) < max_lines:
        lines.append(Line(words, used, True))
    return lines


def _hyphen_head(book: FontBook, style: TextStyle, word: str, room: float) -> str | None:
    """The longest head of `word` (>= 3 letters, leaving >= 3) that fits `room` with its hyphen, or None."""
    for vowel_first in (True, False):  # after a vowel before a consonant (va-lue), else between consonants (rol-ling)
        for i in range(len(word) - 3, 2, -1):
            head, a, b = word[:i], word[i - 1].lower(), word[i].lower()
            if (head.isalpha() and b.isalpha() and b not in _VOWELS and sum(c.isalpha() for c in word[i:]) >= 3
                    and (a in _VOWELS) == vowel_first
                    and book.width(style.role, style.size, head + "-") <= room):
                return head
    return None


def _cut(book: FontBook, style: TextStyle, word: str, width: float) -> str:
    while len(word) > 1 and book.width(style.role, style.size, word) > width:
        word = word[:-1]
    return word


@dataclass
class Corpus:
    """Body text: paragraphs of words from the .txt files of a folder (first line of each file: its title)."""

    files: list[str]
    paragraphs: list[list[str]]
    titles: list[str]

    @classmethod
    def load(cls, folder: Path) -> Corpus:
        folder = Path(folder)
        hint = "point documents.corpus at a folder of UTF-8 .txt files (paragraphs separated by blank lines) or " \
               "remove the key to use the built-in corpus"
        if not folder.is_dir():
            raise ConfigError(f"documents.corpus {folder} is not a folder; {hint}")
        files, paragraphs, titles = [], [], []
        for path in sorted(folder.glob("*.txt")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"documents.corpus: cannot read {path} ({e}); {hint}") from e
            blocks = [" ".join(b.split()) for b in text.split("\n\n") if b.strip()]
            if not blocks:
                continue
            files.append(path.name)
            titles.append(blocks[0])
            paragraphs += [b.split() for b in (blocks[1:] or blocks)]
        if not paragraphs:
            raise ConfigError(f"documents.corpus {folder} has no non-empty .txt file; {hint}")
        return cls(files, paragraphs, titles)

    def tokens(self, rng: random.Random) -> Iterator[str | None]:
        """Words from a random paragraph on, cycling through the corpus; None between paragraphs."""
        start = rng.randrange(len(self.paragraphs))
        n = len(self.paragraphs)
        for i in range(start, start + 10 * n):
            yield from self.paragraphs[i % n]
            yield None

    def phrase(self, rng: random.Random, lo: int, hi: int) -> str:
        """lo..hi words from the start of a random sentence, without trailing punctuation."""
        para = self.paragraphs[rng.randrange(len(self.paragraphs))]
        starts = [0] + [i + 1 for i, w in enumerate(para[:-1]) if w[-1] in ".!?"]
        s = rng.choice(starts)
        words = para[s:s + rng.randint(lo, hi)]
        for i, w in enumerate(words):
            if w[-1] in ".!?;:":
                words = words[:i + 1]
                break
        while len(words) > 1 and words[-1].lower().strip(",;:") in _SMALL_WORDS:
            words = words[:-1]
        return " ".join(words).strip(".,;:!?\"'()")

    def headline(self, rng: random.Random, lo: int, hi: int) -> str:
        """A phrase in title case (small words lower-case except the first)."""
        words = self.phrase(rng, lo, hi).split()
        return " ".join(w if i and w.lower() in _TITLE_SMALL else w[:1].upper() + w[1:] for i, w in enumerate(words))

    def sentence(self, rng: random.Random, max_words: int = 30) -> str:
        text = self.phrase(rng, 6, max_words)
        return text + "."


@dataclass
class PageContext:
    """Everything one page's box renderers share: canvas, seeded rng, type scale, counters, placed lines."""

    image: Image.Image
    rng: random.Random
    doc_type: str
    body: int
    book: FontBook
    corpus: Corpus
    figures: list[Image.Image]
    layout: list[LayoutBox]
    roles: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)
    lines: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, y, w, h of set body lines
    words: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, y, w, h of some set words
    memo: dict[str, dict[str, str]] = field(default_factory=dict)  # per-page constants (publication name, date)

    @property
    def draw(self) -> ImageDraw.ImageDraw:
        return ImageDraw.Draw(self.image)

    def style(self, role: str, size: float, ink: tuple[int, int, int] = (20, 20, 20)) -> TextStyle:
        font_role = ROLES[self.doc_type].get(role, role)
        self.roles.add(font_role)
        return TextStyle(font_role, max(5, round(size)), ink)

    def next(self, counter: str) -> int:
        self.counters[counter] = self.counters.get(counter, 0) + 1
        return self.counters[counter]


def set_text(page: PageContext, box: tuple[int, int, int, int], tokens, style: TextStyle, justify: bool = True,
             indent: bool = True, align: str = "left", max_lines: int | None = None) -> int:
    """Sets a token stream into the box line by line (smaller type if not one line fits); returns the height set."""
    x, y, w, h = box
    size = style.size if h >= line_height(style.size) else max(5, int(h / 1.25))
    style = TextStyle(style.role, size, style.ink)
    lh = line_height(size)
    n = max(1, h // lh) if max_lines is None else min(max_lines, max(1, h // lh))
    ind = size * 1.5 if indent else 0.0
    lines = wrap(page.book, style, tokens, w, n, ind, hyphenate=justify)
    starts_para = True
    for i, line in enumerate(lines):
        lead = ind if starts_para else 0.0  # line.width includes the paragraph indent
        gaps, extra, lx = len(line.words) - 1, 0.0, x + lead
        if justify and not line.last and gaps > 0 and (w - line.width) / gaps < 1.6 * size:
            extra = (w - line.width) / gaps
        elif align == "center":
            lx = x + (w - line.width) / 2
        elif align == "right":
            lx = x + w - line.width
        placed = page.book.draw_line(page.image, (lx, y + i * lh), line.words, style, extra)
        page.lines.append((round(lx), y + i * lh, round(line.width - lead + extra * gaps), lh))
        if placed and len(page.words) < 400:
            wx, wy, ww = placed[page.rng.randrange(len(placed))]
            page.words.append((wx, wy, ww, lh))
        starts_para = line.last
    return len(lines) * lh


def fit_text(page: PageContext, box: tuple[int, int, int, int], text: str, role: str, max_size: float,
             align: str = "left", valign: str = "top", ink=(20, 20, 20)) -> None:
    """Sets `text` at the largest size <= max_size whose wrapped lines fit the box (never below 5 px)."""
    x, y, w, h = box
    size = max(5, int(min(max_size, h / 1.2)))
    while True:
        style = page.style(role, size, ink)
        lines = wrap(page.book, style, iter(text.split()), w, 1000)
        if size <= 5 or (len(lines) * line_height(size) <= h and all(ln.width <= w for ln in lines)):
            break
        size = max(5, int(size * 0.9))
    lines = lines[:max(1, h // line_height(size))]
    top = y + (h - len(lines) * line_height(size)) // 2 if valign == "center" else y
    for i, line in enumerate(lines):
        lx = {"left": x, "center": x + (w - line.width) / 2, "right": x + w - line.width}[align]
        page.book.draw_line(page.image, (lx, top + i * line_height(size)), line.words, style)
