"""Streaming caption-quality statistics for the aggregated FakeClue captions.

Released FakeClue captions are often templated (one generic Chameleon sentence appears hundreds of
times in the test split). `CaptionStats` consumes one `CaptionRecord` per image and reports, per
``"<cate>/<real|fake>"`` group and for ``"all"``:

- ``n`` and the caption length in words (min, p25, median, p75, max, mean; whole caption);
- ``distinct_1`` / ``distinct_2``: distinct n-grams / total n-grams over the group's captions;
- ``top_8grams``: the 10 word 8-grams contained in the most captions (each caption counts once);
- ``templated_alarm``: the 8-grams shared by >= ``template_alarm`` captions and a boolean ``alarm``;
- ``claims``: mean support of kept claims and the share of kept claims kept as single-model critical;
- ``agreement``: per annotator pair, the mean Jaccard similarity of their answers' word sets.

Text statistics (distinct ratios, 8-grams, agreement) look at the evidence part only, i.e. what
follows the verdict sentence ``This is a real|fake image.``; words are lower-cased with punctuation
stripped. Memory grows with the number of distinct n-grams, never with the number of captions.
Only stdlib: this module is safe to import anywhere.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from fakeclue_builder.records import REAL, Row

ALL_GROUP = "all"
TOP_NGRAMS = 10
NGRAM_N = 8
MAX_TEMPLATED_LISTED = 100  # the alarm list is capped; `n_templated` always says how many there are
_ROUND = 4

_VERDICT = re.compile(r"\bthis\s+is\s+an?\s+(?:real|fake)\s+image\s*[.:!]?", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being it its
    this that these those there here which who whom what when where while than then so such not no
    nor too very can could would should may might will shall do does did has have had having i we
    you he she they them their our your his her my me us into onto over under about above below
    also just only all any both each few more most other some same own""".split()
)

CaptionOf = Callable[[Row], "tuple[str, list[int], list[bool]] | None"]


@dataclass
class CaptionRecord:
    """One aggregated caption and what it was built from."""

    cate: str | None
    label: int  # 1 = real, 0 = fake
    caption: str  # "This is a real|fake image. <evidence; evidence; ...>"
    supports: list[int] = field(default_factory=list)  # per kept claim: how many annotators support it
    critical: list[bool] = field(default_factory=list)  # per kept claim: kept as a single-model critical claim
    answers: dict[str, str] = field(default_factory=dict)  # annotator -> its (ok) answer text

    def __post_init__(self) -> None:
        if len(self.supports) != len(self.critical):
            raise ValueError(
                f"CaptionRecord has {len(self.supports)} supports but {len(self.critical)} critical flags; "
                "caption_of must return one of each per kept claim"
            )

    @property
    def group(self) -> str:
        return f"{self.cate or 'unknown'}/{'real' if self.label == REAL else 'fake'}"


