"""report: DIR/report/index.html from a real small run (collect with drops, aggregate, export), self-contained,
escaped, counts equal to the stats, shortcut warnings, partial runs, and the page as headless Chromium renders it."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import typer
from PIL import Image, ImageStat
from typer.testing import CliRunner

from fakeclue_builder import cli_report
from fakeclue_builder.config import ExportConfig
from fakeclue_builder.consensus import VERDICT
from fakeclue_builder.export import run as export_run
from fakeclue_builder.records import REAL
from fakeclue_builder.report import (build_report, estimate_jpeg_quality, jpeg_quality_of, shortcuts,
                                     threshold_balanced_accuracy, total_variation)
from fakeclue_builder.store import StageRunner, shard_rows
from tests.test_export import N_BAD, make_aggregate_stage

HEADINGS = ["Counts", "Sources and generators", "Image properties", "Captions", "Annotators", "Dropped rows",
            "Gallery"]
XSS = "<script>alert(1)</script>"
GALLERY = 5
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def _write_collect(run_dir: Path, rows) -> Counter:
    """A collect stage over copies of the rows that drops every 7th (reasons alternate, one detail has markup)."""
    reasons = Counter()

    def fn(it):
        for i, row in enumerate(it):
            if i % 7 == 0:
                reason = ("corrupt", "duplicate_exact")[i // 7 % 2]
                reasons[reason] += 1
                row.drop(reason, f"cannot identify image <b>{i}</b>")
            yield row

    copies = [dataclasses.replace(r, caption=None, annotations=[], caption_claims=[]) for r in rows]
    StageRunner(run_dir, "collect", "test").run(shard_rows(copies, 32), fn)
    return reasons


def _plant_xss(run_dir: Path, rows) -> None:
    """The gallery's first real animal (smallest image_id) gets a caption with markup; aggregate is rewritten."""
    good = rows[:-N_BAD]
    target = min((r for r in good if r.cate == "animal" and r.label == REAL), key=lambda r: r.image_id)
    target.caption = f"{VERDICT[REAL]} Texture looks fine {XSS} & \"quoted\"."
    StageRunner(run_dir, "aggregate", "test", force=True).run(shard_rows(rows, 64), lambda it: iter(list(it)))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("report_run")
    rows = make_aggregate_stage(run_dir, n=120)
    reasons = _write_collect(run_dir, rows)
    _plant_xss(run_dir, rows)
    export_run(ExportConfig(test_size=20, shard_size_mb=0.002), run_dir)
    path = build_report(run_dir, gallery_per_category=GALLERY)
    return run_dir, rows, reasons, path, path.read_text(encoding="utf-8")


def _stats(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "_stats.json").read_text())


def _expected_cards(run_dir: Path) -> int:
    per_cate = Counter()
    for key, counts in _stats(run_dir, "export")["extra"]["per_stratum"].items():
        per_cate[key.split("/")[0]] += sum(counts.values())
    return sum(min(GALLERY, n) for n in per_cate.values())


def _img_sources(page: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)


def test_report_is_written_with_every_section(full_run):
    run_dir, _, _, path, page = full_run
    assert path == run_dir / "report" / "index.html"
    assert re.findall(r"<h2>(.*?)</h2>", page)[1:] == HEADINGS  # after "Pipeline stages"
    for heading in HEADINGS:
        assert re.search(rf'<a href="#\w+">{re.escape(heading)}</a>', page)  # table of contents
    assert "<script" not in page.replace("&lt;script", "") and "<link" not in page  # no scripts, no external CSS


def test_counts_equal_the_stats(full_run):
    run_dir, _, _, _, page = full_run
    counts = {k: int(v.replace(",", "")) for k, v in re.findall(r'data-count="([^"]+)">([\d,]+)<', page)}
    export = _stats(run_dir, "export")
    for stratum, sides in export["extra"]["per_stratum"].items():
        for side in ("train", "test"):
            assert counts[f"{stratum}/{side}"] == sides.get(side, 0)
        assert counts[f"{stratum}/total"] == sum(sides.values())
    assert counts["all/train"] == export["extra"]["splits"]["train"]
    assert counts["all/test"] == export["extra"]["splits"]["test"]
    assert counts["all/total"] == export["kept"]
    for stage in ("collect", "aggregate", "export"):
        stats = _stats(run_dir, stage)
        row = re.search(rf'<tr data-stage="{stage}">(.*?)</tr>', page).group(1)
        for key in ("in", "kept", "dropped"):
            assert f'data-{key}="{stats[key]}"' in row


def test_dropped_rows_by_stage_and_reason_with_examples(full_run):
    run_dir, _, reasons, _, page = full_run
    section = page[page.index('<section id="dropped">'):page.index('<section id="gallery">')]
    for reason, n in reasons.items():
        assert f"<h4>{reason}: {n:,} rows</h4>" in section
    assert "cannot identify image &lt;b&gt;" in section and "<b>" not in section
    assert f"{N_BAD} rows of aggregate are not in the export" in section
    for reason in _stats(run_dir, "export")["dropped_by_reason"]:
        assert f"<h4>{reason}:" in section  # export's own drops (missing blob, bad cate, ...)


