"""The transformers backend: any `AutoModelForImageTextToText` checkpoint, batched greedy/sampled generation.

Requests are grouped by their sampling settings (one `generate` call needs one setting), cut into batches of
`spec.batch_size`, and answered in their original order. A batch that raises is retried one request at a time,
so a request the processor or model rejects becomes an error `Response` while its neighbours succeed.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from fakeclue_builder.backends.base import BackendSpec, Request, Response, SamplingSpec

log = logging.getLogger(__name__)


def _is_pil_image(image: Any) -> bool:
    from PIL import Image

    return isinstance(image, Image.Image)


class TransformersBackend:
    """Serves one local or Hub checkpoint through transformers' Auto classes (loaded on first use)."""

    def __init__(self, spec: BackendSpec, key: str = "annotate.annotators.<name>") -> None:
        self.spec = spec
        self.key = key  # config path named in device errors
        self.processor: Any = None
        self.model: Any = None
        self.device: str | None = None
        self._warned_json_schema = False

    # ---- loading -------------------------------------------------------------------------------------------
    def load(self, key: str | None = None) -> None:
        """Load processor + model (once). `key` is the config path used in device/dtype error messages."""
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from fakeclue_builder.devices import resolve_device_dtype

        spec = self.spec
        device, dtype = resolve_device_dtype(spec.device, spec.dtype, key or self.key, gpu_dtype="bfloat16")
        common = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
        processor = AutoProcessor.from_pretrained(spec.model, **common)
        self._apply_pixel_budget(processor)
        tokenizer = getattr(processor, "tokenizer", processor)
        tokenizer.padding_side = "left"  # decoder-only batching: prompts end where generation starts
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForImageTextToText.from_pretrained(spec.model, dtype=getattr(torch, dtype), **common)
        self.model = model.to(device).eval()
        self.processor, self.device = processor, device
        log.info("loaded %s on %s (%s)", spec.model, device, dtype)

    def _apply_pixel_budget(self, processor: Any) -> None:
        """Give min_pixels/max_pixels to image processors that resize by pixel count (Qwen2-VL family)."""
        spec = self.spec
        if spec.min_pixels is None and spec.max_pixels is None:
            return
        image_processor = getattr(processor, "image_processor", None)
        size = getattr(image_processor, "size", None)
        if image_processor is None or not hasattr(image_processor, "merge_size") or size is None:
            log.info("%s: the image processor has no pixel budget; min/max_pixels apply upstream only", spec.model)
            return
        new_size = dict(size.items()) if hasattr(size, "items") else dict(vars(size))
        new_size = {k: v for k, v in new_size.items() if v is not None and k not in ("min_pixels", "max_pixels")}
        if spec.min_pixels is not None:
            new_size["shortest_edge"] = spec.min_pixels
        if spec.max_pixels is not None:
            new_size["longest_edge"] = spec.max_pixels
        image_processor.size = type(size)(**new_size) if not isinstance(size, dict) else new_size
        for name in ("min_pixels", "max_pixels"):
            if hasattr(image_processor, name) and getattr(spec, name) is not None:
                setattr(image_processor, name, getattr(spec, name))

    # ---- generation ----------------------------------------------------------------------------------------
    def generate(self, requests: list[Request]) -> list[Response]:
        """One `Response` per request, in order."""
        if not requests:
            return []
        self.load()
        responses: list[Response | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.sampling.model_dump_json(), []).append(index)
        size = self.spec.batch_size
        for indices in groups.values():
            for start in range(0, len(indices), size):
                batch = indices[start:start + size]
                for index, response in zip(batch, self._generate_batch([requests[i] for i in batch]), strict=True):
                    responses[index] = response
        return [r for r in responses if r is not None]

    def _generate_batch(self, batch: list[Request]) -> list[Response]:
        """Answer one batch; if it fails, answer its requests one by one so only the bad ones fail."""
        try:
            return self._run(batch)
        except Exception as exc:  # noqa: BLE001 - failures are data; retried singly below
            if len(batch) == 1:
                log.warning("request %s failed: %s", batch[0].image_id, exc)
                return [Response(text="", finish_reason="error", error=f"{type(exc).__name__}: {exc}")]
            log.warning("batch of %d failed (%s); retrying its requests one by one", len(batch), exc)
            return [response for request in batch for response in self._generate_batch([request])]

    def prompt_text(self, request: Request) -> str:
        """The templated prompt of one request, ending with the assistant turn (and its prefix, if any)."""
        messages = request.messages
        if request.image is None:  # text only: drop the image placeholders
            messages = [{**m, "content": [p for p in m["content"] if p.get("type") != "image"]}
                        if isinstance(m.get("content"), list) else m for m in messages]
        kwargs = {"chat_template": self.spec.chat_template} if self.spec.chat_template else {}
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)
        return text + (request.response_prefix or "")

    def _run(self, batch: list[Request]) -> list[Response]:
        import torch

        if any(r.json_schema for r in batch) and not self._warned_json_schema:
            log.warning("the transformers backend does not constrain output to a JSON schema; ignoring json_schema")
            self._warned_json_schema = True
        for request in batch:  # only decoded images: a string would make the processor open a path or URL
            if request.image is not None and not _is_pil_image(request.image):
                raise TypeError(f"request {request.image_id}: image is {type(request.image).__name__}, not a PIL image")
        texts = [self.prompt_text(r) for r in batch]
        images = [r.image for r in batch if r.image is not None]
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        sampling = batch[0].sampling  # a batch shares one sampling setting (see generate)
        gen_kwargs = self._generation_kwargs(sampling)
        torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **gen_kwargs)
        new_tokens = out.sequences[:, inputs["input_ids"].shape[1]:]
        logprobs = self._top_logprobs(out.logits, sampling.logprobs) if sampling.logprobs is not None else None
        return [self._response(request, new_tokens[row], None if logprobs is None else logprobs[row])
                for row, request in enumerate(batch)]

    def _generation_kwargs(self, sampling: SamplingSpec) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_tokens, "return_dict_in_generate": True,
                                  "output_logits": sampling.logprobs is not None,
                                  "pad_token_id": self._pad_id()}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _pad_id(self) -> int | None:
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        return tokenizer.pad_token_id

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = getattr(self.processor, "tokenizer", self.processor).eos_token_id
        return set(eos if isinstance(eos, list) else [eos]) - {None}

    def _top_logprobs(self, logits: tuple[Any, ...], k: int) -> list[list[dict[str, float]]]:
        """Per row, per generated position: the top-k tokens of the model's raw distribution -> logprob."""
        import torch

        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        k = max(k, 1)
        rows: list[list[dict[str, float]]] = [[] for _ in range(logits[0].shape[0])]
        for step in logits:
            values, ids = torch.log_softmax(step.float(), dim=-1).topk(k, dim=-1)
            for row, (row_values, row_ids) in enumerate(zip(values.tolist(), ids.tolist(), strict=True)):
                top: dict[str, float] = {}
                for value, token_id in zip(row_values, row_ids, strict=True):
                    top.setdefault(tokenizer.decode([token_id]), value)
                rows[row].append(top)
        return rows

    def _response(self, request: Request, tokens: Any, logprobs: list[dict[str, float]] | None) -> Response:
        """Decode one row's new tokens: stop at the first EOS, apply stop strings, set finish_reason."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        ids = tokens.tolist()
        eos = self._eos_ids()
        end = next((i for i, token_id in enumerate(ids) if token_id in eos), None)
        finish = "stop" if end is not None else "length"
        ids = ids[: end + 1] if end is not None else ids
        text = tokenizer.decode(ids, skip_special_tokens=True)
        cut = [text.find(s) for s in request.sampling.stop if s and s in text]
        if cut:
            text, finish = text[: min(cut)], "stop"
        if logprobs is not None:
            logprobs = logprobs[: len(ids)]
        return Response(text=(request.response_prefix or "") + text, finish_reason=finish, tokens=len(ids),
                        logprobs=logprobs)

    def close(self) -> None:
        """Free the model (and GPU memory)."""
        self.model = None
        self.processor = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is present whenever a model was loaded
            pass
