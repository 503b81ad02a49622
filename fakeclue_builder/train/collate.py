"""Batches for FakeVLM training: the shared chat format, processor tokens, loss on the answer only.

Text comes from `chat.render_example` (the function `evaluate` shares): prompt = the templated question ending
where the assistant's answer begins, completion = the answer (+ the tokenizer's EOS, which LLaVA's template does not
append). Labels are the input ids with every prompt position (image tokens included) and every padding position set
to -100, so the loss covers the answer tokens and the EOS only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fakeclue_builder import chat
from fakeclue_builder.config_base import ConfigError

IGNORE_INDEX = -100


def target_answer(answer: str, label: int, objective: str) -> str:
    """What the model must say: the caption (explanation) or just 'real'/'fake' (label_only)."""
    if objective == "label_only":
        return "real" if label == 1 else "fake"
    return answer


def completion_text(processor: Any, answer: str, question: str, chat_template: str | None = None) -> tuple[str, str]:
    """(prompt, completion) via the shared chat format, the completion closed by the tokenizer's EOS."""
    prompt, completion = chat.render_example(processor, answer, question, chat_template)
    eos = processor.tokenizer.eos_token
    if eos and not completion.rstrip().endswith(eos):
        completion = completion.rstrip() + eos
    return prompt, completion


def _prefix_length(prompt_ids: list[int], full_ids: list[int]) -> int:
    """Tokens of `full_ids` that belong to the prompt (the common prefix; a boundary merge counts as answer)."""
    n = 0
    for a, b in zip(prompt_ids, full_ids):
        if a != b:
            break
        n += 1
    return n


def pixel_tensor(encoded: dict):
    """The processor's pixel values as one float32 tensor."""
    import numpy as np
    import torch

    return torch.as_tensor(np.asarray(encoded["pixel_values"]), dtype=torch.float32)


def pad_right(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """(input ids, labels) rows -> right-padded input_ids, attention_mask, labels (padding labelled -100)."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, row_labels) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(row_labels)
        attention[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def pad_id(processor: Any) -> int:
    tokenizer = processor.tokenizer
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@dataclass
class AnswerOnlyCollator:
    """processor -> input_ids, attention_mask, pixel_values, labels (prompt and padding = -100), right-padded."""

    processor: Any
    objective: str = "explanation"
    max_length: int = 1024
    chat_template: str | None = None

    def texts(self, items: list[dict]) -> tuple[list[str], list[str]]:
        prompts, fulls = [], []
        for item in items:
            answer = target_answer(item["answer"], item["label"], self.objective)
            prompt, completion = completion_text(self.processor, answer, item["question"], self.chat_template)
            prompts.append(prompt)
            fulls.append(prompt + completion)
        return prompts, fulls

    def _encode(self, texts: list[str], images: list) -> dict:
        return self.processor(images=images, text=texts, padding=False, return_tensors=None)

    def __call__(self, items: list[dict]) -> dict[str, Any]:
        images = [item["image"] for item in items]
        prompts, fulls = self.texts(items)
        full = self._encode(fulls, images)
        prompt_ids = self._encode(prompts, images)["input_ids"]
        rows = []
        for ids, p_ids in zip(full["input_ids"], prompt_ids):
            ids = list(ids)
            n_prompt = _prefix_length(list(p_ids), ids)
            if n_prompt >= self.max_length:
                raise ConfigError(f"the prompt alone is {n_prompt} tokens (image tokens included), over "
                                  f"train.max_length {self.max_length}; raise train.max_length")
            ids = ids[: self.max_length]
            labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
            rows.append((ids, labels))
        return {**pad_right(rows, pad_id(self.processor)), "pixel_values": pixel_tensor(full)}


@dataclass
class PromptCollator:
    """The prompt only (what evaluate feeds), right-padded, with labels 0/1 for the linear probe."""

    processor: Any
    chat_template: str | None = None

    def __call__(self, items: list[dict]) -> dict[str, Any]:
        import torch

        images = [item["image"] for item in items]
        prompts = [chat.render_prompt(self.processor, item["question"], self.chat_template) for item in items]
        encoded = self.processor(images=images, text=prompts, padding=False, return_tensors=None)
        rows = [(list(ids), list(ids)) for ids in encoded["input_ids"]]
        batch = pad_right(rows, pad_id(self.processor))
        batch.pop("labels")
        batch["pixel_values"] = pixel_tensor(encoded)
        batch["class_labels"] = torch.tensor([item["label"] for item in items], dtype=torch.long)
        return batch
