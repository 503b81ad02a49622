"""vLLM backend: `LLM.chat` over OpenAI-style conversations, one engine per process.

What each annotator family needs (vLLM's own examples and registry; see docs/FORMATS.md):
- Qwen2-VL (`Qwen2VLForConditionalGeneration`): no remote code; the image size budget goes in
  `mm_processor_kwargs={"min_pixels": ..., "max_pixels": ...}` (filled from the spec's min_pixels / max_pixels).
- InternVL2 (`InternVLChatModel`): the checkpoint ships remote code, so the annotator's YAML must opt in with
  `trust_remote_code: true` (never implied here). vLLM applies the tokenizer's chat template; generation stops on
  the template's turn tokens (`<|im_end|>` ...), which are added as `stop_token_ids` when the tokenizer has them.
- DeepSeek-VL2 (`DeepseekVLV2ForCausalLM`): its config.json names no architecture, so `hf_overrides` defaults to
  `{"architectures": ["DeepseekVLV2ForCausalLM"]}`; vLLM falls back to its bundled DeepSeek-VL2 chat template.

Scaling: this backend drives exactly one engine (`tensor_parallel_size` GPUs). `data_parallel_size` is not passed to
vLLM: the runner scales out by shard ranks, one process per GPU group, e.g. for 4 GPUs and TP=1
`CUDA_VISIBLE_DEVICES=$r fakeclue-builder annotate ... --rank $r --world-size 4` for r in 0..3.

The vLLM calls are isolated behind `llm_factory` (default `vllm.LLM`), so tests inject a recording fake; `vllm` is
imported only inside methods.
"""

from __future__ import annotations

import base64
import copy
import gc
import logging
from collections.abc import Callable
from typing import Any

from fakeclue_builder.backends.base import BackendSpec, Request, Response, SamplingSpec
from fakeclue_builder.config_base import ConfigError
from fakeclue_builder.images import encode_png

log = logging.getLogger(__name__)

DEEPSEEK_VL2_HF_OVERRIDES = {"architectures": ["DeepseekVLV2ForCausalLM"]}
# vLLM's InternVL2 example stops on these (those present in the tokenizer's vocabulary)
INTERNVL_STOP_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|end|>")
# errors after which the engine cannot answer anything: raised, not turned into per-request failures
FATAL_ERRORS = ("EngineDeadError",)


def _family(model: str) -> str:
    name = model.lower().replace("_", "-")
    if "deepseek-vl2" in name:
        return "deepseek-vl2"
    if "internvl" in name:
        return "internvl"
    if "qwen2-vl" in name or "qwen2.5-vl" in name:
        return "qwen2-vl"
    return "other"


