"""Annotate: every configured VLM annotator explains every prompted row, through a backend.

Per annotator and row: a request (the row's image at the annotator's pixel budget, its rendered prompt, the
annotator's sampling, optionally the verdict as a response prefix), answered from the request cache when
possible, else by the backend in batches (the cache is committed after each batch). Each answer is
validated; a failing one is asked again with a new seed up to `retries` times, then recorded with its
reason. A row goes forward when at least `min_annotators` answers passed, else it is dropped with them all.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator

from fakeclue_builder.backends.base import Request, Response, build_backend
from fakeclue_builder.config import AnnotateConfig, AnnotatorSpec, ValidationConfig
from fakeclue_builder.records import FAKE, REAL, Row
from fakeclue_builder.request_cache import RequestCache, request_key

log = logging.getLogger(__name__)

VERDICT = {REAL: "This is a real image.", FAKE: "This is a fake image."}
_VERDICT_RE = re.compile(r"^\W*this is an? (real|fake) image\b", re.IGNORECASE)
_COMMON = frozenset("the a an of and is are in on to with this that it its image as by at from not no".split())


def validate(text: str, finish_reason: str | None, label: int, cfg: ValidationConfig) -> str | None:
    """None if the answer is usable, else the reason it is not."""
    if not text or not text.strip():
        return "empty"
    match = _VERDICT_RE.match(text)
    if match is None:
        return "no_verdict"
    if (match.group(1).lower() == "real") != (label == REAL):
        return "verdict_mismatch"
    if finish_reason == "length" and cfg.reject_truncated:
        return "truncated"
    evidence = text[match.end():].strip(" .;")
    if len(evidence) < cfg.min_chars:
        return "too_short"
    words = re.findall(r"[^\W\d_]+", evidence.lower())
    grams = list(zip(words, words[1:], words[2:]))
    if len(grams) >= 6 and 1 - len(set(grams)) / len(grams) > cfg.max_repeat_ratio:
        return "repetition"
    letters = [c for c in evidence if c.isalpha()]
    ascii_share = sum(c.isascii() for c in letters) / max(1, len(letters))
    if ascii_share < cfg.min_english_ratio:
        return "not_english"
    return None


def fit_pixels(image, spec: AnnotatorSpec):
    """A copy of `image` within the annotator's pixel budget (aspect kept; never upscaled beyond min_pixels)."""
    width, height = image.size
    pixels = width * height
    scale = 1.0
    if spec.max_pixels and pixels > spec.max_pixels:
        scale = (spec.max_pixels / pixels) ** 0.5
    elif spec.min_pixels and pixels < spec.min_pixels:
        scale = (spec.min_pixels / pixels) ** 0.5
    if scale == 1.0:
        return image
    from PIL import Image

    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BICUBIC)


class Annotator:
    """One named annotator: its backend (loaded on first use) and its counters for `_stats.json`."""

    def __init__(self, name: str, spec: AnnotatorSpec):
        self.name, self.spec, self.backend = name, spec, None
        self.stats: Counter = Counter()

    def generate(self, requests: list[Request]) -> list[Response]:
        if self.backend is None:
            self.backend = build_backend(self.spec, key=f"annotate.annotators.{self.name}")
        start = time.perf_counter()
        responses = self.backend.generate(requests)
        self.stats["backend_seconds"] += time.perf_counter() - start
        self.stats["backend_requests"] += len(requests)
        self.stats["generated_tokens"] += sum(r.tokens for r in responses)
        return responses

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None


