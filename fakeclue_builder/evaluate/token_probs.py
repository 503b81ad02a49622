"""P(fake) from the token probabilities at the verdict position (the FakeVLM authors' scoring; gives AUC).

Backends return, per generated position, the top-k tokens and their log-probabilities (`SamplingSpec.logprobs`;
transformers from its logits, vLLM and OpenAI-compatible servers from their top-k logprobs). The verdict position
is the first generated position when the answer was prefilled up to the verdict word (`evaluate.verdict_prefix`,
e.g. "This is a"), else the first position whose most likely token is a candidate ("real"/"fake", or "yes"/"no"
for yes/no questions), else the first position where a candidate is among the top-k. Token variants ("Ġreal",
"▁Real", " fake") are summed. P(fake) = p_fake / (p_fake + p_real). A candidate missing from the top-k gets the
smallest top-k probability (an upper bound) and the row is flagged `partial`; with no candidate anywhere the row
has no probability and is left out of AUC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fakeclue_builder.evaluate.verdict import Asks

_STRIP = " \t\n\"'.,:;!?*`_()[]"


@dataclass(frozen=True)
class VerdictProbability:
    p_fake: float
    position: int  # generated position of the verdict token
    logprob_fake: float  # log-probability of the fake-side candidate (fake, or yes/no by the question)
    logprob_real: float
    partial: bool  # one candidate was absent from the top-k (its probability is an upper bound)


def normalize_token(token: str) -> str:
    return token.replace("Ġ", " ").replace("▁", " ").strip(_STRIP).lower()


def candidates(asks: Asks | None) -> dict[str, str]:
    """Candidate word -> the verdict it stands for."""
    if asks is None:
        return {"fake": "fake", "real": "real"}
    return {"yes": asks, "no": "real" if asks == "fake" else "fake"}


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _side_logprobs(top: dict[str, float], words: dict[str, str]) -> dict[str, float]:
    """verdict -> summed log-probability of its candidate's variants in one position's top-k."""
    grouped: dict[str, list[float]] = {}
    for token, logprob in top.items():
        verdict = words.get(normalize_token(token))
        if verdict is not None:
            grouped.setdefault(verdict, []).append(logprob)
    return {verdict: _logsumexp(values) for verdict, values in grouped.items()}


def _position(logprobs: list[dict[str, float]], words: dict[str, str], at_start: bool) -> int | None:
    if at_start:
        return 0 if logprobs and _side_logprobs(logprobs[0], words) else None
    for i, top in enumerate(logprobs):
        if top and normalize_token(max(top, key=top.get)) in words:
            return i
    for i, top in enumerate(logprobs):
        if _side_logprobs(top, words):
            return i
    return None


def verdict_probability(logprobs: list[dict[str, float]] | None, asks: Asks | None = None,
                        at_start: bool = False) -> VerdictProbability | None:
    """P(fake) at the verdict position, or None when the candidates never appear (or no logprobs came back)."""
    if not logprobs:
        return None
    words = candidates(asks)
    position = _position(logprobs, words, at_start)
    if position is None:
        return None
    top = logprobs[position]
    sides = _side_logprobs(top, words)
    floor = min(top.values())
    fake, real = sides.get("fake", floor), sides.get("real", floor)
    p_fake = 1.0 / (1.0 + math.exp(real - fake))
    return VerdictProbability(p_fake, position, fake, real, partial=len(sides) < 2)