def png_data_uri(image: Any) -> str:
    """A PIL image as a `data:image/png;base64,...` URI (lossless, so the model sees exactly the request image)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")


class VLLMBackend:
    """Requests -> Responses through one offline vLLM engine, created on the first `generate`."""

    def __init__(self, spec: BackendSpec, key: str = "annotate.annotators.<name>",
                 llm_factory: Callable[..., Any] | None = None):
        self.spec = spec
        self.key = key
        self.llm_factory = llm_factory
        self.family = _family(spec.model)
        self.llm: Any = None
        self._stop_token_ids: list[int] = []

    # ---- what vLLM receives -------------------------------------------------------------------------------------
    def engine_kwargs(self) -> dict[str, Any]:
        """Exactly the keyword arguments given to `vllm.LLM(**kwargs)`."""
        s = self.spec
        kwargs: dict[str, Any] = {
            "model": s.model,
            "trust_remote_code": s.trust_remote_code,
            "tensor_parallel_size": s.tensor_parallel_size,
            "gpu_memory_utilization": s.gpu_memory_utilization,
            "limit_mm_per_prompt": {"image": 1},
            "enable_prefix_caching": s.enable_prefix_caching,
            "dtype": s.dtype,
            "seed": 0,  # engine seed; each request's sampling seed is in its SamplingParams
        }
        if s.revision:
            kwargs["revision"] = s.revision
            kwargs["tokenizer_revision"] = s.revision
        if s.max_model_len is not None:
            kwargs["max_model_len"] = s.max_model_len
        mm_kwargs = self._mm_processor_kwargs()
        if mm_kwargs:
            kwargs["mm_processor_kwargs"] = mm_kwargs
        hf_overrides = s.hf_overrides
        if hf_overrides is None and self.family == "deepseek-vl2":
            hf_overrides = DEEPSEEK_VL2_HF_OVERRIDES
            log.info("%s: %s is DeepSeek-VL2; using hf_overrides=%s (its config.json names no architecture)",
                     self.key, s.model, hf_overrides)
        if hf_overrides:
            kwargs["hf_overrides"] = copy.deepcopy(hf_overrides)
        return kwargs

    def _mm_processor_kwargs(self) -> dict[str, Any]:
        s = self.spec
        merged = copy.deepcopy(s.mm_processor_kwargs or {})
        if self.family != "qwen2-vl":
            return merged  # other processors take no pixel budget; the request images are already resized
        for name in ("min_pixels", "max_pixels"):
            value = getattr(s, name)
            if value is None:
                continue
            if name in merged and merged[name] != value:
                raise ConfigError(f"{self.key}: {name}={value} disagrees with mm_processor_kwargs.{name}="
                                  f"{merged[name]}; set it in one place only")
            merged[name] = value
        return merged

    def sampling_params(self, sampling: SamplingSpec, json_schema: dict[str, Any] | None = None) -> Any:
        """vLLM's `SamplingParams` for one request (structured output when a JSON schema is given)."""
        SamplingParams, StructuredOutputsParams = _vllm_sampling_classes()
        kwargs: dict[str, Any] = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
            "stop": list(sampling.stop),
            "logprobs": sampling.logprobs,
        }
        if self._stop_token_ids:
            kwargs["stop_token_ids"] = list(self._stop_token_ids)
        if json_schema is not None:
            kwargs["structured_outputs"] = StructuredOutputsParams(json=json_schema)
        return SamplingParams(**kwargs)

    def messages(self, request: Request) -> list[dict[str, Any]]:
        """The request's chat for `LLM.chat`: the image part as a PNG data URI, the prefix as a final assistant turn."""
        uri: str | None = None
        images = 0
        out: list[dict[str, Any]] = []
        for message in request.messages:
            content = message["content"]
            if isinstance(content, list):
                parts = []
                for part in content:
                    if part.get("type") == "image":
                        if request.image is None:
                            raise ValueError(f"request {request.image_id} has an image part but no image")
                        uri = uri or png_data_uri(request.image)
                        images += 1
                        part = {"type": "image_url", "image_url": {"url": uri}}
                    parts.append(part)
                content = parts
            out.append({**message, "content": content})
        if images > 1:
            raise ValueError(f"request {request.image_id} has {images} image parts; the engine allows 1 per prompt")
        if request.image is not None and images == 0:
            raise ValueError(f"request {request.image_id} has an image but no {{'type': 'image'}} part to place it")
        if request.response_prefix:
            out.append({"role": "assistant", "content": request.response_prefix})
        return out

    # ---- generation ---------------------------------------------------------------------------------------------
    def _engine(self) -> Any:
        if self.llm is None:
            factory = self.llm_factory
            if factory is None:
                try:
                    import vllm
                except ImportError as e:
                    raise ConfigError(f"{self.key}.backend is 'vllm' but vllm is not importable ({e}); install it on a "
                                      "GPU machine with pip install '.[vllm]', or use backend: transformers") from e
                factory = vllm.LLM
            if self.spec.data_parallel_size > 1:
                log.info("%s: data_parallel_size=%d is realised as shard ranks (one process per GPU group with "
                         "--rank/--world-size); this process runs one engine", self.key, self.spec.data_parallel_size)
            kwargs = self.engine_kwargs()
            log.info("%s: starting vLLM engine %s", self.key, kwargs)
            self.llm = factory(**kwargs)
            if self.family == "internvl":
                self._stop_token_ids = self._internvl_stop_token_ids()
        return self.llm

    def _internvl_stop_token_ids(self) -> list[int]:
        try:
            vocab = self.llm.get_tokenizer().get_vocab()
        except Exception as e:  # a tokenizer without a vocabulary: rely on its EOS only
            log.warning("%s: cannot read the tokenizer vocabulary for stop tokens (%s)", self.key, e)
            return []
        return [vocab[t] for t in INTERNVL_STOP_TOKENS if t in vocab]

    def generate(self, requests: list[Request]) -> list[Response]:
        if not requests:
            return []
        llm = self._engine()
        _vllm_sampling_classes()  # a missing vllm is a configuration error, not a per-request failure
        responses: list[Response | None] = [None] * len(requests)
        prepared: dict[int, tuple[list[dict[str, Any]], Any]] = {}
        groups: dict[bool, list[int]] = {False: [], True: []}
        for i, request in enumerate(requests):
            try:
                prepared[i] = (self.messages(request), self.sampling_params(request.sampling, request.json_schema))
            except Exception as e:  # a bad image, schema or chat fails this request only
                responses[i] = _error_response(e)
                continue
            groups[bool(request.response_prefix)].append(i)
        size = self.spec.batch_size
        for prefilled, indices in groups.items():
            for start in range(0, len(indices), size):
                self._run(llm, indices[start:start + size], prepared, prefilled, requests, responses)
        return [r if r is not None else _error_response(RuntimeError("no output")) for r in responses]

    def _chat(self, llm: Any, conversations: list, params: list, prefilled: bool) -> list:
        kwargs: dict[str, Any] = {
            "sampling_params": params,
            "use_tqdm": False,
            "add_generation_prompt": not prefilled,
            "continue_final_message": prefilled,
        }
        if self.spec.chat_template:
            kwargs["chat_template"] = self.spec.chat_template
        outputs = llm.chat(conversations, **kwargs)
        if len(outputs) != len(conversations):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(conversations)} conversations")
        return outputs

    def _run(self, llm: Any, indices: list[int], prepared: dict, prefilled: bool,
             requests: list[Request], responses: list[Response | None]) -> None:
        conversations = [prepared[i][0] for i in indices]
        params = [prepared[i][1] for i in indices]
        try:
            outputs = self._chat(llm, conversations, params, prefilled)
        except Exception as e:
            _raise_if_fatal(e, self.key)
            log.warning("%s: vLLM chat over %d requests failed (%s: %s); retrying them one by one",
                        self.key, len(indices), type(e).__name__, e)
            for i, conversation, param in zip(indices, conversations, params):
                try:
                    responses[i] = _response(requests[i], self._chat(llm, [conversation], [param], prefilled)[0])
                except Exception as e1:
                    _raise_if_fatal(e1, self.key)
                    responses[i] = _error_response(e1)
            return
        for i, output in zip(indices, outputs):
            responses[i] = _response(requests[i], output)

    def close(self) -> None:
        """Drop the engine and give its GPU memory back (the next `generate` starts a new one)."""
        if self.llm is None:
            return
        self.llm = None
        gc.collect()
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _vllm_sampling_classes() -> tuple[Any, Any]:
    try:
        from vllm.sampling_params import SamplingParams, StructuredOutputsParams
    except ImportError as e:
        raise ConfigError(f"vllm's SamplingParams/StructuredOutputsParams are not importable ({e}); the vllm backend "
                          "needs vllm >= 0.12 (pip install '.[vllm]' on a GPU machine)") from e
    return SamplingParams, StructuredOutputsParams


