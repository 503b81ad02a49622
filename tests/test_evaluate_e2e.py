"""End to end with a tiny random LLaVA through the real transformers backend.

Its answers are gibberish, so most verdicts are `unparsed` (and scored wrong) — expected. AUC comes from the
token probabilities at the verdict position (the answer is prefilled with "This is a", so that position is the
first generated token; logprobs=400 is the tiny model's whole vocabulary, so both candidates are always there).
"""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from fakeclue_builder.cli import app  # noqa: E402
from fakeclue_builder.config_evaluate import EvaluateConfig  # noqa: E402
from fakeclue_builder.evaluate.runner import run_evaluation  # noqa: E402
from tests import evaluate_fixtures as fx  # noqa: E402


def _cfg(model, **kwargs) -> EvaluateConfig:
    return EvaluateConfig.model_validate({
        "benchmark": "fakeclue", "model": {"model": str(model), "device": "cpu", "batch_size": 2},
        "sampling": {"max_tokens": 6, "logprobs": 400}, "verdict_prefix": "This is a", "chunk_size": 4, **kwargs})


def test_fakeclue_export_end_to_end(tmp_path, tiny_llava):
    import pyarrow.parquet as pq

    run = tmp_path / "run"
    fx.write_export(run / "export", n=8, broken=7)  # the last row's bytes are not an image
    result = run_evaluation(_cfg(tiny_llava), run)
    out = run / "evaluate" / "fakeclue" / "llava"
    assert result.output == out
    for name in ("predictions.parquet", "results.json", "results.md", "per_category.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    rows = pq.read_table(out / "predictions.parquet").to_pylist()
    assert results["n"] == len(rows) == 8
    # failures are data: the broken image is a counted error row, never a crash, never lost
    assert results["errors"] == {"image_error": 1}
    assert rows[7]["verdict"] == "error" and rows[7]["output"] == "" and not rows[7]["correct"]
    answered = rows[:7]
    assert all(r["output"].startswith("This is a") and r["tokens"] >= 1 for r in answered)
    # unparsed counted, and scored as wrong
    assert results["unparsed"] == sum(r["verdict"] == "unparsed" for r in rows)
    assert results["metrics"]["unparsed"] == results["unparsed"] + 1  # + the error row
    assert results["metrics"]["acc"] == pytest.approx(sum(r["correct"] for r in rows) / 8)
    # token probabilities at the verdict position, and the AUC computed from them
    for r in answered:
        assert r["verdict_position"] == 0 and r["probs_partial"] is False
        assert r["p_fake"] == pytest.approx(1 / (1 + math.exp(r["logprob_real"] - r["logprob_fake"])))
    assert results["metrics"]["auc_rows"] == 7
    assert results["metrics"]["auc"] is not None and 0.0 <= results["metrics"]["auc"] <= 1.0
    # every row with a reference is scored; the error row's empty explanation scores 0
    assert results["metrics"]["rouge_l_rows"] == 8 and results["metrics"]["css_rows"] == 8
    assert rows[7]["rouge_l"] == 0.0 and rows[7]["css"] == 0.0
    assert set(results["metrics"]["per_category"]) == {"animal", "doc", "deepfake"}
    assert "| llava | fakeclue | 8 |" in (out / "results.md").read_text()

    again = run_evaluation(_cfg(tiny_llava), run)  # cached: nothing is generated twice
    assert again.results["stats"]["cache_hits"] == 7 and again.results["stats"]["generated"] == 0
    assert [p.output for p in again.predictions] == [r["output"] for r in rows]
    assert [p.p_fake for p in again.predictions[:7]] == pytest.approx([r["p_fake"] for r in answered])


def test_requests_use_the_shared_chat_format(tmp_path, tiny_llava):
    from fakeclue_builder.chat import question_messages
    from fakeclue_builder.evaluate.loaders import Example
    from fakeclue_builder.evaluate.runner import _prepare

    example = Example(id="x", label=0, question="Is it fake?", image_bytes=fx.png_bytes(1))
    pending = _prepare(example, _cfg(tiny_llava))
    assert pending.request.messages == question_messages("Is it fake?")
    assert pending.request.response_prefix == "This is a"


def _cli(*args: str):
    result = CliRunner().invoke(app, ["evaluate", *args])
    assert result.exit_code == 0, result.output
    return result


def test_cli_on_loki_ddvqa_folder_and_compare(tmp_path, tiny_llava):
    run = tmp_path / "run"
    loki = fx.write_loki(tmp_path / "LOKI")
    ddvqa, frames = fx.write_ddvqa(tmp_path)
    folder = fx.write_folder(tmp_path / "DMimage")
    common = ["--model", str(tiny_llava), "--run-dir", str(run), "--max-tokens", "4", "--device", "cpu", "-q"]
    _cli("--benchmark", "loki", "--data", str(loki), *common)
    _cli("--benchmark", "ddvqa", "--data", str(ddvqa), "--images", str(frames), "--name", "tiny", *common)
    _cli("--benchmark", "folder", "--data", str(folder), "--limit", "3", *common)
    loki_results = json.loads((run / "evaluate/loki/llava/results.json").read_text())
    assert loki_results["n"] == 6 and loki_results["metrics"]["rouge_l_rows"] == 4  # two fake images, asked twice
    ddvqa_results = json.loads((run / "evaluate/ddvqa/tiny/results.json").read_text())
    assert ddvqa_results["n"] == 3 and ddvqa_results["errors"] == {"image_error": 1}
    assert "Deepfakes" in ddvqa_results["metrics"]["per_method_auc"]
    assert json.loads((run / "evaluate/folder/llava/results.json").read_text())["n"] == 3

    compared = _cli("compare", str(run / "evaluate/loki/llava"), str(run / "evaluate/ddvqa/tiny"),
                    "--output", str(tmp_path / "cmp"))
    assert "| llava | loki | 6 |" in compared.output and "| tiny | ddvqa | 3 |" in compared.output
    assert (tmp_path / "cmp" / "per_category.png").is_file()


def test_cli_errors_name_the_fix(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--benchmark", "fakeclue", "--model", "./no/such/model",
                                      "--run-dir", str(tmp_path), "-q"])
    assert result.exit_code == 2 and "evaluate.model.model" in result.output
    result = CliRunner().invoke(app, ["evaluate", "--run-dir", str(tmp_path), "-q"])
    assert result.exit_code == 2 and "--benchmark" in result.output
    result = CliRunner().invoke(app, ["evaluate", "compare", str(tmp_path)])
    assert result.exit_code == 2 and "results.json" in result.output


