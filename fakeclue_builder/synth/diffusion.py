"""A diffusers pipeline behind one small seam: text-to-image and image-to-image (optionally ControlNet) calls
whose every image depends only on its own prompt, strength and seed.

`DiffusersRunner` checks a generator's config without loading anything, loads the pipeline lazily (an explicit
class by name, or the Auto pipelines), and calls it in batches with one seeded CPU `torch.Generator` per image,
so an image's noise is the same whatever batch it lands in. (Its pixels are too, up to the rounding of batched
float kernels: oneDNN convolutions, GEMMs and channels-last GroupNorm sum in batch-size-dependent order, which
moves a handful of pixels by one grey level. Reruns of the same shard batch identically, so they are exact.)
Images with different strengths or sizes never share a call.
ControlNet conditioning maps (canny edges, a k-means colour segmentation) are computed from the input tile.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Hashable, Iterator

from fakeclue_builder.config import ConfigError, DiffusionGenerator, SatelliteGenerator

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

TASKS = ("txt2img", "img2img")
AUTO_PIPELINES = {"txt2img": "AutoPipelineForText2Image", "img2img": "AutoPipelineForImage2Image"}
# ADE20K's first colours, so that a segmentation map looks like what segmentation ControlNets were trained on
SEGMENTATION_PALETTE = [(120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
                        (120, 120, 80), (140, 140, 140), (204, 5, 255)]
CANNY_THRESHOLDS = (100, 200)


def canny_map(image: Image.Image) -> Image.Image:
    """Canny edges of the grey tile as a 3-channel image (white edges on black)."""
    import cv2
    import numpy as np
    from PIL import Image

    grey = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, *CANNY_THRESHOLDS)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def segmentation_map(image: Image.Image, classes: int = len(SEGMENTATION_PALETTE), seed: int = 0,
                     iterations: int = 8, fit_pixels: int = 65536) -> Image.Image:
    """A k-means colour segmentation (seeded, fitted on at most `fit_pixels` pixels), clusters painted with a fixed
    palette in order of brightness, so the same tile always gives the same map."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    pixels = rgb.reshape(-1, 3)
    rng = np.random.default_rng(seed)
    sample = pixels[rng.choice(len(pixels), size=min(fit_pixels, len(pixels)), replace=False)]
    k = min(classes, len(SEGMENTATION_PALETTE), len(sample))
    centres = sample[rng.choice(len(sample), size=k, replace=False)].copy()
    for _ in range(iterations):
        labels = ((sample[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            members = sample[labels == j]
            if len(members):
                centres[j] = members.mean(0)
    labels = np.concatenate([((chunk[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
                             for chunk in np.array_split(pixels, max(1, len(pixels) // 65536))])
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(centres @ np.array([0.299, 0.587, 0.114], dtype=np.float32), kind="stable")] = np.arange(k)
    palette = np.array(SEGMENTATION_PALETTE[:k], dtype=np.uint8)
    return Image.fromarray(palette[rank[labels]].reshape(rgb.shape))


CONDITIONING = {"canny": canny_map, "segmentation": segmentation_map}


def size_multiple_of_8(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) rounded to the nearest multiple of 8 (at least 8); unchanged when already one."""
    return tuple(max(8, int(side / 8 + 0.5) * 8) for side in size)  # type: ignore[return-value]


def batches(keys: list[Hashable], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped by key (first-seen order), each group cut into runs of at most `batch_size`."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            yield indices[start:start + batch_size]


def _looks_local(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or Path(model).expanduser().exists()


class DiffusersRunner:
    """One generator's diffusers pipeline. Nothing is loaded until `load()` (or the first generation call).

    `key` is the generator's config path in messages, e.g. "synthesize.generators.0".
    """

    def __init__(self, spec: SatelliteGenerator | DiffusionGenerator, task: str, key: str = "synthesize.generators.N"):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {task!r}")
        self.spec, self.task, self.key = spec, task, key
        self.controlnet = getattr(spec, "controlnet", None)
        self.pipe: Any = None

    # ------------------------------------------------------------------------------------------ config

    def _device_and_dtype(self) -> tuple[str, str]:
        from fakeclue_builder.devices import resolve_device_dtype

        return resolve_device_dtype(self.spec.device, self.spec.dtype, self.key, gpu_dtype="float16")

    def _pipeline_class(self) -> type | None:
        """The explicitly named pipeline class (None for auto), checked against the task."""
        import diffusers

        name = self.spec.pipeline
        if name == "auto":
            return None
        cls = getattr(diffusers, name, None)
        if isinstance(cls, type) and name.startswith("AutoPipelineFor"):
            expected = AUTO_PIPELINES[self.task]
            if name != expected:
                raise ConfigError(f"{self.key}.pipeline={name} cannot do {self.task}; use 'auto' or {expected}")
            return cls  # the concrete class (and what it can do) comes from the model
        if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
            close = difflib.get_close_matches(name, [n for n in dir(diffusers) if n.endswith("Pipeline")], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{self.key}.pipeline={name!r} is not a diffusers pipeline class{hint}; set it to "
                              f"'auto' (the class comes from the model) or to a class diffusers "
                              f"{diffusers.__version__} has, e.g. StableDiffusionImg2ImgPipeline")
        call_params = inspect.signature(cls.__call__).parameters
        needed, example = (("strength", "StableDiffusionImg2ImgPipeline") if self.task == "img2img"
                           else ("height", "StableDiffusionPipeline"))
        if needed not in call_params:
            raise ConfigError(f"{self.key}.pipeline={name} cannot do {self.task}; use 'auto' or e.g. {example}")
        if self.controlnet is not None and "controlnet" not in inspect.signature(cls.__init__).parameters:
            raise ConfigError(f"{self.key}.pipeline={name} takes no ControlNet; use 'auto' or "
                              "StableDiffusionControlNetImg2ImgPipeline, or remove the controlnet section")
        return cls

    def check(self) -> None:
        """Config problems found without loading any weights (the CLI turns them into exit 2)."""
        model = self.spec.model
        if _looks_local(model) and not (Path(model).expanduser() / "model_index.json").is_file():
            what = "has no model_index.json" if Path(model).expanduser().is_dir() else "does not exist"
            raise ConfigError(f"{self.key}.model {model} {what} (a diffusers pipeline folder); run "
                              "'fakeclue-builder models make-tiny DIR' for a test model, or point it at a "
                              "downloaded checkpoint or a Hub id such as stabilityai/stable-diffusion-2-1")
        if self.controlnet is not None:
            if self.task == "txt2img":
                raise ConfigError(f"{self.key}.controlnet needs an input tile to condition on, so it needs "
                                  f"mode img2img; set {self.key}.mode=img2img or remove {self.key}.controlnet")
            cn_model = self.controlnet.model
            if _looks_local(cn_model) and not (Path(cn_model).expanduser() / "config.json").is_file():
                raise ConfigError(f"{self.key}.controlnet.model {cn_model} has no config.json (a ControlNetModel "
                                  "folder); point it at a downloaded ControlNet or a Hub id")
        self._pipeline_class()
        self._device_and_dtype()

    # ------------------------------------------------------------------------------------------ loading

    def load(self) -> None:
        """Load the pipeline once (explicit class or Auto pipeline, optional ControlNet) onto its device."""
        if self.pipe is not None:
            return
        self.check()
        import diffusers
        import torch
        import transformers

        diffusers.utils.logging.disable_progress_bar()  # the stage shows its own progress
        transformers.utils.logging.disable_progress_bar()

        device, dtype_name = self._device_and_dtype()
        dtype = _dtype_kwarg(getattr(torch, dtype_name))
        spec, kwargs = self.spec, {}
        if self.controlnet is not None:
            cn = self.controlnet
            with self._loading(f"{self.key}.controlnet.model", cn.model, cn.revision):
                kwargs["controlnet"] = diffusers.ControlNetModel.from_pretrained(cn.model, revision=cn.revision,
                                                                                 **dtype)
        cls = self._pipeline_class() or getattr(diffusers, AUTO_PIPELINES[self.task])
        with self._loading(f"{self.key}.model", spec.model, spec.revision):
            if issubclass(cls, diffusers.DiffusionPipeline):
                takes_checker = "safety_checker" in inspect.signature(cls.__init__).parameters
            else:  # an Auto pipeline: the concrete class comes from the model's model_index.json
                takes_checker = "safety_checker" in diffusers.DiffusionPipeline.load_config(
                    spec.model, revision=spec.revision)
            if takes_checker:
                kwargs.update(safety_checker=None, requires_safety_checker=False)
            pipe = cls.from_pretrained(spec.model, revision=spec.revision, **dtype, **kwargs)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(device)
        log.info("%s: %s from %s on %s (%s)", self.key, type(pipe).__name__, spec.model, device, dtype_name)

    @contextmanager
    def _loading(self, key: str, model: str, revision: str | None) -> Iterator[None]:
        """Turn any loading failure into a ConfigError that names the key, the model id and the fix."""
        try:
            yield
        except ConfigError:
            raise
        except Exception as e:  # hub unreachable, unknown revision, wrong folder layout, ...
            raise ConfigError(f"cannot load {key} {model!r} (revision {revision or 'unpinned'}): "
                              f"{type(e).__name__}: {e}. Offline, point {key} at a local diffusers folder (run "
                              "'fakeclue-builder models make-tiny DIR' for a test model); online, check the Hub id "
                              "and that the revision exists") from None

    # ------------------------------------------------------------------------------------------ generation

    def _call(self, prompts: list[str], seeds: list[int], **kwargs: Any) -> list[Image.Image]:
        import torch

        generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]
        negative = [self.spec.negative_prompt] * len(prompts) if self.spec.negative_prompt else None
        out = self.pipe(prompt=list(prompts), negative_prompt=negative, generator=generators, num_images_per_prompt=1,
                        num_inference_steps=self.spec.steps, guidance_scale=self.spec.guidance_scale,
                        output_type="pil", **kwargs)
        return [image.convert("RGB") for image in out.images]

    def txt2img(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        """One image per (prompt, seed), spec.height x spec.width, in input order."""
        if self.controlnet is not None:
            raise ConfigError(f"{self.key}.controlnet needs mode img2img (there is no input tile to condition on)")
        _same_lengths(prompts=prompts, seeds=seeds)
        self.load()
        results: list[Any] = [None] * len(prompts)
        for idx in batches([0] * len(prompts), self.spec.batch_size):
            images = self._call([prompts[i] for i in idx], [seeds[i] for i in idx],
                                height=self.spec.height, width=self.spec.width)
            for i, image in zip(idx, images):
                results[i] = image
        return results

    def img2img(self, images: list[Image.Image], prompts: list[str], strengths: list[float],
                seeds: list[int]) -> list[Image.Image]:
        """One image per (input, prompt, strength, seed), in input order. Inputs are resized to a multiple of 8
        (kept when already one); images of different strength or size are sent in different calls."""
        _same_lengths(images=images, prompts=prompts, strengths=strengths, seeds=seeds)
        for strength in strengths:
            if not 0.0 < strength <= 1.0:
                raise ValueError(f"img2img strength must be in (0, 1], got {strength}")
        self.load()
        inputs = [im.convert("RGB") for im in images]
        inputs = [im if im.size == size_multiple_of_8(im.size) else im.resize(size_multiple_of_8(im.size))
                  for im in inputs]
        results: list[Any] = [None] * len(inputs)
        keys = [(float(s), im.size) for s, im in zip(strengths, inputs)]
        for idx in batches(keys, self.spec.batch_size):
            kwargs: dict[str, Any] = {"image": [inputs[i] for i in idx], "strength": keys[idx[0]][0]}
            if self.controlnet is not None:
                make_map = CONDITIONING[self.controlnet.conditioning]
                kwargs["control_image"] = [make_map(inputs[i]) for i in idx]
                kwargs["controlnet_conditioning_scale"] = self.controlnet.scale
            for i, image in zip(idx, self._call([prompts[i] for i in idx], [seeds[i] for i in idx], **kwargs)):
                results[i] = image
        return results

    # ------------------------------------------------------------------------------------------ provenance

    def provenance(self) -> dict[str, str]:
        """What produced the images (recorded with every generated row)."""
        import diffusers

        device, dtype = self._device_and_dtype()
        if self.pipe is not None:
            device, dtype = str(self.pipe.device), str(self.pipe.dtype).removeprefix("torch.")
        spec = self.spec
        info = {
            "pipeline": type(self.pipe).__name__ if self.pipe is not None else spec.pipeline,
            "task": self.task,
            "model": spec.model,
            "revision": spec.revision or "unpinned",
            "diffusers_version": diffusers.__version__,
            "torch_dtype": dtype,
            "device": device,
            "steps": str(spec.steps),
            "guidance_scale": str(spec.guidance_scale),
            "negative_prompt": spec.negative_prompt or "",
        }
        if self.controlnet is not None:
            info.update(controlnet_model=self.controlnet.model,
                        controlnet_revision=self.controlnet.revision or "unpinned",
                        controlnet_conditioning=self.controlnet.conditioning,
                        controlnet_scale=str(self.controlnet.scale))
        return info


def _dtype_kwarg(dtype: Any) -> dict[str, Any]:
    """diffusers renamed from_pretrained's `torch_dtype` to `dtype` (the old name warns); older releases only know
    `torch_dtype`. The helper that resolves the two exists exactly where `dtype` is understood."""
    from diffusers.utils import deprecation_utils

    return {"dtype": dtype} if hasattr(deprecation_utils, "_resolve_dtype") else {"torch_dtype": dtype}


def _same_lengths(**lists: list) -> None:
    lengths = {name: len(values) for name, values in lists.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"one value per image is needed; got lengths {lengths}")
