"""Verdict parsing: real / fake / unparsed from a model's answer, never guessed.

FakeVLM's own evaluation decides by keyword in the first sentence. Here the first sentence that carries a verdict
word decides ("first sentence first"); a sentence whose words disagree, that hedges, or a bare "Yes"/"No" without
knowing what was asked, is `unparsed` (scored as wrong by the metrics). Negations flip a verdict word: "not real"
is fake, "isn't fake" is real, "no signs of manipulation" is real.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

REAL = 1
FAKE = 0
Asks = Literal["real", "fake"]

FAKE_WORDS = frozenset("""fake fakes faked synthetic synthesized synthesised generated ai-generated computer-generated
manipulated manipulation forged forgery fabricated artificial deepfake deepfakes doctored tampered tampering
photoshopped edited altered""".split())
REAL_WORDS = frozenset("real authentic genuine unedited unaltered untampered".split())
NEGATORS = frozenset("not no never nor without hardly barely neither lacks lacking free".split())
# "not X" is negated; "not only X" is not; a verdict sentence that hedges is undecidable
_NOT_NEGATING_NEXT = frozenset({"only", "just", "merely"})
_HEDGE_RE = re.compile(
    r"\b(?:can ?not|can't|cannot|unable to|difficult to|hard to|impossible to|not sure|unsure|uncertain|unclear|"
    r"whether|or not|undetermined|inconclusive)\b")
NEGATION_WINDOW = 6  # words a negator reaches forward within its clause
_CLAUSE_RE = re.compile(r"[,;:()]|\b(?:and|but|while|although|though|however|yet|whereas)\b", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD_RE = re.compile(r"[a-z]+(?:-[a-z]+)*")
_YES_NO = {"yes": True, "yeah": True, "yep": True, "no": False, "nope": False}
_OPPOSITE: dict[str, str] = {"real": "fake", "fake": "real"}


@dataclass(frozen=True)
class Verdict:
    """`label` 1 = real, 0 = fake, None = unparsed; `reason` says how it was decided (or why not);
    `sentence` is the index of the deciding sentence (None when unparsed)."""

    label: int | None
    reason: str  # words | yes_no | empty | no_verdict | conflict | hedged | yes_no_unknown_question
    sentence: int | None = None

    @property
    def name(self) -> str:
        return {REAL: "real", FAKE: "fake"}.get(self.label, "unparsed")  # type: ignore[arg-type]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END_RE.split(text.strip()) if s.strip()]


def _words(sentence: str) -> list[str]:
    """Lower-cased words; "isn't" -> "is", "not"; "AI-generated" stays one word (its last part decides)."""
    text = sentence.lower().replace("’", "'").replace("n't", " not").replace("cannot", "can not")
    return _WORD_RE.findall(text)


def _is_negated(words: list[str], index: int) -> bool:
    """A negator among the `NEGATION_WINDOW` words before `index` in the same clause (not "not only ...")."""
    for j in range(max(0, index - NEGATION_WINDOW), index):
        if words[j] in NEGATORS and (j + 1 >= len(words) or words[j + 1] not in _NOT_NEGATING_NEXT):
            return True
    return False


def _polarity(word: str) -> str | None:
    if word in FAKE_WORDS or word.split("-")[-1] in FAKE_WORDS:
        return "fake"
    if word in REAL_WORDS:
        return "real"
    return None


def _word_verdicts(text: str) -> set[str]:
    """The verdicts the verdict words of a text assert, clause by clause (a negated word asserts the opposite):
    "not blurry and looks fake" is fake, "does not appear to be manipulated or altered" is real."""
    found: set[str] = set()
    for clause in _CLAUSE_RE.split(text):
        words = _words(clause)
        for index, word in enumerate(words):
            polarity = _polarity(word)
            if polarity is not None:
                found.add(_OPPOSITE[polarity] if _is_negated(words, index) else polarity)
    return found


def _sentence_verdict(sentence: str, asks: Asks | None, first: bool) -> tuple[str | None, str]:
    """(verdict or None, reason) of one sentence; reason no_verdict means "look at the next sentence"."""
    words = _words(sentence)
    if not words:
        return None, "no_verdict"
    yes_no = _YES_NO.get(words[0]) if first else None
    rest = re.sub(r"^\W*\w+", "", sentence, count=1) if yes_no is not None else sentence
    verdicts = _word_verdicts(rest)
    if verdicts and _HEDGE_RE.search(sentence.lower()):
        return None, "hedged"
    if len(verdicts) > 1:
        return None, "conflict"
    if yes_no is not None:
        if asks is None:
            return (next(iter(verdicts)), "words") if verdicts else (None, "yes_no_unknown_question")
        from_yes_no = asks if yes_no else _OPPOSITE[asks]
        if verdicts and verdicts != {from_yes_no}:
            return None, "conflict"
        return from_yes_no, "yes_no"
    if verdicts:
        return next(iter(verdicts)), "words"
    return None, "no_verdict"


def parse_verdict(text: str | None, asks: Asks | None = None) -> Verdict:
    """The verdict of an answer. `asks`: what a yes/no question asks ("fake": "Is this image generated by an AI
    model?" — yes means fake; "real": "Is this image taken from the real world?"), None for open questions."""
    sentences = split_sentences(text or "")
    if not sentences:
        return Verdict(None, "empty")
    for index, sentence in enumerate(sentences):
        verdict, reason = _sentence_verdict(sentence, asks, first=index == 0)
        if verdict is not None:
            return Verdict(REAL if verdict == "real" else FAKE, reason, index)
        if reason != "no_verdict":
            return Verdict(None, reason)
    return Verdict(None, "no_verdict")


def explanation(text: str | None, verdict: Verdict | None = None) -> str:
    """The explanation part of an answer: what follows the sentence that gave the verdict (the whole text when
    no sentence did, e.g. a reference that is only evidence)."""
    verdict = verdict or parse_verdict(text)
    sentences = split_sentences(text or "")
    if verdict.sentence is None:
        return " ".join(sentences)
    return " ".join(sentences[verdict.sentence + 1:])


def question_asks(question: str) -> Asks | None:
    """What a yes/no question asks: LOKI's "Is this image generated by an AI model?" -> fake, "Is this image
    taken from the real world?" -> real; open questions ("Does the image looks real/fake?") -> None."""
    q = question.lower()
    if "real/fake" in q or "real or fake" in q or "fake or real" in q:
        return None
    match = re.search(r"\b(?:is|was) (?:this|the) (?:image|picture|photo)\b([^?]*)\?", q)
    if match is None:
        return None
    clause = match.group(1)
    if re.search(r"generated|synthe|fake|manipulated|\bai\b", clause):
        return "fake"
    if re.search(r"\breal\b|authentic|genuine|taken from", clause):
        return "real"
    return None
