"""`train` end to end on CPU: the loss falls, checkpoints save, reload and resume; the ablations run; the CLI works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fakeclue_builder.train.trainer import run_train
from tests.test_train import demo_config, losses, write_export


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return write_export(tmp_path_factory.mktemp("run") / "export")


@pytest.fixture(scope="module")
def trained(tiny_llava, export_dir, tmp_path_factory):
    """6 steps (checkpoints at 3 and 6), then resumed to 8; plus an uninterrupted 8-step run to compare with."""
    out = tmp_path_factory.mktemp("train")
    first = run_train(demo_config(tiny_llava, export_dir, out / "resumed"), out)
    resumed = run_train(demo_config(tiny_llava, export_dir, out / "resumed", max_steps=8), out)
    straight = run_train(demo_config(tiny_llava, export_dir, out / "straight", max_steps=8), out)
    return first, resumed, straight


def test_loss_decreases(trained):
    first, _, _ = trained
    history = losses(first)
    assert len(history) == 6
    assert sum(history[-2:]) / 2 < sum(history[:2]) / 2 - 0.3, history
    rates = [h["samples_per_second"] for h in first.log_history if "samples_per_second" in h]
    assert rates and all(r > 0 for r in rates)
    assert all(h["tokens_per_second"] > 0 for h in first.log_history if "tokens_per_second" in h)


def test_checkpoints_saved_reloaded_and_resumed_to_the_same_step(trained):
    first, resumed, straight = trained
    out = first.output_dir
    assert sorted(p.name for p in Path(out).glob("checkpoint-*")) == [
        "checkpoint-3", "checkpoint-6", "checkpoint-8"]
    assert resumed.resumed_from.endswith("checkpoint-6") and resumed.global_step == 8
    # resuming restores weights, optimizer, schedule and data position: steps 7-8 match an uninterrupted run
    assert losses(resumed)[-2:] == pytest.approx(losses(straight)[-2:], rel=1e-4)
    summary = json.loads((Path(out) / "train_summary.json").read_text())
    assert summary["global_step"] == 8


def test_final_model_reloads_with_the_trained_weights(trained, tiny_llava):
    import torch
    from transformers import AutoModelForImageTextToText, LlavaForConditionalGeneration

    _, resumed, straight = trained
    a = LlavaForConditionalGeneration.from_pretrained(resumed.final_dir)
    b = AutoModelForImageTextToText.from_pretrained(straight.final_dir)  # the class evaluate's backend loads
    base = LlavaForConditionalGeneration.from_pretrained(tiny_llava)
    # LLaVA reads the vision tower's second-to-last layer: its last layer and post-layernorm get no gradient
    unused = ("vision_tower.encoder.layers.1.", "vision_tower.post_layernorm")
    for (name, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(), base.named_parameters()):
        assert torch.allclose(p, q, atol=1e-4), name  # resumed == uninterrupted, after a save/reload round trip
        assert torch.equal(p, r) == any(u in name for u in unused), name  # the rest trained (vision tower too)


def test_label_only_runs_a_step(tiny_llava, export_dir, tmp_path):
    result = run_train(demo_config(tiny_llava, export_dir, tmp_path / "out", objective="label_only", max_steps=1,
                                   gradient_checkpointing=True), tmp_path)  # the recipe's setting, on CPU
    assert result.global_step == 1 and len(losses(result)) == 1


def test_linear_probe_learns_and_saves_a_head(tiny_llava, export_dir, tmp_path):
    import torch

    from fakeclue_builder.train.probe import load_head

    result = run_train(demo_config(tiny_llava, export_dir, tmp_path / "out", objective="linear_probe",
                                   probe={"epochs": 15, "batch_size": 8, "learning_rate": 1e-2}), tmp_path)
    history = result.log_history
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["accuracy"] >= 0.75  # fakes are noise, reals flat colour: the frozen features separate them
    head, meta = load_head(tmp_path / "out" / "probe")
    assert meta["features"] == "both" and head(torch.zeros(2, meta["dim"])).shape == (2, 2)


def test_lora_trains_adapters_only_in_the_language_model(tiny_llava, export_dir, tmp_path):
    pytest.importorskip("peft")
    result = run_train(demo_config(tiny_llava, export_dir, tmp_path / "out", max_steps=2,
                                   lora={"enabled": True, "r": 4, "alpha": 8}), tmp_path)
    assert result.global_step == 2 and losses(result)[-1] < losses(result)[0]
    config = json.loads((tmp_path / "out" / "final" / "adapter_config.json").read_text())
    assert config["r"] == 4 and "language_model" in config["target_modules"]
    assert sorted(config["modules_to_save"]) == ["multi_modal_projector", "vision_tower"]  # trained fully, saved


def test_cli_trains_on_a_run_dir_export(tiny_llava, export_dir, tmp_path):
    from typer.testing import CliRunner

    from fakeclue_builder.cli import app

    run_dir = export_dir.parent
    out = tmp_path / "cli"
    args = ["train", "--config", "stages/train_demo.yaml", "--run-dir", str(run_dir), "--quiet",
            "--set", f"train.model={tiny_llava}", "--set", f"train.output_dir={out}", "--set", "train.max_steps=2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 steps" in result.output and (out / "final" / "model.safetensors").is_file()
    assert yaml.safe_load((out / "config.resolved.yaml").read_text())["train"]["max_steps"] == 2
    missing = CliRunner().invoke(app, ["train", "--config", "stages/train_demo.yaml", "--run-dir", str(tmp_path)])
    assert missing.exit_code == 2 and "fakeclue-builder export" in missing.output
