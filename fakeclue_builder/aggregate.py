"""Aggregate: the annotators' answers become one label-consistent, aspect-grouped explanation per row.

`consensus` (deterministic, no LLM): claims that at least `min_support` annotators make (matched by sentence
embeddings) are kept, single-model claims only when they name a critical artifact, grouped by aspect.
`llm`: the paper's merge — the aggregation prompt (prompts/aggregate.j2) with the answers, the label and the
consensus result, through any backend, with a JSON schema where the backend supports it; a row whose merge
fails validation after the retries falls back to consensus. Both share `consensus.validate_caption`; a row
that cannot be merged is dropped with the reason. Caption-quality statistics go to `_stats.json`.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Iterable, Iterator, Literal

from pydantic import BaseModel, ValidationError

from fakeclue_builder.config import AggregateConfig
from fakeclue_builder.consensus import (
    VERDICT,
    ConsensusMerger,
    Embedder,
    KeptClaim,
    Merge,
    MergeRejected,
    request_from_row,
    validate_caption,
)
from fakeclue_builder.records import REAL, Row

log = logging.getLogger(__name__)


class MergedCaption(BaseModel):
    """The structured output asked of the llm merge."""

    verdict: Literal["real", "fake"]
    evidence: dict[str, list[str]]  # aspect -> claims


def render_structured(merged: MergedCaption, label: int) -> tuple[str, list[KeptClaim]]:
    claims = [KeptClaim(text.strip().rstrip("."), aspect, 0, [], False)
              for aspect, texts in merged.evidence.items() for text in texts if text.strip()]
    verdict = VERDICT[REAL if merged.verdict == "real" else 1 - REAL]
    return verdict + " " + "; ".join(c.text for c in claims) + ".", claims


def parse_llm_answer(text: str, label: int) -> tuple[str, list[KeptClaim]]:
    """A JSON object (structured output) or a plain `This is a ... image. a; b; c.` paragraph."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match:
        try:
            return render_structured(MergedCaption.model_validate(json.loads(match.group(0))), label)
        except (ValueError, ValidationError):
            pass
    body = text.strip()
    claims = [KeptClaim(c.strip().rstrip("."), "", 0, [], False) for c in re.split(r";", body.split(".", 1)[-1])
              if c.strip()]
    return body, claims


class AggregateStage:
    """The stage function: merges shard by shard, keeps the models loaded, computes quality statistics at the end."""

    def __init__(self, cfg: AggregateConfig, run_dir: Path, output: str = "aggregate"):
        self.cfg, self.run_dir, self.output = cfg, Path(run_dir), output
        self.merger: ConsensusMerger | None = None
        self.backend = None
        self.counters: dict[str, int] = {}

    def _consensus(self) -> ConsensusMerger:
        if self.merger is None:
            self.merger = ConsensusMerger(self.cfg, Embedder(self.cfg.embedding_model, self.cfg.device))
        return self.merger

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def __call__(self, rows: Iterable[Row]) -> Iterator[Row]:
        rows = list(rows)
        todo = [r for r in rows if r.kept]
        if todo:  # one batched embedding call for every claim of the shard
            consensus = self._consensus().merge_many([request_from_row(r) for r in todo])
            for row, merge in zip(todo, consensus):
                self._finish(row, merge)
        yield from rows

    def _finish(self, row: Row, merge: Merge | MergeRejected) -> None:
        if self.cfg.mode == "llm" and isinstance(merge, Merge):
            answers = {a["annotator"]: a["text"] for a in row.annotations if a["ok"]}
            merge = self._llm(row, answers, merge)
        if isinstance(merge, MergeRejected):
            self._count(f"rejected_{merge.reason}")
            row.drop(merge.reason, merge.detail)
            return
        row.caption, row.aggregate_mode = merge.caption, merge.mode
        row.caption_claims = [{"text": c.text, "aspect": c.aspect, "support": c.support, "annotators": c.annotators,
                               "critical": c.critical} for c in merge.claims]
        self._count(f"mode_{merge.mode}")

    def _llm(self, row: Row, answers: dict[str, str], consensus: Merge) -> Merge:
        """The paper's merge through a backend; consensus when it fails validation after the retries."""
        from fakeclue_builder.backends.base import Request, build_backend
        from fakeclue_builder.prompts import PromptLibrary

        spec = self.cfg.llm
        if self.backend is None:
            self.backend = build_backend(spec, key="aggregate.llm")
            self.library = PromptLibrary()
        prompt = self.library.render_aggregate(label=row.label, cate=row.cate, consensus=consensus.caption,
                                               answers=[{"model": k, "text": v} for k, v in answers.items()])
        for attempt in range(self.cfg.llm_retries + 1):
            sampling = spec.sampling.model_copy(update={"seed": spec.sampling.seed + 1_000_003 * attempt})
            request = Request(row.image_id, None, [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
                              sampling, json_schema=MergedCaption.model_json_schema())
            response = self.backend.generate([request])[0]
            if response.error:
                continue
            caption, claims = parse_llm_answer(response.text, row.label)
            try:
                validate_caption(caption, row.label, len(claims), row.no_forced_artifacts, self.cfg)
            except MergeRejected as e:
                self._count(f"llm_rejected_{e.reason}")
                continue
            return Merge(caption, claims, mode="llm")
        self._count("llm_fallback_to_consensus")
        return consensus

    def shard_stats(self) -> dict:
        out, self.counters = {"merge": dict(self.counters)}, {}
        return out

    def derive_stats(self, merged: dict) -> dict:
        """Caption-quality statistics over every caption of the finished stage."""
        from fakeclue_builder.caption_stats import stats_from_rows
        from fakeclue_builder.store import StageDir

        def caption_of(row: Row):
            return row.caption, [c["support"] for c in row.caption_claims], [c["critical"] for c in row.caption_claims]

        rows = StageDir(self.run_dir, self.output).iter_rows()
        merged["quality"] = stats_from_rows(rows, caption_of, self.cfg.template_alarm)
        return merged

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
