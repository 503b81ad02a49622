"""Categorize with a tiny EVA-02 built from timm's real architecture and loaded through the real path."""

from __future__ import annotations

from pathlib import Path

import pytest
from skimage import data as skdata
from PIL import Image

from fakeclue_builder import categorize
from fakeclue_builder.config import CategorizeConfig, ConfigError
from fakeclue_builder.imagenet_categories import CATEGORIES
from fakeclue_builder.records import FAKE, REAL, Row
from fakeclue_builder.tiny_models import EVA02_TINY_ARGS, make_tiny_eva02


@pytest.fixture(scope="session")
def tiny_eva(tmp_path_factory) -> Path:
    return make_tiny_eva02(tmp_path_factory.mktemp("models") / "eva02")


@pytest.fixture(scope="session")
def tiny_eva_22k(tmp_path_factory) -> Path:
    return make_tiny_eva02(tmp_path_factory.mktemp("models22k") / "eva02", num_classes=21841)


@pytest.fixture
def photo_rows(tmp_path) -> list[Row]:
    """Kept rows whose blobs are real photographs (JPEG and PNG), as collect leaves them."""
    rows = []
    for i, name in enumerate(["astronaut", "chelsea", "coffee", "rocket", "camera", "cat"]):
        arr = getattr(skdata, name)()
        ext = "jpg" if i % 2 else "png"
        rel = f"blobs/{i:02d}/{name}.{ext}"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(tmp_path / rel)
        rows.append(Row(source="genimage", source_path=f"/src/{name}.{ext}", label=i % 2, image_id=f"{i:064x}", blob=rel))
    return rows


def _cfg(model: Path, **kw) -> CategorizeConfig:
    kw.setdefault("min_confidence", 0.0)
    kw.setdefault("batch_size", 4)
    return CategorizeConfig(model=f"local-dir:{model}", device="cpu", **kw)


def test_photos_get_a_category_with_scores_summing_to_one(tiny_eva, photo_rows, tmp_path):
    out = list(categorize.run(_cfg(tiny_eva), photo_rows, tmp_path))
    assert [r.source_path for r in out] == [r.source_path for r in photo_rows]  # same rows, same order
    for row in out:
        assert row.kept and row.cate in CATEGORIES and row.cate_source == "classifier"
        assert set(row.cate_scores) == set(CATEGORIES)
        assert sum(row.cate_scores.values()) == pytest.approx(1.0, abs=1e-4)
        assert row.cate_confidence == pytest.approx(max(row.cate_scores.values()))
        assert row.cate_model.startswith("local-dir:") and not row.cate_uncertain


def test_deterministic_and_batch_size_independent(tiny_eva, photo_rows, tmp_path):
    a = [(r.cate, r.cate_scores) for r in categorize.run(_cfg(tiny_eva, batch_size=4), [_copy(r) for r in photo_rows], tmp_path)]
    b = [(r.cate, r.cate_scores) for r in categorize.run(_cfg(tiny_eva, batch_size=1), [_copy(r) for r in photo_rows], tmp_path)]
    assert [x[0] for x in a] == [x[0] for x in b]
    for (_, sa), (_, sb) in zip(a, b):
        assert all(sa[c] == pytest.approx(sb[c], abs=1e-4) for c in CATEGORIES)


def _copy(row: Row) -> Row:
    from dataclasses import replace

    return replace(row, cate=None, cate_scores={}, cate_source=None, cate_confidence=None, cate_model=None,
                   cate_uncertain=False, meta=dict(row.meta))


def test_known_category_and_dropped_rows_are_untouched(tiny_eva, photo_rows, tmp_path):
    known = Row(source="ffpp", source_path="/v.mp4", label=FAKE, cate="deepfake", blob="missing/blob.png")
    dropped = Row(source="x", source_path="/y.jpg", label=REAL).drop("empty_file")
    out = list(categorize.run(_cfg(tiny_eva), [known, photo_rows[0], dropped], tmp_path))
    assert out[0].cate == "deepfake" and out[0].cate_scores == {} and out[0].cate_model is None
    assert out[0].cate_source == "source"
    assert out[2].reason == "empty_file" and out[2].cate is None
    assert out[1].cate in CATEGORIES


def test_only_known_rows_never_load_the_model(tmp_path):
    cfg = CategorizeConfig(model="local-dir:/nonexistent", device="cpu")
    rows = [Row(source="s", source_path="/a", label=REAL, cate="satellite")]
    assert [r.cate for r in categorize.run(cfg, rows, tmp_path)] == ["satellite"]


@pytest.mark.parametrize("fallback,reason,cate", [("object", None, "object"), ("drop", "low_cate_confidence", None),
                                                  ("review", "cate_needs_review", None)])
def test_low_confidence_is_flagged_not_guessed(tiny_eva, photo_rows, tmp_path, fallback, reason, cate):
    out = list(categorize.run(_cfg(tiny_eva, min_confidence=1.0, fallback=fallback), photo_rows[:2], tmp_path))
    for row in out:
        assert row.cate_uncertain and row.reason == reason and row.cate == cate
        assert row.cate_scores and row.cate_confidence < 1.0
        if cate:
            assert row.kept and row.cate_source == "fallback"


def test_undecodable_blob_is_dropped(tiny_eva, photo_rows, tmp_path):
    (tmp_path / photo_rows[1].blob).write_bytes(b"not an image")
    out = list(categorize.run(_cfg(tiny_eva), photo_rows[:3], tmp_path))
    assert [r.reason for r in out] == [None, "decode_failed", None]


def test_in22k_head_uses_the_22k_table(tiny_eva_22k, photo_rows, tmp_path):
    clf = categorize.load_classifier(_cfg(tiny_eva_22k))
    assert clf.model.num_classes == 21841 and clf.class_to_category.shape == (21841,)
    out = list(categorize.run(_cfg(tiny_eva_22k), photo_rows[:2], tmp_path, classifier=clf))
    assert all(sum(r.cate_scores.values()) == pytest.approx(1.0, abs=1e-4) for r in out)


def test_checkpoint_path_route_and_top_k(tiny_eva, photo_rows, tmp_path):
    cfg = CategorizeConfig(model="eva02_tiny_patch14_224", pretrained=False, device="cpu",
                           checkpoint_path=tiny_eva / "model.safetensors", model_kwargs={**EVA02_TINY_ARGS, "num_classes": 1000},
                           pretrained_cfg_overlay={"input_size": [3, 56, 56]}, top_k=5, min_confidence=0.0)
    out = list(categorize.run(cfg, [_copy(r) for r in photo_rows[:2]], tmp_path))
    for row in out:
        assert 0 < sum(row.cate_scores.values()) <= 1.0 and row.cate in CATEGORIES
    same_weights = list(categorize.run(_cfg(tiny_eva, top_k=5), [_copy(r) for r in photo_rows[:2]], tmp_path))
    assert [r.cate_scores for r in out] == [r.cate_scores for r in same_weights]


def test_config_problems_are_reported_before_work(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint_path"):
        categorize.check_config(CategorizeConfig(checkpoint_path=tmp_path / "nope.safetensors"))
    with pytest.raises(ConfigError, match="config.json"):
        categorize.check_config(CategorizeConfig(model=f"local-dir:{tmp_path}"))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no GPU"):
            categorize._device_and_dtype(CategorizeConfig(device="cuda"))
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text('{"architecture": "no_such_model_xyz"}')
    with pytest.raises(ConfigError, match="cannot load"):
        categorize.load_classifier(CategorizeConfig(model=f"local-dir:{bad}", device="cpu"))