def test_gallery_has_the_expected_cards_and_self_contained_images(full_run):
    run_dir, _, _, _, page = full_run
    assert page.count('<figure class="card ') == _expected_cards(run_dir)
    sources = _img_sources(page)
    assert sources and all(s.startswith("data:image/") for s in sources)  # nothing outside the file
    for src in sources:
        header, payload = src.split(",", 1)
        assert header.endswith(";base64")
        with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as im:
            im.load()  # decodes: no broken image


def test_captions_and_paths_are_escaped(full_run):
    _, _, _, _, page = full_run
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;" in page


def test_shortcut_warning_when_real_is_jpeg_and_fake_is_png(full_run):
    _, _, _, _, page = full_run
    assert 'data-shortcut="format"' in page and "Shortcut warning: format" in page
    assert 'data-shortcut="pixels"' not in page  # every fixture image is 16x12


def test_shortcut_rules():
    same = Counter({"JPEG": 50, "PNG": 50})
    assert total_variation(same, same) == 0 and total_variation(Counter(JPEG=10), Counter(PNG=10)) == 1
    assert threshold_balanced_accuracy(Counter({75: 10, 90: 10}), Counter({75: 10, 90: 10})) == 0.5
    assert threshold_balanced_accuracy(Counter({95: 20}), Counter({70: 20})) == 1.0
    result = {s.feature: s for s in shortcuts({"format": {1: same, 0: same},
                                               "JPEG quality": {1: Counter({95: 20}), 0: Counter({70: 20})},
                                               "pixels": {1: Counter({100: 2}), 0: Counter({400: 2})}})}
    assert not result["format"].warn and result["JPEG quality"].warn
    assert not result["pixels"].warn and not result["pixels"].enough  # 2 images per label are too few


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 90, 95, 100])
def test_jpeg_quality_estimate(tmp_path, quality):
    import random

    rng = random.Random(quality)
    im = Image.new("RGB", (64, 48))
    im.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(64 * 48)])
    path = tmp_path / "x.jpg"
    im.save(path, "JPEG", quality=quality)
    assert abs(jpeg_quality_of(path) - quality) <= 5
    with Image.open(path) as opened:
        assert abs(estimate_jpeg_quality(opened.quantization) - quality) <= 5
    im.save(tmp_path / "x.png")
    assert jpeg_quality_of(tmp_path / "x.png") is None and estimate_jpeg_quality(None) is None


def test_partial_run_without_export_renders(tmp_path):
    rows = make_aggregate_stage(tmp_path, n=30, seed=3)
    page = build_report(tmp_path, gallery_per_category=3).read_text(encoding="utf-8")
    assert re.findall(r"<h2>(.*?)</h2>", page)[1:] == HEADINGS
    assert "No export yet" in page and 'data-count="all/train"' not in page
    counts = dict(re.findall(r'data-count="([^"]+)">([\d,]+)<', page))
    assert int(counts["all/total"]) == len(rows)  # no export: every aggregate row counts
    for stage in ("collect", "export"):
        assert re.search(rf'<tr data-stage="{stage}"><td>{stage}</td><td>not run</td>', page)
    empty = tmp_path / "empty"
    empty.mkdir()
    page = build_report(empty).read_text(encoding="utf-8")  # nothing ran yet: every stage "not run", no crash
    assert re.findall(r"<h2>(.*?)</h2>", page)[1:] == HEADINGS
    assert len(re.findall(r'data-stage="\w+"><td>\w+</td><td>not run<', page)) == 7


def _cli_app() -> typer.Typer:
    app = typer.Typer()
    cli_report.register(app)
    app.callback()(lambda: None)  # keep `report` a subcommand
    return app


def test_cli_writes_the_report_and_fails_clearly_without_a_run(full_run, tmp_path):
    run_dir = full_run[0]
    result = CliRunner().invoke(_cli_app(), ["report", "--run-dir", str(run_dir), "--out", str(tmp_path / "r"),
                                             "--gallery", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(str(tmp_path / "r" / "index.html"))
    assert (tmp_path / "r" / "index.html").is_file()
    result = CliRunner().invoke(_cli_app(), ["report", "--run-dir", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "fakeclue-builder collect" in result.output


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI"):  # CI installs it (.ci/run): a skip there would hide a broken report
        pytest.fail("chromium is not installed; .ci/run should have installed it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium; CI installs it in .ci/run)")


def _run_chromium(binary: str, profile: Path, *args: str) -> str:
    result = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_chromium_renders_the_page(full_run, tmp_path):
    binary = _chromium()
    run_dir, _, _, path, _ = full_run
    url = path.resolve().as_uri()
    dom = _run_chromium(binary, tmp_path / "profile", "--dump-dom", url)
    assert re.findall(r"<h2>(.*?)</h2>", dom)[1:] == HEADINGS
    assert dom.count('<figure class="card ') == _expected_cards(run_dir)
    sources = _img_sources(dom)
    assert sources and all(s.startswith("data:image/") for s in sources)
    shot = tmp_path / "shot.png"
    _run_chromium(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", url)
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        assert rgb.size == (1280, 2000)
        assert len(rgb.getcolors(maxcolors=1 << 20) or range(1 << 20)) > 50  # text, tables, plots: not blank
        assert max(ImageStat.Stat(rgb).stddev) > 20