def test_help_explains_every_option():
    result = CliRunner().invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0
    for option in ("--benchmark", "--model", "--backend", "--run-dir", "--data", "--images", "--verdict-prefix",
                   "compare"):
        assert option in result.output


def test_ffpp_per_method_auc_from_token_probabilities(tmp_path, tiny_llava):
    run = fx.write_ffpp_collect(tmp_path / "run")
    result = run_evaluation(_cfg(tiny_llava, benchmark="ffpp"), run)
    per_method = result.results["metrics"]["per_method_auc"]
    assert set(per_method) == {"Deepfakes", "FaceSwap"}  # each method's fakes against the two real frames
    assert all(block["auc"] is not None and block["auc_rows"] == 3 for block in per_method.values())
    p = {pred.id: pred.p_fake for pred in result.predictions}
    expected = sum(p["ff1"] > p[r] for r in ("ff0", "ff3")) / 2 + sum(p["ff1"] == p[r] for r in ("ff0", "ff3")) / 4
    assert per_method["Deepfakes"]["auc"] == pytest.approx(expected)


def test_cli_options_override_the_yaml(tmp_path):
    from fakeclue_builder.cli_evaluate import _cli_overrides
    from fakeclue_builder.config import load_build_config

    yaml_file = tmp_path / "eval.yaml"
    yaml_file.write_text("evaluate:\n  benchmark: loki\n  name: from-yaml\n  data: ${run_dir}/LOKI\n"
                         "  model: {model: m, batch_size: 3}\n")
    overrides = _cli_overrides({"name": "from-cli", "model.model": "2024", "limit": 5, "images": tmp_path / "x y"})
    cfg = load_build_config(yaml_file, overrides, variables={"run_dir": "runs/r"}).evaluate
    assert (cfg.name, cfg.model.model, cfg.limit, cfg.model.batch_size) == ("from-cli", "2024", 5, 3)
    assert str(cfg.data) == "runs/r/LOKI" and cfg.images == tmp_path / "x y"
