"""The linear-probe ablation (paper Fig. 3 (2), Table 6's linear-head row): a frozen LLaVA, a linear real/fake head.

Features (train.probe.features), computed once with the model frozen and in eval mode:
- `vision`: the vision tower's pooled output (CLIP's post-layernorm CLS token) of the processed image;
- `llm`: the language model's last-layer hidden state at the last prompt token, i.e. the position where the answer
  would start, for the prompt `evaluate` uses (image + question through the shared chat template);
- `both`: the two concatenated.
The features are standardised (train mean / std, stored with the head) and a `torch.nn.Linear(dim, 2)` is trained
with cross-entropy and AdamW. Outputs: `<output_dir>/probe/head.safetensors` + `probe.json`, `train_summary.json`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fakeclue_builder import chat
from fakeclue_builder.config_train import TrainConfig

log = logging.getLogger(__name__)


def pooled_features(model, batch: dict, kind: str):
    """(batch, dim) features of one PromptCollator batch from the frozen model."""
    import torch

    parts = []
    with torch.no_grad():
        if kind in ("vision", "both"):
            vision = model.model.vision_tower(pixel_values=batch["pixel_values"].to(model.dtype))
            parts.append(vision.pooler_output.float())
        if kind in ("llm", "both"):
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        pixel_values=batch["pixel_values"].to(model.dtype), output_hidden_states=True)
            last = batch["attention_mask"].sum(dim=1) - 1  # right padding: the last real prompt token
            hidden = out.hidden_states[-1]
            parts.append(hidden[torch.arange(hidden.shape[0]), last].float())
    return torch.cat(parts, dim=1)


def extract(model, examples, processor, cfg: TrainConfig) -> tuple[Any, Any]:
    """Features and 0/1 labels of every example (images decoded per batch)."""
    import torch
    from torch.utils.data import DataLoader

    from fakeclue_builder.train.collate import PromptCollator

    loader = DataLoader(examples, batch_size=cfg.per_device_batch_size, shuffle=False,
                        num_workers=cfg.dataloader_workers, collate_fn=PromptCollator(processor, cfg.chat_template))
    device = next(model.parameters()).device
    features, labels = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        features.append(pooled_features(model, batch, cfg.probe.features).cpu())
        labels.append(batch["class_labels"].cpu())
    return torch.cat(features), torch.cat(labels)


def linear_probe_module(dim: int):
    """Standardisation (buffers) + nn.Linear(dim, 2): logits over (fake, real)."""
    import torch

    class LinearProbe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("std", torch.ones(dim))
            self.linear = torch.nn.Linear(dim, 2)

        def forward(self, features):
            return self.linear((features - self.mean) / self.std)

    return LinearProbe()


def fit_head(features, labels, cfg: TrainConfig) -> tuple[Any, list[dict]]:
    """Train the head; returns it and one log record per epoch (loss, accuracy on the training features)."""
    import torch

    torch.manual_seed(cfg.seed)
    head = linear_probe_module(features.shape[1])
    head.mean.copy_(features.mean(0))
    head.std.copy_(features.std(0, unbiased=False).clamp_min(1e-6))
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.probe.learning_rate, weight_decay=cfg.weight_decay)
    history = []
    for epoch in range(cfg.probe.epochs):
        order = torch.randperm(len(labels))
        total = 0.0
        for start in range(0, len(labels), cfg.probe.batch_size):
            idx = order[start: start + cfg.probe.batch_size]
            loss = torch.nn.functional.cross_entropy(head(features[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        with torch.no_grad():
            accuracy = (head(features).argmax(1) == labels).float().mean().item()
        history.append({"epoch": epoch + 1, "loss": total / len(labels), "accuracy": accuracy})
        log.info("probe epoch %d/%d  loss %.4f  train accuracy %.3f", epoch + 1, cfg.probe.epochs,
                 history[-1]["loss"], accuracy)
    return head, history


def save_head(head, history: list[dict], cfg: TrainConfig, out: Path) -> Path:
    from safetensors.torch import save_file

    probe_dir = out / "probe"
    probe_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(probe_dir / "head.safetensors"))
    meta = {"model": str(cfg.model), "features": cfg.probe.features, "dim": int(head.linear.in_features),
            "classes": ["fake", "real"], "question": cfg.question or chat.QUESTION, "history": history}
    (probe_dir / "probe.json").write_text(json.dumps(meta, indent=2))
    return probe_dir


def load_head(probe_dir: Path):
    """The saved LinearProbe (standardisation included) and its metadata."""
    from safetensors.torch import load_file

    meta = json.loads((Path(probe_dir) / "probe.json").read_text())
    head = linear_probe_module(meta["dim"])
    head.load_state_dict(load_file(str(Path(probe_dir) / "head.safetensors")))
    return head.eval(), meta


def run_probe(cfg: TrainConfig, run_dir: Path):
    """Extract frozen features, fit the linear head, save it; returns a TrainResult."""
    import torch

    from fakeclue_builder.train.model import load_model, load_processor, resolve_device, use_bf16
    from fakeclue_builder.train.trainer import TrainResult, load_examples, output_dir, write_summary

    torch.manual_seed(cfg.seed)
    out = output_dir(cfg, run_dir)
    device = resolve_device(cfg)
    examples = load_examples(cfg, run_dir)
    processor = load_processor(cfg)
    model = load_model(cfg, use_bf16(cfg, device)).to(device).eval().requires_grad_(False)
    features, labels = extract(model, examples, processor, cfg)
    log.info("probe features: %d x %d (%s)", features.shape[0], features.shape[1], cfg.probe.features)
    head, history = fit_head(features, labels, cfg)
    probe_dir = save_head(head, history, cfg, out)
    result = TrainResult(cfg.objective, str(out), str(probe_dir), len(examples), len(history), None,
                         history[-1]["loss"], history)
    write_summary(result, out)
    return result
