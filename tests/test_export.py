"""Export & push: Hub-loadable Parquet with the original bytes, leak-free split, FakeClue json, card, resume,
failures as data, and `push` (dry run = the folder; no network = one clean message, no token anywhere)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from fakeclue_builder.config import ExportConfig
from fakeclue_builder.consensus import VERDICT
from fakeclue_builder.export import run as export_run
from fakeclue_builder.hub import HUB_IGNORE, hub_files
from fakeclue_builder.prompts import QUESTION
from fakeclue_builder.records import CATEGORIES, FAKE, REAL, Row
from fakeclue_builder.split import leakage
from fakeclue_builder.store import StageDir, StageRunner, shard_rows

STRATA = [("deepfake", FAKE), ("deepfake", REAL), ("animal", FAKE), ("animal", REAL), ("object", FAKE),
          ("scene", REAL), ("doc", FAKE), ("satellite", REAL)]
N_BAD = 4  # rows the export must drop (see _bad_rows)


def _image_bytes(rng: random.Random, fmt: str) -> bytes:
    img = Image.new("RGB", (16, 12), tuple(rng.randrange(256) for _ in range(3)))
    img.putpixel((rng.randrange(16), rng.randrange(12)), (rng.randrange(256), 0, 0))
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": rng.randrange(60, 95)} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _row(run_dir: Path, rng: random.Random, cate: str, label: int, phash: int, group_id=None) -> Row:
    fmt = "JPEG" if label == REAL else "PNG"
    data = _image_bytes(rng, fmt)
    image_id = hashlib.sha256(data).hexdigest()
    ext = "jpg" if fmt == "JPEG" else "png"
    blob = f"blobs/{image_id[:2]}/{image_id}.{ext}"
    (run_dir / blob).parent.mkdir(parents=True, exist_ok=True)
    (run_dir / blob).write_bytes(data)
    word = "real" if label == REAL else "fake"
    return Row(source="ffpp" if cate == "deepfake" else "genimage", source_path=f"/data/{image_id}.{ext}",
               label=label, image_id=image_id, cate=cate, group_id=group_id, format=fmt, width=16, height=12,
               n_bytes=len(data), phash=f"{phash:016x}", blob=blob, generator=None if label == REAL else "ADM",
               prompt_id=f"{word}_{cate}", prompt_sha256="0" * 64, aggregate_mode="consensus",
               caption=f"{VERDICT[label]} Texture: the {cate} surface looks {word}; lighting is consistent.",
               annotations=[{"annotator": a, "model": f"m/{a}", "revision": "r1", "text": "x", "ok": True}
                            for a in ("qwen2_vl", "internvl")])


def _bad_rows(run_dir: Path, rng: random.Random) -> list[Row]:
    missing = _row(run_dir, rng, "animal", REAL, rng.getrandbits(64))
    (run_dir / missing.blob).unlink()
    wrong_cate = _row(run_dir, rng, "animal", FAKE, rng.getrandbits(64))
    wrong_cate.cate = "vehicle"
    mismatch = _row(run_dir, rng, "object", FAKE, rng.getrandbits(64))
    mismatch.caption = "This is a real image. Looks fine."
    truncated = _row(run_dir, rng, "scene", REAL, rng.getrandbits(64))
    (run_dir / truncated.blob).write_bytes((run_dir / truncated.blob).read_bytes()[:-5])
    return [missing, wrong_cate, mismatch, truncated]


def make_aggregate_stage(run_dir: Path, n: int = 400, seed: int = 0) -> list[Row]:
    """An aggregate stage with FF++-style frame groups, planted near duplicates and N_BAD bad rows."""
    rng = random.Random(seed)
    rows: list[Row] = []
    while len(rows) < n:
        cate, label = rng.choice(STRATA)
        kind = rng.random()
        if cate == "deepfake" and kind < 0.3:  # a video: 4 frames sharing group_id
            video = f"ffpp:{len(rows):03d}"
            rows += [_row(run_dir, rng, cate, label, rng.getrandbits(64), video) for _ in range(4)]
        elif kind < 0.15:  # near duplicates: pHashes 1 bit apart, no shared group_id
            h = rng.getrandbits(64)
            rows += [_row(run_dir, rng, cate, label, h), _row(run_dir, rng, cate, label, h ^ 1)]
        else:
            rows.append(_row(run_dir, rng, cate, label, rng.getrandbits(64)))
    rows += _bad_rows(run_dir, rng)
    runner = StageRunner(run_dir, "aggregate", "test")
    runner.run(shard_rows(rows, 64), lambda it: iter(list(it)))
    return rows


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    rows = make_aggregate_stage(run_dir)
    cfg = ExportConfig(test_size=100, shard_size_mb=0.004, fakeclue_layout=True, row_group_size=16)
    summary = export_run(cfg, run_dir)
    return run_dir, rows, cfg, summary


def _load_table(run_dir: Path, split: str):
    return pq.read_table(sorted((run_dir / "export" / "data").glob(f"{split}-*.parquet")))


def test_loads_with_datasets_both_ways_and_bytes_are_the_blobs(exported, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    run_dir, rows, _, _ = exported
    by_id = {r.image_id: r for r in rows}
    stats = json.loads((run_dir / "export" / "_stats.json").read_text())
    for ds in (datasets.load_dataset("parquet", data_dir=str(run_dir / "export" / "data")),
               datasets.load_dataset(str(run_dir / "export"))):
        assert {s: ds[s].num_rows for s in ds} == stats["extra"]["splits"]
        features = ds["train"].features
        assert isinstance(features["image"], datasets.Image)
        assert isinstance(features["label"], datasets.ClassLabel) and features["label"].names == ["fake", "real"]
        assert features["answer"] == datasets.Value("string") and features["cate"] == datasets.Value("string")
    raw = ds["test"].cast_column("image", datasets.Image(decode=False))
    for record in raw:
        row = by_id[record["image_id"]]
        assert record["image"]["bytes"] == (run_dir / row.blob).read_bytes()  # original bytes, not re-encoded
        assert record["label"] == row.label and record["question"] == QUESTION
    for image in ds["test"]["image"]:
        image.load()  # every image decodes
    assert stats["kept"] + stats["dropped"] == stats["in"] == len(rows)
    assert sum(stats["extra"]["splits"].values()) == stats["kept"] == len(rows) - N_BAD


def test_split_has_no_leakage_and_the_requested_test_size(exported):
    run_dir, rows, cfg, _ = exported
    split = {}
    for side in ("train", "test"):
        for image_id in _load_table(run_dir, side).column("image_id").to_pylist():
            split[image_id] = side
    kept = [r for r in rows if r.image_id in split]
    report = leakage(kept, split, cfg.phash_threshold)
    assert report.groups_across == 0 and report.phash_pairs_across == 0
    groups = Counter(r.group_id for r in kept if r.group_id)
    assert groups and max(groups.values()) == 4  # the fixture really has multi-frame groups ...
    assert sum(1 for r in kept for o in kept if r is not o and r.phash[:15] == o.phash[:15]) > 0  # ... and near dups
    n_test = sum(1 for s in split.values() if s == "test")
    assert abs(n_test - cfg.test_size) <= 0.01 * cfg.test_size


def test_shards_are_named_for_the_hub_and_sized(exported):
    run_dir, _, _, summary = exported
    names = sorted(p.name for p in (run_dir / "export" / "data").glob("*.parquet"))
    assert len(names) == summary.shards_total > 2
    for name in names:
        split, index, total = re.fullmatch(r"(train|test)-(\d{5})-of-(\d{5})\.parquet", name).groups()
        assert int(index) < int(total) == sum(1 for n in names if n.startswith(split))
    meta = pq.read_schema(run_dir / "export" / "data" / names[0]).metadata
    assert b"huggingface" in meta and b"ClassLabel" in meta[b"huggingface"]


def test_fakeclue_json_is_the_released_format(exported):
    run_dir, rows, _, _ = exported
    export = run_dir / "export"
    total = 0
    for split in ("train", "test"):
        records = json.loads((export / "data_json" / f"{split}.json").read_text())
        total += len(records)
        for rec in records:
            assert {"image", "label", "cate", "conversations"} <= set(rec)
            assert rec["label"] in (0, 1) and rec["cate"] in CATEGORIES
            human, gpt = rec["conversations"]
            assert human == {"from": "human", "value": f"<image>{QUESTION}"} and gpt["from"] == "gpt"
            first = gpt["value"].split(".")[0].lower()
            assert ("real" in first) == (rec["label"] == 1) and ("fake" in first) == (rec["label"] == 0)
            assert (export / split / rec["image"]).is_file()
            assert rec["image"].split("/")[1] == ("real" if rec["label"] == 1 else "fake")
    assert total == len(rows) - N_BAD


def test_bad_rows_are_dropped_with_reasons(exported):
    run_dir, _, _, summary = exported
    dropped = pq.read_table(run_dir / "export" / "dropped.parquet").to_pylist()
    reasons = Counter(r["reason"] for r in dropped)
    assert reasons == {"blob_missing": 1, "cate_unknown": 1, "caption_verdict_mismatch": 1, "blob_size_mismatch": 1}
    assert summary.dropped == N_BAD and summary.rows_in == summary.kept + summary.dropped


def test_card_header_configs_and_counts(exported):
    run_dir, _, _, _ = exported
    text = (run_dir / "export" / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"},
                                                 {"split": "test", "path": "data/test-*"}]
    stats = json.loads((run_dir / "export" / "_stats.json").read_text())
    assert {s["name"]: s["num_examples"] for s in front["dataset_info"]["splits"]} == stats["extra"]["splits"]
    assert front["size_categories"] == ["n<1K"] and front["license"] == "other"
    for heading in ("## Counts", "## Sources and generators", "## Known biases", "## How it was built",
                    "## Columns", "## Licences", "## Citation"):
        assert heading in text
    assert "Shortcut warning" in text  # the fixture's real images are JPEG, its fakes PNG
    assert "FaceForensics" in text and "@misc{wen2025spotfake" in text  # upstream licences and citations


def test_rerun_is_a_no_op_and_a_lost_shard_is_rebuilt_identically(exported):
    run_dir, _, cfg, _ = exported
    data = run_dir / "export" / "data"
    before = {p.name: p.read_bytes() for p in data.glob("*.parquet")}
    assert export_run(cfg, run_dir).shards_run == 0
    victim = sorted(before)[1]
    (data / victim).unlink()
    again = export_run(cfg, run_dir)
    assert again.shards_run == 1 and again.shards_skipped == len(before) - 1
    assert {p.name: p.read_bytes() for p in data.glob("*.parquet")} == before


def test_another_split_replaces_the_old_files(tmp_path):
    make_aggregate_stage(tmp_path, n=60, seed=1)
    export_run(ExportConfig(test_size=10, shard_size_mb=0.002), tmp_path)
    export_run(ExportConfig(test_size=10, shard_size_mb=1), tmp_path)  # fewer, bigger shards
    names = sorted(p.name for p in (tmp_path / "export" / "data").glob("*.parquet"))
    assert names == ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]
    assert sorted(p.name for p in (tmp_path / "export" / "_done").iterdir()) == ["part-00000", "part-00001"]


def test_push_dry_run_lists_the_folder(exported):
    run_dir, _, _, _ = exported
    out = subprocess.run([sys.executable, "-m", "fakeclue_builder.cli", "push", "--run-dir", str(run_dir),
                          "--repo-id", "lab/fakeclue", "--dry-run"], capture_output=True, text=True, check=True)
    listed = {line.split()[-1] for line in out.stdout.splitlines() if re.match(r"\s*[\d,]+\s+\S", line)}
    export = run_dir / "export"
    on_disk = {p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file()}
    bookkeeping = {p for p in on_disk if p.startswith("_") or p == "dropped.parquet"}
    assert listed == on_disk - bookkeeping == {f.path for f in hub_files(export)}
    assert "README.md" in listed and any(p.startswith("data/") for p in listed)
    assert HUB_IGNORE  # the same patterns go to upload_folder


def test_push_without_network_fails_cleanly_and_leaks_no_token(exported):
    run_dir, _, _, _ = exported
    token = "hf_FAKEtoken0123456789SECRET"
    env = {**os.environ, "HF_TOKEN": token, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    out = subprocess.run([sys.executable, "-m", "fakeclue_builder.cli", "push", "--run-dir", str(run_dir),
                          "--repo-id", "lab/fakeclue", "-v"], capture_output=True, text=True, env=env, timeout=300)
    both = out.stdout + out.stderr
    assert out.returncode == 1
    assert "cannot reach the Hugging Face Hub" in both and "Traceback" not in both
    assert token not in both
    assert not any(token in p.read_text(errors="ignore") for p in (run_dir / "export").rglob("*.json"))


def test_export_before_aggregate_is_a_clear_error(tmp_path):
    from fakeclue_builder.config import ConfigError

    with pytest.raises(ConfigError, match="run 'fakeclue-builder aggregate"):
        export_run(ExportConfig(), tmp_path)


def test_features_written_by_hand_are_what_datasets_reads():
    import datasets

    from fakeclue_builder.features import arrow_schema, yaml_features

    expected = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=["fake", "real"]),
        **{name: datasets.Value("string") for name in ("cate", "question", "answer", "image_id", "source",
                                                       "generator", "source_path", "group_id", "format")},
        **{name: datasets.Value("int64") for name in ("width", "height", "n_bytes")},
        **{name: datasets.List(datasets.Value("string"))
           for name in ("annotators", "annotator_models", "annotator_revisions")},
        **{name: datasets.Value("string") for name in ("prompt_id", "prompt_sha256", "aggregate_mode")},
    })
    assert datasets.Features.from_arrow_schema(arrow_schema()) == expected
    assert datasets.Features._from_yaml_list(yaml_features()) == expected
    assert arrow_schema().names == list(expected)


def test_records_table_equals_pyarrows_list_conversion():
    """The JSON-reader path builds exactly what pa.Table.from_pydict would: nulls, unicode, quotes, lists, ints."""
    import pyarrow as pa

    from fakeclue_builder.export_writer import records_table
    from fakeclue_builder.features import arrow_schema

    schema = arrow_schema().remove(0)
    records = [{name: None for name in schema.names} for _ in range(3)]
    records[0].update(label=0, cate="animal", answer='This is a fake image. "Quoted", émoji 🐱, tab\there\nnewline',
                      width=2**40, annotators=["a", "b"], annotator_models=[], generator="sd\\v1.4")
    records[1].update(label=1, cate="human", answer="", annotators=[""])
    got = records_table(records, schema)
    want = pa.Table.from_pydict({name: [r[name] for r in records] for name in schema.names}, schema=schema)
    assert got.schema.equals(schema) and got.equals(want)
    assert got.column("answer")[0].as_py() == records[0]["answer"] and got.column("width")[0].as_py() == 2**40
    with pytest.raises(pa.ArrowInvalid):
        records_table([{**records[1], "not_a_column": 1}], schema)


def test_a_blob_changed_after_planning_aborts_cleanly_and_a_rerun_drops_it(tmp_path):
    """A blob truncated between the plan and the write pass: a clear error, no marker and no temp file for its
    shard; the rerun drops that row with a reason and finishes."""
    from fakeclue_builder.export_writer import BlobChanged

    rows = make_aggregate_stage(tmp_path, n=60, seed=2)
    victim = next(r for r in rows if (tmp_path / r.blob).exists() and r.cate in CATEGORIES and r.caption
                  and r.caption.startswith(VERDICT[r.label]))
    cfg = ExportConfig(test_size=10, shard_size_mb=0.002, row_group_size=4)

    def truncate():
        path = tmp_path / victim.blob
        path.write_bytes(path.read_bytes()[:-3])

    with pytest.raises(BlobChanged, match=victim.blob):
        export_run(cfg, tmp_path, before_write=truncate)
    out = tmp_path / "export"
    assert not list(out.rglob("*.tmp")) and not (out / "_stats.json").exists()
    assert not StageDir(tmp_path, "export").is_complete()  # the victim's shard has no marker
    summary = export_run(cfg, tmp_path)
    dropped = pq.read_table(out / "dropped.parquet").to_pylist()
    assert {r["image_id"]: r["reason"] for r in dropped}[victim.image_id] == "blob_size_mismatch"
    assert summary.rows_in == summary.kept + summary.dropped and summary.dropped == N_BAD + 1


def test_a_disk_error_during_writeback_fails_the_export_and_leaves_no_marker(tmp_path, monkeypatch):
    """Linux reports a writeback error once per file descriptor: the background flush must not swallow it."""
    import errno

    make_aggregate_stage(tmp_path, n=40, seed=3)

    def failing_fdatasync(fd):
        raise OSError(errno.EIO, "Input/output error (simulated)")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    with pytest.raises(OSError, match="simulated"):
        export_run(ExportConfig(test_size=8, row_group_size=4), tmp_path)
    out = tmp_path / "export"
    assert not list((out / "_done").glob("part-*")) and not list((out / "data").glob("*.parquet"))
    assert not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    summary = export_run(ExportConfig(test_size=8, row_group_size=4), tmp_path)
    assert StageDir(tmp_path, "export").is_complete() and summary.kept == 40
