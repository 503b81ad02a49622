"""Benchmark loaders on fixture files written in the exact public formats (tests/evaluate_fixtures.py)."""

from __future__ import annotations

import pytest

from fakeclue_builder.config_base import ConfigError
from fakeclue_builder.config_evaluate import EvaluateConfig
from fakeclue_builder.evaluate.loaders import load_benchmark, loki_explanations
from fakeclue_builder.records import FAKE, REAL
from tests import evaluate_fixtures as fx


def _cfg(benchmark: str, **kwargs) -> EvaluateConfig:
    return EvaluateConfig.model_validate({"benchmark": benchmark, "model": {"model": "unused"}, **kwargs})


def _load(cfg, run_dir):
    bench = load_benchmark(cfg, run_dir)
    examples = list(bench.examples)
    assert bench.total == len(examples)
    return examples


def test_fakeclue_export(tmp_path):
    fx.write_export(tmp_path / "run" / "export", n=6)
    examples = _load(_cfg("fakeclue"), tmp_path / "run")  # default: <run-dir>/export
    assert [e.id for e in examples] == [f"img{i:03d}" for i in range(6)]
    assert [e.label for e in examples] == [FAKE, REAL] * 3
    assert examples[0].cate == "animal" and examples[0].method == "sd" and examples[1].method is None
    assert examples[0].references == ["The fur texture is unnaturally smooth; the edges of the ears are blurry."]
    assert examples[0].read_bytes() == fx.png_bytes(0)  # the original bytes, not re-encoded
    assert examples[0].question == "Does the image looks real/fake?"
    assert examples[0].source == "bytes:src/0.png"  # predictions.parquet `input`: where the bytes came from


def test_fakeclue_released_json(tmp_path):
    path = fx.write_fakeclue_json(tmp_path / "FakeClue")
    for data in (path, tmp_path / "FakeClue"):  # the json itself, or the root holding data_json/
        examples = _load(_cfg("fakeclue", data=str(data)), tmp_path)
        assert [e.label for e in examples] == [FAKE, REAL, FAKE, REAL]
        assert examples[1].image_path == tmp_path / "FakeClue" / "genimage" / "real" / "1.png"
        assert examples[1].read_bytes() == fx.png_bytes(11)
        assert examples[1].references == ["The lighting is consistent and the shadows fall the same way."]


def test_fakeclue_missing_data_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="--data"):
        load_benchmark(_cfg("fakeclue"), tmp_path)


def test_loki_judgments_and_utf16_explanations(tmp_path):
    root = fx.write_loki(tmp_path / "LOKI")
    assert (root / "data_json/image/open_ended_vqa.json").read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")  # UTF-16 BOM
    refs = loki_explanations(root / "data_json/image/open_ended_vqa.json")
    assert refs["c3d4.jpg"] == "The fur looks painted and overly smooth. The left ear melts into the background."
    examples = _load(_cfg("loki", data=str(root)), tmp_path)
    assert len(examples) == 6  # every image asked twice
    by_id = {e.id: e for e in examples}
    real_asked_fake = by_id["doc_tf_fake_0_0"]
    assert (real_asked_fake.label, real_asked_fake.asks, real_asked_fake.cate) == (REAL, "fake", "doc")
    assert not real_asked_fake.question.startswith("<image>")
    fake = by_id["animals_tf_real_1_0"]
    assert (fake.label, fake.asks) == (FAKE, "real")
    assert fake.references == [refs["c3d4.jpg"]] and real_asked_fake.references == []
    assert fake.read_bytes() == fx.png_bytes(21)
    assert {e.cate for e in examples} == {"doc", "animals", "sence"}  # LOKI's own names, "sence" included


def test_ddvqa_nested_json_and_frames(tmp_path):
    data, frames = fx.write_ddvqa(tmp_path)
    examples = _load(_cfg("ddvqa", data=str(data), images=str(frames)), tmp_path)
    assert len(examples) == 3  # the skin question is not an authenticity judgment
    by_id = {e.id: e for e in examples}
    fake = by_id["Deepfakes/Deepfakes_000_003/0"]
    assert (fake.label, fake.method, fake.cate) == (FAKE, "Deepfakes", "deepfake")
    assert fake.references == ["The skin around the mouth is blurry.", "The nose has an odd shadow."]
    assert fake.read_bytes() == fx.png_bytes(30)
    assert by_id["original/original_002_002/0"].label == REAL
    missing = by_id["Deepfakes/Deepfakes_001_870/0"]
    assert missing.image_error and "Deepfakes_001_870" in missing.image_error
    with pytest.raises(ConfigError, match="--images"):
        load_benchmark(_cfg("ddvqa", data=str(data)), tmp_path)


def test_folder(tmp_path):
    root = fx.write_folder(tmp_path / "DMimage")
    examples = _load(_cfg("folder", data=str(root), folder_cate="object"), tmp_path)
    assert sorted((e.id, e.label, e.method) for e in examples) == [
        ("fake/ldm/f0.png", FAKE, "ldm"), ("fake/ldm/f1.png", FAKE, "ldm"),
        ("real/r0.png", REAL, None), ("real/r1.png", REAL, None)]
    assert {e.cate for e in examples} == {"object"}
    with pytest.raises(ConfigError, match="real/ and fake/"):
        load_benchmark(_cfg("folder", data=str(tmp_path / "nowhere")), tmp_path)


def test_ffpp_from_collect_rows(tmp_path):
    run = fx.write_ffpp_collect(tmp_path / "run")
    examples = _load(_cfg("ffpp"), run)
    assert [(e.id, e.label, e.method) for e in examples] == [
        ("ff0", REAL, "original"), ("ff1", FAKE, "Deepfakes"), ("ff2", FAKE, "FaceSwap"), ("ff3", REAL, "original")]
    assert examples[1].read_bytes() == fx.png_bytes(61)
    with pytest.raises(ConfigError, match="collect"):
        load_benchmark(_cfg("ffpp"), tmp_path / "empty")
