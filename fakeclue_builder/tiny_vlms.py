"""Tiny random vision-language models (Qwen2-VL, LLaVA-1.5) saved the way real checkpoints are.

Each folder holds a config, safetensors weights, a locally trained ~400-token byte-level BPE tokenizer with the
family's special tokens and chat template, and the family's processor, so that `AutoProcessor.from_pretrained(dir)` and
`AutoModelForImageTextToText.from_pretrained(dir)` load it offline exactly like a Hub checkpoint. Outputs are gibberish
by design: tests built on them assert structure, shapes and determinism, never wording.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

TOKENIZER_CORPUS = [
    "This is a real image.",
    "This is a fake image.",
    "The image is real. The image is fake. It is a real photo, not a fake one.",
    "Evidence: the lighting is consistent, the shadows fall the same way, the texture of the skin looks natural.",
    "Evidence: the fur texture looks unnatural, the edges are blurry, the background is distorted.",
    "The hands have extra fingers, the text is garbled, the reflections do not match the scene.",
    "Artifacts: smooth skin, warped lines, repeated patterns, inconsistent perspective and color bleeding.",
    "Is this image real or fake? Answer with real or fake and explain the evidence.",
    "A person, a cat, a dog, a car, a building, a face, eyes, hair, sky, tree, water, road, document.",
    "You are a helpful assistant. Describe the picture and give your reasoning step by step.",
]
VOCAB_SIZE = 400

QWEN2_VL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                     "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# The chat template of Qwen/Qwen2-VL-2B-Instruct.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
# The chat template of llava-hf/llava-1.5-7b-hf (plain-string contents accepted too).
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

HIDDEN = 32
IMAGE_SIZE = 56  # LLaVA's CLIP input; Qwen2-VL's smallest image (56 x 56 = 16 patches of 14 = 4 merged tokens)


def _train_bpe(specials: list[str], bos: str | None = None):
    """A byte-level BPE (~400 tokens) trained on TOKENIZER_CORPUS; `bos` is prepended to every encoding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    # The full byte alphabet is given up front, so symbol ids do not depend on which bytes the corpus happens to
    # use; with it, trainings in separate processes gave identical tokenizer.json files (checked 6 times). The
    # alphabet must not go into special_tokens: single characters there would be split out of every text.
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, initial_alphabet=alphabet,
                                  show_progress=False)
    bpe.train_from_iterator(TOKENIZER_CORPUS, trainer=trainer)
    if bos is not None:
        bpe.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bpe.token_to_id(bos))])
    else:
        bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    return bpe


def _fast_tokenizer(bpe, chat_template: str, **special):
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, chat_template=chat_template, **special)
    tokenizer.padding_side = "left"
    return tokenizer


def _is_built(out_dir: Path) -> bool:
    return all((out_dir / name).is_file() for name in
               ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json"))


def _save(model, processor, out_dir: Path) -> Path:
    """Write model + processor into a scratch folder beside `out_dir`, then move it into place (atomic-ish)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(work, safe_serialization=True)
        processor.save_pretrained(work)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.replace(out_dir)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return out_dir


def make_tiny_qwen2_vl(out_dir: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2-VL (hidden 32) with a Qwen2VLProcessor; returns `out_dir` (a complete folder is kept)."""
    import torch
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    out_dir = Path(out_dir)
    if _is_built(out_dir):
        return out_dir
    bpe = _train_bpe(QWEN2_VL_SPECIALS)
    tokenizer = _fast_tokenizer(bpe, QWEN2_VL_CHAT_TEMPLATE, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                additional_special_tokens=QWEN2_VL_SPECIALS[1:])
    ids = {tok: bpe.token_to_id(tok) for tok in QWEN2_VL_SPECIALS}
    heads = 2
    head_dim = HIDDEN // heads
    text_config = {
        "vocab_size": bpe.get_vocab_size(), "hidden_size": HIDDEN, "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": 2, "num_attention_heads": heads, "num_key_value_heads": heads,
        "max_position_embeddings": 1024, "max_window_layers": 2,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},  # sums to head_dim / 2
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
    }
    assert sum(text_config["rope_scaling"]["mrope_section"]) == head_dim // 2
    vision_config = {"depth": 2, "embed_dim": HIDDEN, "hidden_size": HIDDEN, "mlp_ratio": 2, "num_heads": heads,
                     "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    config = Qwen2VLConfig(text_config=text_config, vision_config=vision_config,
                           image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                           vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    image_processor = Qwen2VLImageProcessor(min_pixels=IMAGE_SIZE * IMAGE_SIZE, max_pixels=4 * IMAGE_SIZE * IMAGE_SIZE)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN2_VL_CHAT_TEMPLATE)
    _save(model, processor, out_dir)
    log.info("tiny Qwen2-VL saved to %s", out_dir)
    return out_dir


def make_tiny_llava(out_dir: Path, seed: int = 0) -> Path:
    """A 2-layer LLaVA-1.5 (CLIP vision 56 px, Llama text, hidden 32) with a LlavaProcessor; returns `out_dir`."""
    import torch
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    out_dir = Path(out_dir)
    if _is_built(out_dir):
        return out_dir
    bpe = _train_bpe(LLAVA_SPECIALS, bos="<s>")
    tokenizer = _fast_tokenizer(bpe, LLAVA_CHAT_TEMPLATE, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                pad_token="<pad>", additional_special_tokens=["<image>"])
    ids = {tok: bpe.token_to_id(tok) for tok in LLAVA_SPECIALS}
    patch = 14
    vision_config = {"model_type": "clip_vision_model", "hidden_size": HIDDEN, "intermediate_size": 2 * HIDDEN,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": IMAGE_SIZE, "patch_size": patch,
                     "projection_dim": HIDDEN}
    text_config = {"model_type": "llama", "vocab_size": bpe.get_vocab_size(), "hidden_size": HIDDEN,
                   "intermediate_size": 2 * HIDDEN, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "num_key_value_heads": 2, "max_position_embeddings": 1024, "bos_token_id": ids["<s>"],
                   "eos_token_id": ids["</s>"], "pad_token_id": ids["<pad>"]}
    config = LlavaConfig(vision_config=vision_config, text_config=text_config, image_token_index=ids["<image>"],
                         image_seq_length=(IMAGE_SIZE // patch) ** 2, vision_feature_select_strategy="default",
                         vision_feature_layer=-2)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["</s>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    # num_additional_image_tokens=1: CLIP's CLS token, which the "default" strategy drops again.
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_CHAT_TEMPLATE, image_token="<image>")
    _save(model, processor, out_dir)
    log.info("tiny LLaVA-1.5 saved to %s", out_dir)
    return out_dir


TINY_VLMS = {"qwen2_vl": make_tiny_qwen2_vl, "llava": make_tiny_llava}
