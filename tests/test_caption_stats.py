import json
import random

from fakeclue_builder.caption_stats import CaptionRecord, CaptionStats, evidence_part, stats_from_rows
from fakeclue_builder.records import FAKE, REAL, Row

PLANTED = "the image shows typical signs of high-quality generation with no visible artifacts"
VOCAB = (
    "fur whiskers eye reflection shadow lighting edge blur texture paw ear nose background grass sky "
    "tail mouth teeth claw pattern stripe color noise grain symmetry outline window tree water cloud"
).split()


def _varied(rng: random.Random) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(12))


def _corpus(n: int = 100, planted: int = 30) -> list[CaptionRecord]:
    rng = random.Random(0)
    recs = []
    for i in range(n):
        evidence = [_varied(rng), _varied(rng)]
        if i < planted:
            evidence.insert(1, PLANTED.capitalize())
        caption = "This is a fake image. " + "; ".join(evidence) + "."
        recs.append(CaptionRecord("animal", FAKE, caption, [2, 1], [False, True], {}))
    return recs


def _stats(recs, template_alarm=20) -> dict:
    stats = CaptionStats(template_alarm=template_alarm)
    for rec in recs:
        stats.add(rec)
    return stats.to_dict()


def test_planted_template_raises_alarm_with_caption_count():
    out = _stats(_corpus())
    for key in ("animal/fake", "all"):
        group = out[key]
        assert group["n"] == 100
        assert group["templated_alarm"]["alarm"] is True
        planted_grams = {" ".join(PLANTED.split()[i:i + 8]) for i in range(len(PLANTED.split()) - 7)}
        top = {g["ngram"]: g["captions"] for g in group["top_8grams"]}
        assert "the image shows typical signs of high quality" in top  # punctuation ("high-quality") stripped
        assert all(top[g] == 30 for g in top if g in {x.replace("-", " ") for x in planted_grams})
        flagged = {g["ngram"]: g["captions"] for g in group["templated_alarm"]["ngrams"]}
        assert flagged and set(flagged.values()) == {30}
        assert group["top_8grams"][0]["captions"] == 30


def test_no_alarm_below_threshold_and_each_caption_counts_once():
    recs = _corpus(planted=5)
    recs[0].caption += " " + PLANTED + "; " + PLANTED  # twice in one caption still counts once
    out = _stats(recs)
    assert out["all"]["templated_alarm"]["alarm"] is False
    assert out["all"]["templated_alarm"]["ngrams"] == []
    assert out["all"]["top_8grams"][0]["captions"] == 5
    assert _stats(recs, template_alarm=5)["all"]["templated_alarm"]["alarm"] is True


def test_groups_lengths_and_claims_on_hand_example():
    recs = [
        CaptionRecord("animal", FAKE, "This is a fake image. one two three", [1, 3], [True, False], {}),  # 8 words
        CaptionRecord("animal", FAKE, "This is a fake image. one", [2], [False], {}),  # 6 words
        CaptionRecord("scene", REAL, "This is a real image. a b c d e f", [3], [False], {}),  # 11 words
        CaptionRecord("animal", FAKE, "This is a fake image. x y", [], [], {}),  # 7 words
    ]
    out = _stats(recs)
    assert set(out) == {"animal/fake", "scene/real", "all"}
    lengths = out["all"]["length_words"]
    # sorted 6, 7, 8, 11 -> numpy-style linear quantiles
    assert lengths == {"min": 6, "p25": 6.75, "median": 7.5, "p75": 8.75, "max": 11, "mean": 8.0}
    assert out["animal/fake"]["length_words"]["median"] == 7.0
    assert out["animal/fake"]["claims"] == {"n": 3, "mean_support": 2.0, "critical_share": 0.3333}
    assert out["all"]["claims"]["mean_support"] == 2.25
    # evidence part only: "one two three" + "one" + "x y" -> 5 distinct of 6 words, 3 distinct of 3 bigrams
    assert out["animal/fake"]["distinct_1"] == 0.8333
    assert out["animal/fake"]["distinct_2"] == 1.0


def test_distinct_ratios_in_unit_interval():
    out = _stats(_corpus())
    for key in ("animal/fake", "all"):
        assert 0 < out[key]["distinct_1"] <= 1
        assert 0 < out[key]["distinct_2"] <= 1
    assert out["all"]["distinct_1"] < out["all"]["distinct_2"]


def test_annotator_agreement_identical_and_disjoint():
    answers_same = {"qwen": "This is a fake image. The fur is blurry.", "intern": "this is a fake image: fur, BLURRY!"}
    answers_apart = {"qwen": "This is a fake image. The fur is blurry.", "llava": "Shadows are inconsistent."}
    recs = [
        CaptionRecord("animal", FAKE, "This is a fake image. blurry fur.", [2], [False], answers_same),
        CaptionRecord("animal", FAKE, "This is a fake image. blurry fur.", [1], [True], answers_apart),
    ]
    agreement = _stats(recs)["all"]["agreement"]
    assert agreement["intern|qwen"] == {"mean_jaccard": 1.0, "rows": 1}
    assert agreement["llava|qwen"] == {"mean_jaccard": 0.0, "rows": 1}
    assert "intern|llava" not in agreement  # never both answered


def test_to_dict_is_json_serialisable_and_merge_is_exact():
    recs = _corpus()
    whole = _stats(recs)
    json.dumps(whole)
    left, right = CaptionStats(), CaptionStats()
    for i, rec in enumerate(recs):
        (left if i % 2 else right).add(rec)
    left.merge(right)
    assert left.to_dict() == whole


def test_evidence_part_strips_verdict_sentence():
    assert evidence_part("This is a real image. Sharp edges.").strip() == "Sharp edges."
    assert evidence_part("no verdict here") == "no verdict here"


def test_stats_from_rows_uses_kept_rows_and_ok_answers():
    def row(label, cate, caption, annotations):
        r = Row(source="s", source_path="p", label=label, cate=cate, annotations=annotations)
        r.meta["caption"] = caption
        return r

    ok = [{"annotator": "a", "text": "This is a fake image. fur blur", "ok": True},
          {"annotator": "b", "text": "This is a fake image. fur blur", "ok": True},
          {"annotator": "c", "text": "garbage", "ok": False}]
    rows = [row(FAKE, "animal", "This is a fake image. fur blur", ok),
            row(REAL, "scene", "This is a real image. sharp", []).drop("duplicate"),
            row(REAL, "scene", "", [])]
    out = stats_from_rows(rows, lambda r: (r.meta["caption"], [2], [False]), template_alarm=20)
    assert set(out) == {"animal/fake", "all"}
    assert out["all"]["agreement"] == {"a|b": {"mean_jaccard": 1.0, "rows": 1}}
