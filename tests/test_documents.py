"""Fake document pages: layouts, content in every box, determinism, photos in figures, COCO layouts, handwriting,
config errors. Pages render at 72 dpi (595 x 842 A4) to keep the file fast."""

from __future__ import annotations

import io
import json
import random
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakeclue_builder.config import ConfigError, DocumentsGenerator
from fakeclue_builder.synth.documents import (
    DEFAULT_CORPUS, DocumentRenderer, LayoutBox, load_coco_layouts, procedural_layout,
)
from fakeclue_builder.synth.documents_layout import kind_for_category, page_margin
from fakeclue_builder.synth.documents_text import resolve_fonts

TYPES = ["newspaper", "paper", "magazine"]


def spec(**kwargs) -> DocumentsGenerator:
    kwargs.setdefault("dpi", 72)
    return DocumentsGenerator(kind="documents", **kwargs)


@pytest.fixture(scope="module")
def renderer() -> DocumentRenderer:
    return DocumentRenderer(spec())


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def assert_boxes_filled(image: Image.Image, boxes: list[LayoutBox], background: tuple[int, int, int]) -> None:
    arr = np.asarray(image)
    for b in boxes:
        x, y, w, h = b.box
        assert 0 <= x and 0 <= y and x + w <= image.width and y + h <= image.height, b
        region = arr[y:y + h, x:x + w]
        assert (region != np.array(background, dtype=np.uint8)).any(axis=-1).any(), f"{b} is blank"


def test_page_size_follows_mm_and_dpi(renderer):
    assert (DocumentRenderer(spec(dpi=150)).width, DocumentRenderer(spec(dpi=150)).height) == (1240, 1754)
    letter = DocumentRenderer(spec(page_size_mm=(215.9, 279.4), dpi=100))
    assert (letter.width, letter.height) == (850, 1100)
    assert (renderer.width, renderer.height) == (595, 842)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_each_doc_type_renders_with_every_box_filled(renderer, index):
    page = renderer.render(index, seed=7, figures=[])
    assert page.doc_type == TYPES[index] and page.image.mode == "RGB" and page.image.size == (595, 842)
    kinds = {b.kind for b in page.layout}
    assert {"text", "figure"} <= kinds and ({"page_number", "footer"} & kinds)
    assert {"newspaper": {"title", "heading"}, "paper": {"title", "author", "abstract", "heading"},
            "magazine": {"title", "pull_quote", "caption"}}[page.doc_type] <= kinds
    background = page.image.getpixel((0, 0))
    assert_boxes_filled(page.image, page.layout, background)
    m = page_margin(*page.image.size)
    for b in page.layout:
        x, y, w, h = b.box
        assert m <= x and m <= y and x + w <= 595 - m and y + h <= 842 - m, b
    assert page.params["doc_type"] == TYPES[index] and page.params["layout_source"] == "procedural"
    assert page.params["n_boxes"] == str(len(page.layout)) and page.params["dpi"] == "72"
    assert page.params["fonts"] and all(f.endswith((".ttf", "default")) for f in page.params["fonts"].split(","))


def test_paper_has_table_or_equation_over_seeds(renderer):
    kinds = set()
    for seed in range(6):
        kinds |= {b.kind for b in renderer.render(1, seed, []).layout}
    assert {"table", "equation", "caption"} <= kinds


@pytest.mark.parametrize("doc_type", TYPES)
@pytest.mark.parametrize("size", [(595, 842), (1240, 1754), (1100, 850)])
def test_procedural_layouts_never_overlap_and_stay_in_margins(doc_type, size):
    width, height = size
    m = page_margin(width, height)
    for seed in range(25):
        boxes = procedural_layout(doc_type, width, height, random.Random(seed))
        assert len(boxes) >= 6
        for b in boxes:
            x, y, w, h = b.box
            assert w >= 1 and h >= 1 and m <= x and m <= y and x + w <= width - m and y + h <= height - m, b
        for a, b in combinations(boxes, 2):
            assert overlap(a.box, b.box) == 0, (seed, a, b)


