"""Tiny random Stable Diffusion and ControlNet checkpoints, saved the way real diffusers checkpoints are.

`make_tiny_sd` writes a folder (model_index.json + one subfolder per component, safetensors weights) that
`StableDiffusionPipeline`, `StableDiffusionImg2ImgPipeline` and the Auto pipelines load with `from_pretrained`;
`make_tiny_controlnet` writes a `ControlNetModel` folder matching it. Outputs are noise by design: they let the
synthesize stage run its real loading and inference code offline on CPU (tests, demo profile).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

TOKENIZER_CORPUS = [
    "high-resolution satellite image of a dense city district, buildings, roads, cars, top-down view",
    "high-resolution aerial image of a suburban neighbourhood, houses, gardens, streets, top-down view",
    "high-resolution satellite image of natural land, forest, fields, river, top-down view",
    "a photo of a cat sitting on a wooden table next to a cup of coffee",
    "a portrait photograph of a smiling person in soft natural light",
    "a landscape with mountains, a lake and a cloudy sky at sunset",
    "blurry, low quality, watermark, text, distorted, cartoon, painting",
]
TEXT_HIDDEN = 32


def _train_tokenizer():
    """A byte-level BPE with CLIP's end-of-word suffix, trained on a few sentences; model_max_length=77."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bos, eos = "<|startoftext|>", "<|endoftext|>"
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=eos))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # Every end-of-word symbol is declared up front: the trainer would otherwise number them in hash-map order,
    # and its merge tie-breaks (by id) would differ from run to run. Declared, the vocabulary is reproducible.
    trainer = trainers.BpeTrainer(vocab_size=640, special_tokens=[bos, eos] + [c + "</w>" for c in alphabet],
                                  end_of_word_suffix="</w>", initial_alphabet=alphabet, show_progress=False)
    bpe.train_from_iterator(TOKENIZER_CORPUS, trainer=trainer)
    with tempfile.TemporaryDirectory() as raw:
        vocab_file, merges_file = bpe.model.save(raw)  # vocab.json, merges.txt
        vocab = json.loads(Path(vocab_file).read_text())
        merges = [tuple(line.split()) for line in Path(merges_file).read_text().splitlines()
                  if line and not line.startswith("#")]
    return CLIPTokenizer(vocab=vocab, merges=merges, bos_token=bos, eos_token=eos, pad_token=eos, unk_token=eos,
                         model_max_length=77)


def _replace_dir(work: Path, out_dir: Path) -> None:
    """Move a fully written folder into place (an incomplete earlier attempt is removed first)."""
    import shutil

    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.replace(out_dir)


def make_tiny_sd(out_dir: Path, seed: int = 0) -> Path:
    """A tiny random Stable Diffusion pipeline (UNet 32/64, VAE 32/64, CLIP text hidden 32, DDIM, no safety
    checker) saved with `save_pretrained` (safetensors). Returns `out_dir`; a complete folder is left as is."""
    out_dir = Path(out_dir)
    if (out_dir / "model_index.json").is_file() and (out_dir / "unet" / "config.json").is_file():
        return out_dir
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    work = out_dir.with_name(out_dir.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN, attention_head_dim=8, norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), layers_per_block=1, norm_num_groups=32,
    )
    torch.manual_seed(seed + 2)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, layer_norm_eps=1e-5,
    )
    text_encoder = CLIPTextModel(text_config)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(work, safe_serialization=True)
    _replace_dir(work, out_dir)
    log.info("tiny Stable Diffusion saved to %s", out_dir)
    return out_dir


def make_tiny_controlnet(out_dir: Path, sd_dir: Path, seed: int = 0) -> Path:
    """A ControlNet initialised from the tiny SD's UNet (`ControlNetModel.from_unet`), its conditioning embedding
    downsampling as far as the VAE does, saved with `save_pretrained` (safetensors). Returns `out_dir`."""
    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file() and (out_dir / "diffusion_pytorch_model.safetensors").is_file():
        return out_dir
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    sd_dir = make_tiny_sd(sd_dir)
    unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet")
    vae_blocks = len(json.loads((Path(sd_dir) / "vae" / "config.json").read_text())["block_out_channels"])
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 48, 64)[:vae_blocks])
    with torch.no_grad():  # zero convolutions get small random weights, so the conditioning map changes the output
        for module in (controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                       controlnet.controlnet_cond_embedding.conv_out):
            for param in module.parameters():
                param.normal_(0.0, 0.05)
    work = out_dir.with_name(out_dir.name + ".partial")
    controlnet.save_pretrained(work, safe_serialization=True)
    _replace_dir(work, out_dir)
    log.info("tiny ControlNet saved to %s", out_dir)
    return out_dir