class AnnotateStage:
    """The stage function (one call per shard), holding the annotators and the request cache across shards."""

    def __init__(self, cfg: AnnotateConfig, run_dir: Path, only: list[str] | None = None):
        """`only`: run just these annotators (a per-model job that fills the cache; rows are not judged)."""
        unknown = sorted(set(only or []) - set(cfg.annotators))
        if unknown:
            from fakeclue_builder.config import ConfigError

            raise ConfigError(f"--model {unknown}: not in annotate.annotators ({', '.join(cfg.annotators)})")
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.only = only
        self.annotators = [Annotator(n, s) for n, s in cfg.annotators.items() if not only or n in only]
        self.cache: RequestCache | None = None

    def __call__(self, rows: Iterable[Row]) -> Iterator[Row]:
        rows = list(rows)
        todo = [r for r in rows if r.kept]
        if todo:
            self.cache = self.cache or RequestCache(self.run_dir / "annotate" / "_cache.sqlite")
            images = self._decode(todo)
            for annotator in self.annotators:
                for row, entry in zip(todo, self._annotate(annotator, todo, images)):
                    row.annotations = [a for a in row.annotations if a["annotator"] != annotator.name] + [entry]
            for row, image in zip(todo, images):
                self._decide(row, image, judge=not self.only)
        yield from rows

    def _decode(self, rows: list[Row]) -> list[Any]:
        from PIL import Image

        def load(row: Row):
            try:
                with Image.open(self.run_dir / row.blob) as img:
                    return img.convert("RGB")
            except Exception as e:  # noqa: BLE001 - recorded per row
                return e

        with ThreadPoolExecutor(self.cfg.decode_workers) as pool:
            return list(pool.map(load, rows))

    def _decide(self, row: Row, image: Any, judge: bool) -> None:
        if isinstance(image, Exception):
            row.drop("decode_failed", f"{type(image).__name__}: {image}")
            return
        if not judge:
            return
        passed = sum(a["ok"] for a in row.annotations)
        if passed < self.cfg.min_annotators:
            reasons = "; ".join(f"{a['annotator']}: {a['reason']}" for a in row.annotations if not a["ok"])
            row.drop("annotators_failed", f"{passed} of {len(row.annotations)} passed (need "
                     f"annotate.min_annotators={self.cfg.min_annotators}); {reasons}")

    def _request(self, annotator: Annotator, row: Row, image: Any, attempt: int) -> tuple[str, Request]:
        spec = annotator.spec
        seed = spec.sampling.seed + 1_000_003 * attempt
        sampling = spec.sampling.model_copy(update={"seed": seed})
        prefix = VERDICT[row.label] if spec.response_prefix else None
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row.prompt}]}]
        key = request_key(row.image_id, spec.model, spec.revision, row.prompt, sampling.model_dump(), prefix,
                          spec.max_pixels, spec.min_pixels)
        return key, Request(row.image_id, fit_pixels(image, spec), messages, sampling, response_prefix=prefix)

    def _annotate(self, annotator: Annotator, rows: list[Row], images: list[Any]) -> list[dict]:
        entries: list[dict | None] = [None] * len(rows)
        pending = [i for i, image in enumerate(images) if not isinstance(image, Exception)]
        for i, image in enumerate(images):
            if isinstance(image, Exception):
                entries[i] = self._entry(annotator, "", None, False, "decode_failed", 0, False)
        for attempt in range(self.cfg.retries + 1):
            if not pending:
                break
            asked = {i: self._request(annotator, rows[i], images[i], attempt) for i in pending}
            answers = self._answers(annotator, asked)
            still = []
            for i in pending:
                response, cached = answers[i]
                reason = response.error and "backend_error" or validate(
                    response.text, response.finish_reason, rows[i].label, self.cfg.validation)
                entries[i] = self._entry(annotator, response.text, response.finish_reason, reason is None, reason,
                                         attempt + 1, cached, response.tokens)
                if reason is not None:
                    annotator.stats[f"failed_attempts_{reason}"] += 1
                    still.append(i)
            pending = still
        for entry in entries:
            annotator.stats["answers_ok" if entry["ok"] else f"failed_{entry['reason']}"] += 1
        return entries

    def _answers(self, annotator: Annotator, asked: dict[int, tuple[str, Request]]) -> dict[int, tuple[Response, bool]]:
        keys = {i: key for i, (key, _) in asked.items()}
        cached = self.cache.get_many(list(set(keys.values())))
        out = {i: (cached[keys[i]], True) for i in asked if keys[i] in cached}
        annotator.stats["cache_hits"] += len(out)
        # rows sharing a template share a long prompt prefix: send them together (vLLM's prefix cache)
        missing = sorted((i for i in asked if i not in out), key=lambda i: (asked[i][1].messages[0]["content"][-1]["text"], i))
        size = annotator.spec.batch_size
        for start in range(0, len(missing), size):
            batch = missing[start : start + size]
            responses = annotator.generate([asked[i][1] for i in batch])
            self.cache.put_many({keys[i]: r for i, r in zip(batch, responses)})
            out.update({i: (r, False) for i, r in zip(batch, responses)})
        return out

    def _entry(self, annotator: Annotator, text: str, finish_reason: str | None, ok: bool, reason: str | None,
               attempts: int, cached: bool, tokens: int = 0) -> dict:
        return {"annotator": annotator.name, "model": annotator.spec.model, "revision": annotator.spec.revision,
                "text": text, "finish_reason": finish_reason, "tokens": tokens, "ok": ok, "reason": reason,
                "attempts": attempts, "cached": cached}

    def shard_stats(self) -> dict[str, dict[str, float]]:
        """Per-annotator counters since the last call (the runner stores them in the shard's marker)."""
        out = {a.name: dict(a.stats) for a in self.annotators}
        for a in self.annotators:
            a.stats.clear()
        return out

    @staticmethod
    def derive_stats(merged: dict) -> dict:
        """Per annotator: images/s and generated tokens/s of its backend, failures by reason."""
        for counters in merged.values():
            seconds = counters.get("backend_seconds", 0) or 0
            counters["images_per_s"] = round(counters.get("backend_requests", 0) / seconds, 3) if seconds else None
            counters["tokens_per_s"] = round(counters.get("generated_tokens", 0) / seconds, 3) if seconds else None
            counters["failures_by_reason"] = {k[len("failed_"):]: v for k, v in counters.items()
                                              if k.startswith("failed_") and not k.startswith("failed_attempts_")}
        return merged

    def close(self) -> None:
        for annotator in self.annotators:
            annotator.close()
        if self.cache is not None:
            self.cache.close()
