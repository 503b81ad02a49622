"""results.json and predictions.parquet of one evaluation (the tables and the chart are in `tables`)."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakeclue_builder.config_evaluate import EvaluateConfig
from fakeclue_builder.evaluate.metrics import Scores, summarize

if TYPE_CHECKING:
    from fakeclue_builder.evaluate.runner import Prediction

log = logging.getLogger(__name__)

AUC_METHOD = ("P(fake) = p(fake) / (p(fake) + p(real)) from the token probabilities at the verdict position "
              "(yes/no questions: p(yes), p(no) mapped through what the question asks); rows without token "
              "probabilities are left out (auc_rows)")


def _scores(predictions: list[Prediction]) -> Scores:
    nan = float("nan")
    return Scores(labels=[p.label for p in predictions], predictions=[p.predicted for p in predictions],
                  cates=[p.cate for p in predictions], methods=[p.method for p in predictions],
                  p_fake=[p.p_fake for p in predictions],
                  rouge_l=[nan if p.rouge_l is None else p.rouge_l for p in predictions],
                  css=[nan if p.css is None else p.css for p in predictions])


def build_results(cfg: EvaluateConfig, predictions: list[Prediction], stats: dict[str, Any]) -> dict[str, Any]:
    from fakeclue_builder.evaluate.runner import UNPARSED_POLICY, display_name

    errors = Counter(p.error.split(":", 1)[0] for p in predictions if p.error)
    reasons = Counter(p.verdict_reason for p in predictions if p.verdict == "unparsed")
    return {
        "benchmark": cfg.benchmark, "name": display_name(cfg), "model": cfg.model.model, "backend": cfg.model.backend,
        "n": len(predictions), "verdicts": dict(Counter(p.verdict for p in predictions)),
        "unparsed": sum(p.verdict == "unparsed" for p in predictions), "unparsed_by_reason": dict(reasons),
        "errors": dict(errors), "unparsed_policy": UNPARSED_POLICY, "auc_method": AUC_METHOD,
        "metrics": summarize(_scores(predictions)), "stats": {k: round(v, 3) for k, v in stats.items()},
        "config": cfg.model_dump(mode="json"),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def predictions_schema():
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("input", pa.string()), ("label", pa.int8()), ("cate", pa.string()),
        ("method", pa.string()), ("question", pa.string()), ("asks", pa.string()),
        ("references", pa.list_(pa.string())), ("output", pa.string()), ("finish_reason", pa.string()),
        ("tokens", pa.int32()), ("cached", pa.bool_()), ("error", pa.string()), ("verdict", pa.string()),
        ("verdict_reason", pa.string()), ("correct", pa.bool_()), ("p_fake", pa.float64()),
        ("verdict_position", pa.int32()), ("logprob_fake", pa.float64()), ("logprob_real", pa.float64()),
        ("probs_partial", pa.bool_()), ("explanation", pa.string()), ("rouge_l", pa.float64()), ("css", pa.float64()),
    ])


def write_outputs(out: Path, cfg: EvaluateConfig, predictions: list[Prediction], results: dict[str, Any]) -> None:
    """predictions.parquet, results.json, results.md, per_category.png (each written atomically)."""
    import pyarrow as pa

    from fakeclue_builder.evaluate.runner import prediction_rows
    from fakeclue_builder.evaluate.tables import bar_chart, results_markdown
    from fakeclue_builder.store import atomic_write_bytes, atomic_write_json, atomic_write_table

    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(prediction_rows(predictions), schema=predictions_schema())
    atomic_write_table(out / "predictions.parquet", table)
    atomic_write_json(out / "results.json", results)
    atomic_write_bytes(out / "results.md", results_markdown([results]).encode())
    bar_chart([results], out / "per_category.png")
    log.info("evaluate: %d predictions, results in %s", len(predictions), out)


def read_results(path: Path) -> dict[str, Any]:
    """results.json of a run folder (or the file itself)."""
    import json

    from fakeclue_builder.config_base import ConfigError

    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"{path} has no results.json; pass an evaluate output folder "
                          "(e.g. runs/demo/evaluate/fakeclue/<model>)")
    return json.loads(file.read_text())