def evidence_part(text: str) -> str:
    """What follows the first verdict sentence (the whole text when there is none)."""
    match = _VERDICT.search(text or "")
    return text[match.end():] if match else (text or "")


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation stripped."""
    return _WORD.findall(text.lower())


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity; two empty sets are identical (1.0)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), _ROUND)


def _quantile(lengths: Counter, n: int, q: float) -> float:
    """Linear-interpolation quantile (numpy's default) over a value -> count histogram."""
    pos = q * (n - 1)
    lo, hi = int(pos), min(int(pos) + 1, n - 1)
    values = {}
    seen = 0
    for value in sorted(lengths):
        nxt = seen + lengths[value]
        for idx in (lo, hi):
            if seen <= idx < nxt:
                values[idx] = value
        seen = nxt
        if hi in values:
            break
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


@dataclass
class _GroupState:
    """Mergeable accumulators for one group; sizes bounded by distinct lengths and n-grams."""

    n: int = 0
    lengths: Counter = field(default_factory=Counter)  # caption length in words -> captions
    unigrams: set = field(default_factory=set)
    bigrams: set = field(default_factory=set)
    n_unigrams: int = 0
    n_bigrams: int = 0
    ngram_captions: Counter = field(default_factory=Counter)  # 8-gram -> captions containing it
    n_claims: int = 0
    support_sum: int = 0
    n_critical: int = 0
    agreement: dict = field(default_factory=dict)  # (a, b) -> [jaccard sum, rows]

    def add(self, rec: CaptionRecord) -> None:
        self.n += 1
        self.lengths[len(rec.caption.split())] += 1
        tokens = words(evidence_part(rec.caption))
        self.unigrams.update(tokens)
        self.n_unigrams += len(tokens)
        bigrams = _ngrams(tokens, 2)
        self.bigrams.update(bigrams)
        self.n_bigrams += len(bigrams)
        self.ngram_captions.update(set(_ngrams(tokens, NGRAM_N)))
        self.n_claims += len(rec.supports)
        self.support_sum += sum(rec.supports)
        self.n_critical += sum(bool(c) for c in rec.critical)
        bags = {name: set(words(evidence_part(text))) - STOPWORDS for name, text in rec.answers.items()}
        for a, b in itertools.combinations(sorted(bags), 2):
            acc = self.agreement.setdefault((a, b), [0.0, 0])
            acc[0] += jaccard(bags[a], bags[b])
            acc[1] += 1

    def merge_from(self, other: "_GroupState") -> None:
        self.n += other.n
        self.lengths.update(other.lengths)
        self.unigrams |= other.unigrams
        self.bigrams |= other.bigrams
        self.n_unigrams += other.n_unigrams
        self.n_bigrams += other.n_bigrams
        self.ngram_captions.update(other.ngram_captions)
        self.n_claims += other.n_claims
        self.support_sum += other.support_sum
        self.n_critical += other.n_critical
        for pair, (total, rows) in other.agreement.items():
            acc = self.agreement.setdefault(pair, [0.0, 0])
            acc[0] += total
            acc[1] += rows

    def _length_summary(self) -> dict:
        if not self.n:
            return {k: None for k in ("min", "p25", "median", "p75", "max", "mean")}
        return {
            "min": min(self.lengths),
            "p25": _r(_quantile(self.lengths, self.n, 0.25)),
            "median": _r(_quantile(self.lengths, self.n, 0.5)),
            "p75": _r(_quantile(self.lengths, self.n, 0.75)),
            "max": max(self.lengths),
            "mean": _r(sum(k * v for k, v in self.lengths.items()) / self.n),
        }

    def to_dict(self, template_alarm: int) -> dict:
        ranked = sorted(self.ngram_captions.items(), key=lambda kv: (-kv[1], kv[0]))
        top = [{"ngram": " ".join(g), "captions": c} for g, c in ranked[:TOP_NGRAMS] if c > 1]
        templated = [{"ngram": " ".join(g), "captions": c} for g, c in ranked if c >= template_alarm]
        return {
            "n": self.n,
            "length_words": self._length_summary(),
            "distinct_1": _r(len(self.unigrams) / self.n_unigrams) if self.n_unigrams else None,
            "distinct_2": _r(len(self.bigrams) / self.n_bigrams) if self.n_bigrams else None,
            "top_8grams": top,
            "templated_alarm": {
                "threshold": template_alarm,
                "alarm": bool(templated),
                "n_templated": len(templated),
                "ngrams": templated[:MAX_TEMPLATED_LISTED],
            },
            "claims": {
                "n": self.n_claims,
                "mean_support": _r(self.support_sum / self.n_claims) if self.n_claims else None,
                "critical_share": _r(self.n_critical / self.n_claims) if self.n_claims else None,
            },
            "agreement": {
                f"{a}|{b}": {"mean_jaccard": _r(total / rows), "rows": rows}
                for (a, b), (total, rows) in sorted(self.agreement.items())
            },
        }


class CaptionStats:
    """Streaming caption statistics; `add` one record per image, `to_dict` at any time.

    Statistics of several shards combine exactly with `merge` (object to object: the JSON summary
    is rounded and truncated, so it cannot be merged back).
    """

    def __init__(self, template_alarm: int = 20) -> None:
        if template_alarm < 1:
            raise ValueError(f"template_alarm must be >= 1 (got {template_alarm})")
        self.template_alarm = template_alarm
        self._groups: dict[str, _GroupState] = {}

    def add(self, rec: CaptionRecord) -> None:
        self._groups.setdefault(rec.group, _GroupState()).add(rec)

    def merge(self, other: "CaptionStats") -> None:
        """Fold another shard's statistics into these (exact, order independent)."""
        for name, state in other._groups.items():
            self._groups.setdefault(name, _GroupState()).merge_from(state)

    def to_dict(self) -> dict:
        """``{"<cate>/<real|fake>": {...}, ..., "all": {...}}``, JSON-serialisable, rounded."""
        overall = _GroupState()
        out = {}
        for name in sorted(self._groups):
            overall.merge_from(self._groups[name])
            out[name] = self._groups[name].to_dict(self.template_alarm)
        out[ALL_GROUP] = overall.to_dict(self.template_alarm)
        return out


def record_from_row(row: Row, caption_of: CaptionOf) -> CaptionRecord | None:
    """The `CaptionRecord` of a kept row, or None when it has no caption."""
    if not row.kept:
        return None
    got = caption_of(row)
    if got is None:
        return None
    caption, supports, critical = got
    if not caption:
        return None
    answers = {
        a["annotator"]: a.get("text") or ""
        for a in row.annotations
        if a.get("ok") and a.get("annotator")
    }
    return CaptionRecord(row.cate, row.label, caption, list(supports), list(critical), answers)


def stats_from_rows(rows: Iterable[Row], caption_of: CaptionOf, template_alarm: int = 20) -> dict:
    """Caption statistics of kept rows; `caption_of(row) -> (caption, supports, critical)` or None."""
    stats = CaptionStats(template_alarm)
    for row in rows:
        rec = record_from_row(row, caption_of)
        if rec is not None:
            stats.add(rec)
    return stats.to_dict()
