"""Categorize: an EVA-02 ImageNet classifier (timm) splits rows without a category into animal / human /
object / scene, as the FakeClue authors did for GenImage and Chameleon.

Per image, the class probabilities are summed per category through the committed class -> category table
(`imagenet_categories`); the best category wins if its summed probability reaches `min_confidence`,
otherwise the row is flagged `cate_uncertain` and the configured fallback applies (never a guess).
Rows whose category is known from their source (FF++, satellite, doc, FakeClue imports) pass through.
Images are decoded and transformed in a thread pool one batch ahead of the model, so decoding overlaps
inference.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

from fakeclue_builder.config import CategorizeConfig, ConfigError
from fakeclue_builder.records import Row

log = logging.getLogger(__name__)

LOCAL_DIR = "local-dir:"


@dataclass
class Timings:
    """Where categorize spends its time (decode is summed over threads; model and wall are wall-clock)."""

    images: int = 0
    decode_s: float = 0.0
    model_s: float = 0.0
    wait_s: float = 0.0  # time the model loop waited for decoded images (the cost of decoding not hidden)


@dataclass
class Classifier:
    """A loaded timm model, its eval transform, and the category of every output class."""

    model: Any
    transform: Any
    device: Any
    dtype: Any
    name: str
    category_names: tuple[str, ...]
    class_to_category: Any  # LongTensor [num_classes] -> index into category_names
    draft_size: int = 1024  # JPEGs are decoded (DCT-scaled) no smaller than this before the transform resizes
    timings: Timings = field(default_factory=Timings)


def check_config(cfg: CategorizeConfig) -> None:
    """Fail before any work on paths that cannot load (the CLI turns this into exit 2)."""
    if cfg.checkpoint_path is not None and not cfg.checkpoint_path.is_file():
        raise ConfigError(f"categorize.checkpoint_path {cfg.checkpoint_path} does not exist; point it at a "
                          ".safetensors/.pth file, or run 'fakeclue-builder models make-tiny DIR' for a test model")
    if cfg.model.startswith(LOCAL_DIR):
        directory = Path(cfg.model[len(LOCAL_DIR):])
        if not (directory / "config.json").is_file():
            raise ConfigError(f"categorize.model {cfg.model}: {directory} has no config.json (a timm/HF model "
                              "folder); run 'fakeclue-builder models make-tiny DIR' or download the checkpoint there")


def _device_and_dtype(cfg: CategorizeConfig):
    import torch

    from fakeclue_builder.devices import resolve_device_dtype

    device, dtype = resolve_device_dtype(cfg.device, cfg.dtype, "categorize", gpu_dtype="bfloat16")
    return torch.device(device), getattr(torch, dtype)


def load_classifier(cfg: CategorizeConfig) -> Classifier:
    """Build the timm model the way a real run does (hub tag, local-dir: folder, or checkpoint file)."""
    import timm
    import torch
    from timm.data import create_transform, infer_imagenet_subset, resolve_model_data_config

    from fakeclue_builder.imagenet_categories import CATEGORIES, class_categories

    check_config(cfg)
    device, dtype = _device_and_dtype(cfg)
    kwargs = dict(cfg.model_kwargs)
    if cfg.pretrained_cfg_overlay:
        kwargs["pretrained_cfg_overlay"] = cfg.pretrained_cfg_overlay
    pretrained = cfg.model.startswith(LOCAL_DIR) or (cfg.pretrained and cfg.checkpoint_path is None)
    try:
        model = timm.create_model(cfg.model, pretrained=pretrained,
                                  checkpoint_path=str(cfg.checkpoint_path or ""), **kwargs)
    except Exception as e:  # hub unreachable, unknown name, shape mismatch, ...
        raise ConfigError(f"cannot load categorize.model {cfg.model!r}: {type(e).__name__}: {e}. Offline, point "
                          "categorize.model at 'local-dir:/path/to/model' or set categorize.checkpoint_path") from None
    model = model.eval().to(device=device, dtype=dtype)
    data_cfg = resolve_model_data_config(model)
    transform = create_transform(**data_cfg, is_training=False)
    draft_size = math.ceil(max(data_cfg["input_size"][1:]) / data_cfg.get("crop_pct", 1.0))
    names = class_categories(model.num_classes, subset=infer_imagenet_subset(model))
    index = {c: i for i, c in enumerate(CATEGORIES)}
    class_to_category = torch.tensor([index[c] for c in names], device=device)
    name = cfg.model + (f"@{cfg.checkpoint_path}" if cfg.checkpoint_path else "")
    log.info("categorize: %s on %s (%s), %d classes", name, device, dtype, model.num_classes)
    return Classifier(model, transform, device, dtype, name, tuple(CATEGORIES), class_to_category, draft_size)


def _decode(clf: Classifier, path: Path):
    """(tensor, seconds) for one blob, or (exception, seconds)."""
    from PIL import Image

    start = time.perf_counter()
    try:
        with Image.open(path) as img:
            img.draft("RGB", (clf.draft_size, clf.draft_size))  # JPEG: DCT-scaled decode, no larger than needed
            tensor = clf.transform(img.convert("RGB"))
        return tensor, time.perf_counter() - start
    except Exception as e:  # noqa: BLE001 - reported per row
        return e, time.perf_counter() - start


def _needs_model(row: Row) -> bool:
    return row.kept and row.cate is None


def _classify(cfg: CategorizeConfig, clf: Classifier, batch: list[Row], futures: list[Future | None]) -> list[Row]:
    import torch

    waited = time.perf_counter()
    decoded = [f.result() if f is not None else None for f in futures]
    if clf is not None:
        clf.timings.wait_s += time.perf_counter() - waited
    tensors, todo = [], []
    for row, result in zip(batch, decoded):
        if result is None:
            if row.kept and row.cate_source is None:
                row.cate_source = "source"
            continue
        value, seconds = result
        clf.timings.decode_s += seconds
        if isinstance(value, Exception):
            row.drop("decode_failed", f"{type(value).__name__}: {value}")
        else:
            tensors.append(value)
            todo.append(row)
    if todo:
        start = time.perf_counter()
        with torch.inference_mode():
            logits = clf.model(torch.stack(tensors).to(clf.device, clf.dtype)).float()
            probs = logits.softmax(dim=-1)
            if cfg.top_k is not None and cfg.top_k < probs.shape[-1]:
                kth = probs.topk(cfg.top_k, dim=-1).values[:, -1:]
                probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
            scores = torch.zeros(len(todo), len(clf.category_names), device=probs.device)
            scores.index_add_(1, clf.class_to_category, probs)
        clf.timings.model_s += time.perf_counter() - start
        clf.timings.images += len(todo)
        for row, row_scores in zip(todo, scores.cpu().tolist()):
            _decide(cfg, clf, row, row_scores)
    return batch


def _decide(cfg: CategorizeConfig, clf: Classifier, row: Row, scores: list[float]) -> None:
    row.cate_scores = {c: round(s, 6) for c, s in zip(clf.category_names, scores)}
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    row.cate_confidence = round(scores[best], 6)
    row.cate_model = clf.name
    if scores[best] >= cfg.min_confidence:
        row.cate, row.cate_source = clf.category_names[best], "classifier"
        return
    row.cate_uncertain = True
    detail = (f"best {clf.category_names[best]} at {scores[best]:.3f} < categorize.min_confidence="
              f"{cfg.min_confidence}")
    if cfg.fallback == "object":
        row.cate, row.cate_source = "object", "fallback"
    elif cfg.fallback == "drop":
        row.drop("low_cate_confidence", detail)
    else:
        row.drop("cate_needs_review", detail)


def run(cfg: CategorizeConfig, rows: Iterable[Row], run_dir: Path, classifier: Classifier | None = None,
        ) -> Iterator[Row]:
    """The stage: rows in, the same rows out (in order) with `cate` and its evidence filled in."""
    clf = classifier
    rows = iter(rows)
    with ThreadPoolExecutor(cfg.decode_workers, thread_name_prefix="categorize-decode") as pool:
        pending = None
        while batch := list(islice(rows, cfg.batch_size)):
            if clf is None and any(_needs_model(r) for r in batch):
                clf = load_classifier(cfg)
            futures = [pool.submit(_decode, clf, Path(run_dir) / r.blob) if _needs_model(r) else None for r in batch]
            if pending is not None:  # the model works on the previous batch while this one decodes
                yield from _classify(cfg, clf, *pending)
            pending = (batch, futures)
        if pending is not None:
            yield from _classify(cfg, clf, *pending)


class LazyClassifier:
    """Loads the model on first use and keeps it across shards (a no-op rerun never loads it)."""

    def __init__(self, cfg: CategorizeConfig):
        self.cfg, self.classifier = cfg, None

    def __call__(self, rows: Iterable[Row], run_dir: Path) -> Iterator[Row]:
        rows = list(rows)
        if self.classifier is None and any(_needs_model(r) for r in rows):
            self.classifier = load_classifier(self.cfg)
        return run(self.cfg, rows, run_dir, self.classifier)
