"""The aggregate stage: consensus over annotated rows, llm mode with its fallback, quality statistics."""

from __future__ import annotations

import json

import pytest

from fakeclue_builder.aggregate import AggregateStage, MergedCaption, parse_llm_answer, render_structured
from fakeclue_builder.config import AggregateConfig
from fakeclue_builder.consensus import validate_caption
from fakeclue_builder.records import FAKE, REAL, Row
from fakeclue_builder.store import StageDir, StageRunner, read_rows, shard_rows


def _ann(name: str, text: str, ok: bool = True) -> dict:
    return {"annotator": name, "model": f"m-{name}", "revision": None, "text": text, "finish_reason": "stop",
            "tokens": 10, "ok": ok, "reason": None if ok else "empty", "attempts": 1, "cached": False}


FAKE_ANSWERS = {
    "a": "This is a fake image. The fur texture looks unnatural; the shadow of the cat falls in the wrong direction.",
    "b": "This is a fake image. Fur texture is unnaturally smooth. The cat's shadow points the wrong way.",
    "c": "This is a fake image. The background is slightly blurry; the fur looks too smooth and unnatural.",
}
REAL_ANSWERS = {
    "a": "This is a real image. The lighting is natural and consistent across the scene; the fur has fine detail.",
    "b": "This is a real image. Natural, consistent lighting over the whole scene. Individual hairs of the fur are sharp.",
}


def _row(i: int, label: int, answers: dict[str, str], **kw) -> Row:
    return Row(source="s", source_path=f"/r/{i}", label=label, image_id=f"{i:064x}", cate="animal",
               annotations=[_ann(k, v) for k, v in answers.items()], **kw)


@pytest.fixture
def annotated_run(tmp_path):
    rows = [_row(0, FAKE, FAKE_ANSWERS), _row(1, REAL, REAL_ANSWERS),
            _row(2, FAKE, {"a": "This is a fake image. This image appears authentic and natural in every respect.",
                           "b": "This is a fake image. The image appears authentic and natural in every respect."}),
            _row(3, FAKE, {"a": "", "b": ""}),
            _row(4, FAKE, {"a": "This is a fake image. Nothing stands out here at all.",
                           "b": "This is a fake image. A hidden detail in the corner."}, no_forced_artifacts=True)]
    StageRunner(tmp_path, "annotate", "fixture").run(shard_rows(rows, 2), iter)
    return tmp_path


def test_consensus_stage_captions_reasons_and_quality(annotated_run):
    from fakeclue_builder.pipeline import run_row_stage

    cfg = AggregateConfig()
    stage = AggregateStage(cfg, annotated_run)
    summary = run_row_stage("aggregate", cfg, stage, annotated_run)
    kept = {r.source_path: r for r in StageDir(annotated_run, "aggregate").iter_rows()}
    dropped = {r.source_path: r.reason for r in read_rows(StageDir(annotated_run, "aggregate").dropped_path)}
    assert summary.rows_in == 5 and summary.kept + summary.dropped == 5
    fake = kept["/r/0"]
    assert fake.caption.startswith("This is a fake image.") and fake.aggregate_mode == "consensus"
    assert any("fur" in c["text"].lower() and c["support"] >= 2 for c in fake.caption_claims)
    assert "background is slightly blurry" not in fake.caption  # a single-model, non-critical claim is dropped
    assert kept["/r/1"].caption.startswith("This is a real image.")
    assert dropped["/r/2"] == "contradiction" and dropped["/r/3"] == "no_annotations"
    assert kept["/r/4"].caption.startswith("This is a fake image.") and kept["/r/4"].caption_claims == []
    for row in kept.values():
        validate_caption(row.caption, row.label, len(row.caption_claims), row.no_forced_artifacts, cfg)
    stats = json.loads((annotated_run / "aggregate" / "_stats.json").read_text())
    assert stats["extra"]["merge"]["mode_consensus"] == 3
    assert stats["extra"]["quality"]["all"]["n"] == 3 and "animal/fake" in stats["extra"]["quality"]


def test_structured_llm_answers_render_to_the_fixed_format():
    merged = MergedCaption(verdict="fake", evidence={"texture": ["the fur is too smooth"],
                                                     "lighting": ["shadows disagree", "highlights are too bright"]})
    caption, claims = render_structured(merged, FAKE)
    assert caption == "This is a fake image. the fur is too smooth; shadows disagree; highlights are too bright."
    assert [c.aspect for c in claims] == ["texture", "lighting", "lighting"]
    text = 'Sure: {"verdict": "real", "evidence": {"lighting": ["natural light"]}}'
    assert parse_llm_answer(text, REAL)[0] == "This is a real image. natural light."
    caption, claims = parse_llm_answer("This is a fake image. odd fur; wrong shadow.", FAKE)
    assert len(claims) == 2


def test_llm_mode_falls_back_to_consensus(annotated_run, tmp_path_factory):
    from fakeclue_builder.tiny_vlms import make_tiny_qwen2_vl

    model = make_tiny_qwen2_vl(tmp_path_factory.mktemp("llm") / "qwen2_vl")
    cfg = AggregateConfig(mode="llm", llm_retries=1, llm={"backend": "transformers", "model": str(model),
                                                          "device": "cpu", "sampling": {"max_tokens": 16}})
    stage = AggregateStage(cfg, annotated_run)
    rows = [_row(0, FAKE, FAKE_ANSWERS)]
    out = list(stage(rows))
    stage.close()
    # a random-weight model cannot write a valid caption: both tries fail validation, consensus takes over
    assert out[0].kept and out[0].aggregate_mode == "consensus"
    counters = stage.shard_stats()["merge"]
    assert counters["llm_fallback_to_consensus"] == 1 and sum(v for k, v in counters.items()
                                                               if k.startswith("llm_rejected_")) == 2
