"""Metrics: accuracy, F1, ROUGE-L, CSS and AUC, computed the same way for every benchmark.

- An `unparsed` verdict (and a backend or image error) is scored as wrong: it counts as the opposite of the true
  label, so it lowers accuracy and F1 of both classes instead of vanishing from the denominator.
- F1 is reported with fake as the positive class (`f1`), with real as the positive class (`f1_real`), and their
  mean (`f1_macro`); `f1_positive_class` in results.json says so.
- ROUGE-L (rouge-score, F-measure) and CSS (cosine of sentence embeddings) compare the explanation after the
  verdict sentence with the reference explanation(s); with several references a row scores its best match.
- AUC ranks P(fake) read from the "real"/"fake" (or "yes"/"no") token probabilities at the verdict position;
  rows without token probabilities are left out of AUC and counted (`auc_rows`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

REAL = 1
FAKE = 0


def scored_predictions(labels: Sequence[int], predictions: Sequence[int | None]) -> np.ndarray:
    """Predictions with every None (unparsed / error) replaced by the wrong label."""
    return np.array([(1 - y) if p is None else p for y, p in zip(labels, predictions, strict=True)], dtype=int)


def accuracy(labels: Sequence[int], predictions: Sequence[int | None]) -> float | None:
    if len(labels) == 0:
        return None
    return float(np.mean(np.asarray(labels, dtype=int) == scored_predictions(labels, predictions)))


def f1(labels: Sequence[int], predictions: Sequence[int | None], positive: int = FAKE) -> float | None:
    """F1 of class `positive` (0.0 when it is never predicted nor true, as scikit-learn's zero_division=0)."""
    if len(labels) == 0:
        return None
    y = np.asarray(labels, dtype=int) == positive
    p = scored_predictions(labels, predictions) == positive
    tp, fp, fn = int(np.sum(y & p)), int(np.sum(~y & p)), int(np.sum(y & ~p))
    return 0.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def roc_auc(positive: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); None without both classes."""
    y = np.asarray(positive, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_scores = s[order]
    start = 0
    while start < len(s):  # average rank over each run of tied scores
        end = start
        while end + 1 < len(s) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rouge_l(candidates: Sequence[str], references: Sequence[Sequence[str]], use_stemmer: bool = True) -> list[float]:
    """Per row, ROUGE-L F-measure of the candidate against its best reference (rouge-score's `score_multi`)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    return [float(scorer.score_multi(list(refs), cand or "")["rougeL"].fmeasure) if refs else float("nan")
            for cand, refs in zip(candidates, references, strict=True)]


def css(embedder: Any, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """Per row, the best cosine similarity between the candidate's and a reference's sentence embedding
    (`embedder.encode` returns L2-normalised rows); an empty candidate scores 0, a row without references NaN."""
    texts = [c for c in candidates if c] + [r for refs in references for r in refs]
    vectors = embedder.encode(texts) if texts else np.zeros((0, 1), dtype=np.float32)
    index = {text: i for i, text in enumerate(texts)}
    out: list[float] = []
    for cand, refs in zip(candidates, references, strict=True):
        if not refs:
            out.append(float("nan"))
        elif not cand:
            out.append(0.0)
        else:
            out.append(max(float(np.dot(vectors[index[cand]], vectors[index[r]])) for r in refs))
    return out


@dataclass
class Scores:
    """What the metrics need per row (one list entry per prediction)."""

    labels: list[int] = field(default_factory=list)
    predictions: list[int | None] = field(default_factory=list)  # None = unparsed or error
    cates: list[str | None] = field(default_factory=list)
    methods: list[str | None] = field(default_factory=list)
    p_fake: list[float | None] = field(default_factory=list)
    rouge_l: list[float] = field(default_factory=list)  # NaN where the row has no reference explanation
    css: list[float] = field(default_factory=list)


def _classification(labels: list[int], predictions: list[int | None]) -> dict[str, Any]:
    f1_fake, f1_real = f1(labels, predictions, FAKE), f1(labels, predictions, REAL)
    return {"n": len(labels), "acc": accuracy(labels, predictions), "f1": f1_fake, "f1_real": f1_real,
            "f1_macro": None if f1_fake is None else (f1_fake + f1_real) / 2}


def _mean(values: list[float]) -> tuple[float | None, int]:
    kept = [v for v in values if v == v]  # drop NaN: rows without a reference
    return (float(np.mean(kept)) if kept else None), len(kept)


def _auc(labels: list[int], p_fake: list[float | None]) -> tuple[float | None, int]:
    pairs = [(y == FAKE, p) for y, p in zip(labels, p_fake, strict=True) if p is not None]
    return (roc_auc([y for y, _ in pairs], [p for _, p in pairs]) if pairs else None), len(pairs)


def _subset(scores: Scores, keep: list[bool]) -> tuple[list[int], list[int | None]]:
    return ([y for y, k in zip(scores.labels, keep) if k], [p for p, k in zip(scores.predictions, keep) if k])


def per_method_auc(scores: Scores) -> dict[str, dict[str, Any]]:
    """FF++-style AUC per manipulation method: that method's fakes against all real rows."""
    methods = sorted({m for m, y in zip(scores.methods, scores.labels) if y == FAKE and m})
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        keep = [y == REAL or m == method for y, m in zip(scores.labels, scores.methods)]
        labels, _ = _subset(scores, keep)
        auc, n = _auc(labels, [p for p, k in zip(scores.p_fake, keep) if k])
        out[method] = {"auc": auc, "auc_rows": n, "n_fake": sum(1 for m in scores.methods if m == method)}
    return out


def summarize(scores: Scores) -> dict[str, Any]:
    """The metrics block of results.json."""
    out = _classification(scores.labels, scores.predictions)
    out["f1_positive_class"] = "fake (f1); real (f1_real); f1_macro = their mean"
    for name, label in (("real", REAL), ("fake", FAKE)):
        keep = [y == label for y in scores.labels]
        out[f"acc_{name}"] = accuracy(*_subset(scores, keep))
        out[f"n_{name}"] = sum(keep)
    out["unparsed"] = sum(p is None for p in scores.predictions)
    out["rouge_l"], out["rouge_l_rows"] = _mean(scores.rouge_l)
    out["css"], out["css_rows"] = _mean(scores.css)
    out["auc"], out["auc_rows"] = _auc(scores.labels, scores.p_fake)
    by_cate: dict[str, list[bool]] = defaultdict(lambda: [False] * len(scores.labels))
    for i, cate in enumerate(scores.cates):
        by_cate[cate or "unknown"][i] = True
    out["per_category"] = {}
    for cate in sorted(by_cate):
        keep = by_cate[cate]
        block = _classification(*_subset(scores, keep))
        block["acc_real"] = accuracy(*_subset(scores, [k and y == REAL for k, y in zip(keep, scores.labels)]))
        block["acc_fake"] = accuracy(*_subset(scores, [k and y == FAKE for k, y in zip(keep, scores.labels)]))
        block["auc"], _ = _auc(*([y for y, k in zip(scores.labels, keep) if k], [p for p, k in zip(scores.p_fake, keep) if k]))
        out["per_category"][cate] = block
    out["per_method_auc"] = per_method_auc(scores)
    return out
