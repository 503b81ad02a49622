"""DiffusersRunner on a tiny random Stable Diffusion (+ ControlNet) built once per session: real diffusers loading
and inference on CPU; assertions on sizes, determinism, seed routing, grouping, config errors and provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakeclue_builder.config import ConfigError, DiffusionGenerator, SatelliteGenerator
from fakeclue_builder.synth.diffusion import (SEGMENTATION_PALETTE, DiffusersRunner, batches, canny_map,
                                              segmentation_map, size_multiple_of_8)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    from fakeclue_builder.synth.tiny_diffusers import make_tiny_controlnet, make_tiny_sd

    root = tmp_path_factory.mktemp("tiny-diffusers")
    sd = make_tiny_sd(root / "sd")
    return {"sd": sd, "controlnet": make_tiny_controlnet(root / "controlnet", sd)}


@pytest.fixture(scope="session")
def tiles() -> list[Image.Image]:
    from skimage import data

    return [Image.fromarray(data.astronaut()).resize((64, 64)), Image.fromarray(data.coffee()).resize((64, 64)),
            Image.fromarray(data.chelsea()).resize((64, 64))]


def _diffusion(sd: Path, **kw) -> DiffusionGenerator:
    base = {"kind": "diffusion", "model": str(sd), "prompts": ["x"], "device": "cpu", "steps": 2,
            "height": 32, "width": 32, "batch_size": 4}
    return DiffusionGenerator.model_validate({**base, **kw})


def _satellite(sd: Path, **kw) -> SatelliteGenerator:
    base = {"kind": "satellite", "model": str(sd), "device": "cpu", "steps": 4, "batch_size": 4}
    return SatelliteGenerator.model_validate({**base, **kw})


@pytest.fixture(scope="module")
def txt2img(tiny_models) -> DiffusersRunner:
    runner = DiffusersRunner(_diffusion(tiny_models["sd"], negative_prompt="blurry"), "txt2img")
    runner.load()
    return runner


@pytest.fixture(scope="module")
def img2img(tiny_models) -> DiffusersRunner:
    runner = DiffusersRunner(_satellite(tiny_models["sd"]), "img2img")
    runner.load()
    return runner


class PipeSpy:
    """Records the keyword arguments of every pipeline call, then runs the real pipeline."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.pipe(**kwargs)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# ---------------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("pipeline,task,expected", [
    ("StableDiffusionPipeline", "txt2img", "StableDiffusionPipeline"),
    ("auto", "txt2img", "StableDiffusionPipeline"),
    ("AutoPipelineForText2Image", "txt2img", "StableDiffusionPipeline"),
    ("StableDiffusionImg2ImgPipeline", "img2img", "StableDiffusionImg2ImgPipeline"),
    ("auto", "img2img", "StableDiffusionImg2ImgPipeline"),
])
def test_loads_through_from_pretrained(tiny_models, pipeline, task, expected):
    runner = DiffusersRunner(_diffusion(tiny_models["sd"], pipeline=pipeline), task)
    assert runner.pipe is None  # nothing loaded at construction
    runner.load()
    assert type(runner.pipe).__name__ == expected
    assert runner.pipe.safety_checker is None
    assert runner.provenance()["pipeline"] == expected