def _raise_if_fatal(e: Exception, key: str) -> None:
    if type(e).__name__ in FATAL_ERRORS:
        raise RuntimeError(f"{key}: the vLLM engine died ({type(e).__name__}: {e}); see the engine log above, "
                           "then rerun (finished shards are kept)") from e


def _response(request: Request, output: Any) -> Response:
    completion = output.outputs[0]
    text = completion.text
    if request.response_prefix:
        text = request.response_prefix + text
    logprobs = None
    if request.sampling.logprobs is not None and completion.logprobs is not None:
        logprobs = [_position_logprobs(position) for position in completion.logprobs]
    extra: dict[str, Any] = {}
    prompt_ids = getattr(output, "prompt_token_ids", None)
    if prompt_ids is not None:
        extra["prompt_tokens"] = len(prompt_ids)
    return Response(text=text, finish_reason=completion.finish_reason, tokens=len(completion.token_ids or ()),
                    logprobs=logprobs, extra=extra)


def _position_logprobs(position: dict[int, Any] | None) -> dict[str, float]:
    """{token_id: Logprob} -> {decoded token: logprob}; two ids decoding alike keep the higher logprob."""
    out: dict[str, float] = {}
    for token_id, lp in (position or {}).items():
        token = lp.decoded_token if lp.decoded_token is not None else str(token_id)
        out[token] = max(out.get(token, float("-inf")), float(lp.logprob))
    return out


def _error_response(e: Exception) -> Response:
    return Response(text="", finish_reason="error", error=f"{type(e).__name__}: {e}")
