"""`train`: a tiny random LLaVA really trained on CPU on a 16-row fixture export (plus one bad row of each kind)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fakeclue_builder import chat
from fakeclue_builder.config_base import ConfigError
from fakeclue_builder.config_train import TrainConfig
from fakeclue_builder.train.collate import IGNORE_INDEX, AnswerOnlyCollator, completion_text
from fakeclue_builder.train.data import TrainExamples, load_export, load_fakeclue_json
from fakeclue_builder.train.trainer import gradient_accumulation

ROWS = 16
FAKE = "This is a fake image. The texture looks unnatural, the edges are blurry."
REAL = "This is a real image. The lighting is consistent, the shadows fall the same way."


def _png(i: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(i)
    pixels = (rng.random((40, 48, 3)) * 255).astype("uint8") if i % 2 == 0 else np.full((40, 48, 3), 100 + i, "uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def write_export(root: Path, rows: int = ROWS, bad_rows: bool = True) -> Path:
    """An export in the exact shape `fakeclue-builder export` writes (HF datasets Image + ClassLabel features)."""
    import datasets

    images = [{"bytes": _png(i), "path": f"{i}.png"} for i in range(rows)]
    labels = [i % 2 for i in range(rows)]
    answers = [REAL if i % 2 else FAKE for i in range(rows)]
    if bad_rows:  # one undecodable image, one empty answer: both skipped, neither fatal
        images += [{"bytes": b"not an image", "path": "bad.png"}, {"bytes": _png(99), "path": "empty.png"}]
        labels += [0, 1]
        answers += [FAKE, ""]
    n = len(images)
    features = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=["fake", "real"]),
        "cate": datasets.Value("string"), "question": datasets.Value("string"), "answer": datasets.Value("string"),
        "image_id": datasets.Value("string")})
    table = {"image": images, "label": labels, "cate": ["object"] * n, "question": [chat.QUESTION] * n,
             "answer": answers, "image_id": [f"img{i:03d}" for i in range(n)]}
    (root / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(table, features=features).to_parquet(root / "data" / "train-00000-of-00001.parquet")
    return root


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory) -> Path:
    return write_export(tmp_path_factory.mktemp("run") / "export")


@pytest.fixture(scope="session")
def processor(tiny_llava):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_llava)


def demo_config(model: Path, data: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(model=str(model), data=data, output_dir=out, per_device_batch_size=4, global_batch_size=8,
                    max_steps=6, learning_rate=5e-3, warmup_ratio=0.0, lr_scheduler="constant", bf16=False,
                    gradient_checkpointing=False, logging_steps=1, save_steps=3, device="cpu", dataloader_workers=0)
    return TrainConfig(**{**settings, **overrides})


def losses(result) -> list[float]:
    return [h["loss"] for h in result.log_history if "loss" in h]


# ---------------------------------------------------------------------------------------------- data, format


def test_export_rows_skip_bad_ones_with_a_count(export_dir, caplog):
    source = load_export(export_dir)
    assert len(source.texts) == ROWS + 1  # the empty answer is gone at indexing; the bad image is found on use
    assert "1 row(s) with an empty answer" in caplog.text
    examples = TrainExamples(source, chat.QUESTION)
    item = examples[ROWS]  # the undecodable image: skipped, the next good row served instead
    assert item["image_id"] == "img000" and item["image"].mode == "RGB"
    assert "img016" in caplog.text and "image unreadable" in caplog.text
    assert examples[3]["answer"] == REAL and examples[3]["label"] == 1


def test_images_come_from_the_right_row_group(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 12
    table = pa.table({"image": [{"bytes": _png(i), "path": f"{i}.png"} for i in range(n)],
                      "label": [i % 2 for i in range(n)], "answer": [REAL if i % 2 else FAKE for i in range(n)],
                      "image_id": [f"r{i}" for i in range(n)]})
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "train-00000-of-00002.parquet", row_group_size=5)
    pq.write_table(table.slice(0, 3), tmp_path / "data" / "train-00001-of-00002.parquet")
    source = load_export(tmp_path, cache_size=1)
    assert len(source.texts) == n + 3 and source.image_bytes.locations[7] == (0, 1, 2)
    for index in (11, 0, 7, 13, 5):  # out of order: row groups are re-read through the 1-entry cache
        assert source.image_bytes(index) == _png(index % n), index


def test_missing_export_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="run `fakeclue-builder export` first"):
        load_export(tmp_path / "nowhere")


def test_fakeclue_json_source(tmp_path):
    root = tmp_path / "images"
    (root / "genimage" / "fake").mkdir(parents=True)
    (root / "genimage" / "fake" / "a.png").write_bytes(_png(0))
    records = [{"image": "genimage/fake/a.png", "label": 0, "cate": "object", "conversations": [
        {"from": "human", "value": "<image>" + chat.QUESTION}, {"from": "gpt", "value": FAKE}]},
        {"image": "genimage/fake/b.png", "label": 0, "conversations": [{"from": "human", "value": "x"}]}]
    (tmp_path / "train.json").write_text(json.dumps(records))
    source = load_fakeclue_json(tmp_path / "train.json", root)
    assert [t.answer for t in source.texts] == [FAKE] and source.texts[0].question == chat.QUESTION
    assert TrainExamples(source, chat.QUESTION)[0]["image"].size == (48, 40)


def test_prompt_tokens_masked_answer_tokens_not(processor, export_dir):
    examples = TrainExamples(load_export(export_dir), chat.QUESTION)
    items = [examples[0], examples[1], examples[2]]
    items[2] = {**items[2], "answer": FAKE + " Extra evidence makes this answer the longest."}
    batch = AnswerOnlyCollator(processor)(items)
    tok = processor.tokenizer
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    for row, item in enumerate(items):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        answer_part = tok.decode(ids[labels != IGNORE_INDEX])
        assert answer_part.strip() == item["answer"] + tok.eos_token  # the answer and EOS, nothing else
        prompt_part = tok.decode(ids[(labels == IGNORE_INDEX) & (mask == 1)], skip_special_tokens=False)
        assert prompt_part.endswith("ASSISTANT:") and chat.QUESTION in prompt_part
        assert (ids[labels == IGNORE_INDEX] == image_id).sum() > 0  # image tokens are prompt, masked
        assert (labels[mask == 0] == IGNORE_INDEX).all()  # padding masked
    assert (batch["attention_mask"][0] == 0).any()  # the shorter rows really were padded


def test_label_only_answer_is_just_the_verdict(processor, export_dir):
    examples = TrainExamples(load_export(export_dir), chat.QUESTION)
    batch = AnswerOnlyCollator(processor, objective="label_only")([examples[0], examples[1]])
    tok = processor.tokenizer
    assert [tok.decode(batch["input_ids"][r][batch["labels"][r] != IGNORE_INDEX]).strip() for r in (0, 1)] == [
        "fake" + tok.eos_token, "real" + tok.eos_token]


def test_training_format_is_the_one_evaluate_uses(processor):
    from PIL import Image

    from fakeclue_builder.backends.base import BackendSpec, Request, SamplingSpec
    from fakeclue_builder.backends.transformers_backend import TransformersBackend
    from fakeclue_builder.train import collate

    assert collate.chat is chat  # training imports the shared module and calls chat.render_example
    prompt, completion = completion_text(processor, FAKE, chat.QUESTION)
    assert (prompt, completion) == (chat.render_example(processor, FAKE, chat.QUESTION)[0],
                                    chat.render_example(processor, FAKE, chat.QUESTION)[1].rstrip()
                                    + processor.tokenizer.eos_token)
    # evaluate's inference path: Request(messages=chat.question_messages(question)) rendered by the backend
    backend = TransformersBackend(BackendSpec(model="unused"))
    backend.processor = processor
    request = Request(image_id="x", image=Image.new("RGB", (8, 8)), messages=chat.question_messages(chat.QUESTION),
                      sampling=SamplingSpec())
    assert backend.prompt_text(request) == prompt == chat.render_prompt(processor, chat.QUESTION)


def test_gradient_accumulation_is_derived_or_refused():
    assert gradient_accumulation(256, 32, 8) == 1
    assert gradient_accumulation(256, 4, 8) == 8
    with pytest.raises(ConfigError, match="not a multiple of per_device_batch_size 32 x world size 3"):
        gradient_accumulation(256, 32, 3)