def test_same_seed_same_bytes_other_seed_other_page(renderer):
    for index in range(3):
        a, b = renderer.render(index, 3, []), renderer.render(index, 3, [])
        assert png(a.image) == png(b.image) and a.layout == b.layout and a.params == b.params
        assert png(renderer.render(index, 4, []).image) != png(a.image)
    assert png(renderer.render(0, 3, []).image) != png(renderer.render(3, 3, []).image)  # index matters too
    fresh = DocumentRenderer(spec())  # cold caches give the same pixels
    assert png(fresh.render(1, 3, []).image) == png(renderer.render(1, 3, []).image)


def test_figures_are_crops_of_the_supplied_photos(renderer):
    red = Image.new("RGB", (64, 48), (255, 0, 0))
    for index in (0, 2, 5):  # newspaper, magazine, magazine
        for seed in range(3):
            page = renderer.render(index, seed, [red])
            figures = [b for b in page.layout if b.kind == "figure"]
            arr = np.asarray(page.image)
            for b in figures:
                x, y, w, h = b.box
                assert (arr[y:y + h, x:x + w] == (255, 0, 0)).all(), b
            assert page.params["figures"] == "photo"
    page = renderer.render(2, 0, [])  # no photo: a chart, not red
    x, y, w, h = next(b.box for b in page.layout if b.kind == "figure")
    region = np.asarray(page.image)[y:y + h, x:x + w].reshape(-1, 3)
    assert not (region == (255, 0, 0)).all(axis=1).all() and len(np.unique(region, axis=0)) > 2


def write_coco(path: Path) -> Path:
    path.write_text(json.dumps({
        "images": [{"id": 11, "file_name": "a.jpg", "width": 1000, "height": 1400},
                   {"id": 12, "file_name": "b.jpg", "width": 500, "height": 500}],
        "categories": [{"id": 1, "name": "title"}, {"id": 2, "name": "paragraph"}, {"id": 3, "name": "figure"},
                       {"id": 4, "name": "page number"}, {"id": 5, "name": "first-level title"},
                       {"id": 6, "name": "weather forecast"}, {"id": 7, "name": "table caption"}],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 1, "bbox": [100, 100, 800, 120]},
            {"id": 2, "image_id": 11, "category_id": 2, "bbox": [100, 300, 380, 900]},
            {"id": 3, "image_id": 11, "category_id": 3, "bbox": [520, 300, 380, 400]},
            {"id": 4, "image_id": 11, "category_id": 4, "bbox": [480, 1300, 40, 30]},
            {"id": 5, "image_id": 12, "category_id": 5, "bbox": [50, 40, 400, 40]},
            {"id": 6, "image_id": 12, "category_id": 6, "bbox": [50, 100, 400, 300]},
            {"id": 7, "image_id": 12, "category_id": 7, "bbox": [50, 420, 400, 30]},
        ],
    }))
    return path


def test_coco_layouts_load_and_drive_the_page(tmp_path):
    path = write_coco(tmp_path / "m6doc.json")
    layouts = load_coco_layouts(path)
    assert [size for size, _ in layouts] == [(1000, 1400), (500, 500)]
    assert [b.kind for b in layouts[0][1]] == ["title", "text", "figure", "page_number"]
    assert [b.kind for b in layouts[1][1]] == ["heading", "text", "caption"]
    r = DocumentRenderer(spec(layouts=path))
    first, second = r.render(0, 1, []), r.render(1, 1, [])
    assert first.doc_type == second.doc_type == "m6doc" and first.image.size == (595, 842)
    assert first.layout[0] == LayoutBox("title", (60, 60, 476, 72))  # 100*0.595, 100*0.601, 800*0.595, 120*0.601
    assert second.layout[1] == LayoutBox("text", (60, 168, 476, 506))  # y 100..400 of 500 -> 168..674 of 842
    assert first.params["layout_source"] == "m6doc.json#11" and second.params["layout_source"] == "m6doc.json#12"
    assert r.render(2, 1, []).params["layout_source"] == "m6doc.json#11"  # layouts used in turn
    for page in (first, second):
        assert_boxes_filled(page.image, page.layout, page.image.getpixel((0, 0)))


def test_m6doc_category_names_map_to_kinds():
    assert {n: kind_for_category(n) for n in ("headline", "sub section title", "photo", "formula", "table",
                                              "table caption", "footer", "header", "author", "folio",
                                              "ordered list", "QR code", "Page-number")} == {
        "headline": "title", "sub section title": "heading", "photo": "figure", "formula": "equation",
        "table": "table", "table caption": "caption", "footer": "footer", "header": "header", "author": "author",
        "folio": "page_number", "ordered list": "text", "QR code": "figure", "Page-number": "page_number"}