def test_tiny_models_are_idempotent_and_deterministic(tiny_models, tmp_path):
    from fakeclue_builder.synth.tiny_diffusers import make_tiny_sd

    stamp = (tiny_models["sd"] / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert make_tiny_sd(tiny_models["sd"]) == tiny_models["sd"]
    assert (tiny_models["sd"] / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    again = make_tiny_sd(tmp_path / "sd")
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors", "tokenizer/tokenizer.json"):
        assert (again / part).read_bytes() == (tiny_models["sd"] / part).read_bytes(), part
    assert json.loads((again / "tokenizer" / "tokenizer_config.json").read_text())["model_max_length"] == 77


# ---------------------------------------------------------------------------------------------- txt2img


def test_txt2img_size_and_seeds(txt2img):
    first = txt2img.txt2img(["a red car", "a red car"], [7, 8])
    again = txt2img.txt2img(["a red car"], [7])
    assert [im.size for im in first] == [(32, 32), (32, 32)] and first[0].mode == "RGB"
    assert first[0].tobytes() == again[0].tobytes()  # same seed, same bytes
    assert first[0].tobytes() != first[1].tobytes()  # another seed, another image


def test_txt2img_batches_of_batch_size_and_seed_routing(txt2img, monkeypatch):
    spy = PipeSpy(txt2img.pipe)
    monkeypatch.setattr(txt2img, "pipe", spy)
    prompts, seeds = ["a", "b", "c", "d", "e"], [1, 2, 3, 4, 5]
    together = txt2img.txt2img(prompts, seeds)
    assert [len(c["prompt"]) for c in spy.calls] == [4, 1]  # batch_size 4
    call = spy.calls[0]
    assert [g.initial_seed() for g in call["generator"]] == seeds[:4]  # one generator per image
    assert call["negative_prompt"] == ["blurry"] * 4 and call["num_inference_steps"] == 2
    assert (call["height"], call["width"]) == (32, 32)
    alone = [txt2img.txt2img([p], [s])[0] for p, s in zip(prompts[:2], seeds[:2])]
    for batched, single in zip(together, alone):  # neighbours do not matter (up to float rounding, see module doc)
        diff = np.abs(_pixels(batched) - _pixels(single))
        assert diff.max() <= 2 and (diff > 0).mean() < 0.01


def test_initial_noise_depends_only_on_own_seed(txt2img, monkeypatch):
    """The exact half of batch independence: each image's starting latents come from its own generator."""
    seen = []
    original = txt2img.pipe.prepare_latents

    def record(*args, **kwargs):
        latents = original(*args, **kwargs)
        seen.append(latents.clone())
        return latents

    monkeypatch.setattr(txt2img.pipe, "prepare_latents", record)
    txt2img.txt2img(["a", "b"], [11, 12])
    txt2img.txt2img(["b"], [12])
    txt2img.txt2img(["a"], [11])
    assert seen[0][1].equal(seen[1][0]) and seen[0][0].equal(seen[2][0])


def test_txt2img_rejects_controlnet(tiny_models):
    spec = _satellite(tiny_models["sd"], mode="txt2img", controlnet={"model": str(tiny_models["controlnet"])})
    runner = DiffusersRunner(spec, "txt2img")
    with pytest.raises(ConfigError, match="img2img"):
        runner.check()
    with pytest.raises(ConfigError, match="img2img"):
        runner.txt2img(["x"], [0])


# ---------------------------------------------------------------------------------------------- img2img


def test_img2img_sizes_and_determinism(img2img, tiles):
    odd = tiles[1].resize((61, 50))  # -> 64 x 48
    out = img2img.img2img([tiles[0], odd], ["urban", "natural"], [0.6, 0.6], [3, 4])
    assert [im.size for im in out] == [(64, 64), (64, 48)]
    again = img2img.img2img([tiles[0]], ["urban"], [0.6], [3])
    other = img2img.img2img([tiles[0]], ["urban"], [0.6], [5])
    assert again[0].tobytes() == out[0].tobytes() and other[0].tobytes() != out[0].tobytes()
    assert out[0].tobytes() != tiles[0].tobytes()


def test_img2img_groups_by_strength_and_keeps_order(img2img, tiles, monkeypatch):
    spy = PipeSpy(img2img.pipe)
    monkeypatch.setattr(img2img, "pipe", spy)
    strengths, seeds = [0.5, 0.9, 0.5], [1, 2, 3]
    mixed = img2img.img2img(tiles, ["a", "b", "c"], strengths, seeds)
    assert sorted((c["strength"], len(c["image"])) for c in spy.calls) == [(0.5, 2), (0.9, 1)]
    assert [[g.initial_seed() for g in c["generator"]] for c in spy.calls] == [[1, 3], [2]]
    alone = [img2img.img2img([t], [p], [s], [seed])[0] for t, p, s, seed in zip(tiles, "abc", strengths, seeds)]
    assert mixed[1].tobytes() == alone[1].tobytes()  # strength 0.9 ran alone in both cases: exact
    for batched, single in zip(mixed, alone):  # in input order, each from its own seed and strength
        diff = np.abs(_pixels(batched) - _pixels(single))
        assert diff.max() <= 2 and (diff > 0).mean() < 0.01


def test_img2img_rejects_bad_lengths_and_strengths(img2img, tiles):
    with pytest.raises(ValueError, match="lengths"):
        img2img.img2img(tiles[:2], ["a"], [0.5, 0.5], [1, 2])
    with pytest.raises(ValueError, match="strength"):
        img2img.img2img(tiles[:1], ["a"], [0.0], [1])


@pytest.mark.parametrize("conditioning", ["canny", "segmentation"])
def test_controlnet_img2img(tiny_models, tiles, conditioning, monkeypatch):
    spec = _satellite(tiny_models["sd"], steps=2, controlnet={"model": str(tiny_models["controlnet"]),
                                                               "conditioning": conditioning, "scale": 0.8})
    runner = DiffusersRunner(spec, "img2img")
    runner.load()
    assert type(runner.pipe).__name__ == "StableDiffusionControlNetImg2ImgPipeline"
    provenance = runner.provenance()
    assert provenance["controlnet_model"] == str(tiny_models["controlnet"])
    assert provenance["controlnet_conditioning"] == conditioning and provenance["controlnet_scale"] == "0.8"
    spy = PipeSpy(runner.pipe)
    monkeypatch.setattr(runner, "pipe", spy)
    out = runner.img2img(tiles[:2], ["a", "b"], [0.7, 0.7], [1, 2])
    assert [im.size for im in out] == [(64, 64), (64, 64)]
    call = spy.calls[0]
    assert call["controlnet_conditioning_scale"] == 0.8
    make_map = canny_map if conditioning == "canny" else segmentation_map
    assert [m.tobytes() for m in call["control_image"]] == [make_map(t).tobytes() for t in tiles[:2]]


def test_controlnet_conditioning_changes_the_image(tiny_models, tiles, monkeypatch):
    spec = _satellite(tiny_models["sd"], steps=2, controlnet={"model": str(tiny_models["controlnet"])})
    runner = DiffusersRunner(spec, "img2img")
    canny = runner.img2img(tiles[:1], ["a"], [0.7], [1])[0]
    monkeypatch.setattr(runner.controlnet, "conditioning", "segmentation")
    segmented = runner.img2img(tiles[:1], ["a"], [0.7], [1])[0]
    monkeypatch.setattr(runner.controlnet, "scale", 0.0)
    unconditioned = runner.img2img(tiles[:1], ["a"], [0.7], [1])[0]
    assert len({canny.tobytes(), segmented.tobytes(), unconditioned.tobytes()}) == 3


def test_conditioning_maps(tiles):
    edges = np.asarray(canny_map(tiles[0]))
    assert edges.shape == (64, 64, 3) and set(np.unique(edges)) <= {0, 255} and edges.any()
    assert (edges[..., 0] == edges[..., 2]).all()
    seg = segmentation_map(tiles[0])
    assert seg.tobytes() == segmentation_map(tiles[0]).tobytes()  # seeded
    colours = {tuple(c) for c in np.asarray(seg).reshape(-1, 3)}
    assert 1 < len(colours) <= len(SEGMENTATION_PALETTE) and colours <= set(SEGMENTATION_PALETTE)


def test_helpers():
    assert size_multiple_of_8((64, 64)) == (64, 64) and size_multiple_of_8((61, 50)) == (64, 48)
    assert size_multiple_of_8((3, 3)) == (8, 8)
    assert list(batches(["a", "b", "a", "a", "b"], 2)) == [[0, 2], [3], [1, 4]]


# ---------------------------------------------------------------------------------------------- config errors


def test_check_missing_model_dir(tmp_path):
    runner = DiffusersRunner(_diffusion(tmp_path / "nowhere"), "txt2img", key="synthesize.generators.2")
    with pytest.raises(ConfigError, match=r"synthesize\.generators\.2\.model .*does not exist.*make-tiny"):
        runner.check()


def test_check_dir_without_model_index(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"generators\.N\.model .*no model_index\.json"):
        DiffusersRunner(_diffusion(tmp_path / "empty"), "txt2img").check()


def test_check_unknown_pipeline_class(tiny_models):
    runner = DiffusersRunner(_diffusion(tiny_models["sd"], pipeline="StableDiffusionImg2ImgPipelin"), "img2img")
    with pytest.raises(ConfigError, match=r"pipeline=.*did you mean StableDiffusionImg2ImgPipeline.*'auto'"):
        runner.check()


def test_check_pipeline_that_cannot_do_the_task(tiny_models):
    with pytest.raises(ConfigError, match="cannot do img2img"):
        DiffusersRunner(_diffusion(tiny_models["sd"], pipeline="StableDiffusionPipeline"), "img2img").check()


def test_check_cuda_without_gpu(tiny_models):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    runner = DiffusersRunner(_diffusion(tiny_models["sd"], device="cuda"), "txt2img", key="synthesize.generators.1")
    with pytest.raises(ConfigError, match=r"use --set synthesize\.generators\.1\.device=cpu"):
        runner.check()


def test_loading_error_names_model_and_fix(tiny_models, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text((tiny_models["sd"] / "model_index.json").read_text())
    runner = DiffusersRunner(_diffusion(broken), "txt2img")
    runner.check()  # the folder looks right; its components are missing
    with pytest.raises(ConfigError, match=rf"cannot load .*model '{broken}'.*make-tiny"):
        runner.load()


def test_provenance_keys(txt2img, tiny_models):
    info = txt2img.provenance()
    assert set(info) == {"pipeline", "task", "model", "revision", "diffusers_version", "torch_dtype", "device",
                         "steps", "guidance_scale", "negative_prompt"}
    assert info["revision"] == "unpinned" and info["torch_dtype"] == "float32" and info["device"] == "cpu"
    assert info["model"] == str(tiny_models["sd"]) and info["steps"] == "2"
    assert all(isinstance(v, str) for v in info.values())