def test_handwriting_adds_pen_marks_to_the_clean_page():
    clean_r, hand_r = DocumentRenderer(spec()), DocumentRenderer(spec(handwriting=True))
    for index in range(3):
        clean, hand = clean_r.render(index, 5, []), hand_r.render(index, 5, [])
        assert hand.layout[:-1] == clean.layout and hand.layout[-1].kind == "handwriting"
        x, y, w, h = hand.layout[-1].box
        assert all(overlap(hand.layout[-1].box, b.box) == 0 for b in clean.layout)
        a, b = np.asarray(clean.image), np.asarray(hand.image)
        background = np.array(clean.image.getpixel((0, 0)), dtype=np.uint8)
        assert (a[y:y + h, x:x + w] == background).all()  # the note sits on blank paper ...
        assert (b[y:y + h, x:x + w] != background).any(axis=-1).sum() > 20  # ... and adds ink there
        inside = np.zeros(a.shape[:2], bool)
        for lb in clean.layout:
            bx, by, bw, bh = lb.box
            inside[by:by + bh, bx:bx + bw] = True
        changed = (a != b).any(axis=-1)
        assert changed[inside].sum() > 20  # underlines / circles on the text itself
        assert hand.params["handwriting"] == "true"


def test_config_errors_name_the_key(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.txt").write_text("\n\n  \n")
    for corpus in (tmp_path / "empty", tmp_path / "blank", tmp_path / "missing"):
        with pytest.raises(ConfigError, match="documents.corpus"):
            DocumentRenderer(spec(corpus=corpus))
    with pytest.raises(ConfigError, match=r"documents.fonts.*nope\.ttf"):
        DocumentRenderer(spec(fonts=[tmp_path / "nope.ttf"]))
    (tmp_path / "bad.ttf").write_bytes(b"not a font")
    with pytest.raises(ConfigError, match="documents.fonts"):
        DocumentRenderer(spec(fonts=[tmp_path / "bad.ttf"]))
    bad = {"broken.json": "{not json", "shape.json": json.dumps([1, 2]),
           "keys.json": json.dumps({"images": [{"id": 1, "width": 10, "height": 10}], "categories": [],
                                    "annotations": [{"image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]}]}),
           "bbox.json": json.dumps({"images": [{"id": 1, "width": 10, "height": 10}],
                                    "categories": [{"id": 1, "name": "text"}],
                                    "annotations": [{"image_id": 1, "category_id": 1, "bbox": "x"}]}),
           "empty.json": json.dumps({"images": [], "categories": [], "annotations": []})}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match="documents.layouts"):
            DocumentRenderer(spec(layouts=tmp_path / name))
    with pytest.raises(ConfigError, match="documents.layouts"):
        DocumentRenderer(spec(layouts=tmp_path / "absent.json"))


def test_custom_corpus_and_single_font(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "only.txt").write_text("Title line\n\n" + "zebra quartz " * 200)
    default = resolve_fonts(None)["sans"]
    if default is None:
        pytest.skip("no DejaVu font on this machine")
    r = DocumentRenderer(spec(corpus=tmp_path / "corpus", fonts=[default], doc_types=["magazine"]))
    page = r.render(0, 0, [])
    assert page.params["fonts"] == default.name and page.params["corpus_files"] == "only.txt"
    assert_boxes_filled(page.image, page.layout, page.image.getpixel((0, 0)))


def test_builtin_corpus_is_original_prose_of_the_right_size():
    files = sorted(DEFAULT_CORPUS.glob("*.txt"))
    words = sum(len(p.read_text().split()) for p in files)
    assert 4 <= len(files) <= 6 and 1500 <= words <= 3000


def test_without_dejavu_pillow_builtin_font_is_used(monkeypatch, tmp_path):
    from fakeclue_builder.synth import documents_text

    monkeypatch.setattr(documents_text, "_dejavu_dirs", lambda: [tmp_path])
    r = DocumentRenderer(spec(doc_types=["paper"]))
    page = r.render(0, 0, [])
    assert page.params["fonts"] == "pillow-default"
    assert_boxes_filled(page.image, page.layout, page.image.getpixel((0, 0)))
