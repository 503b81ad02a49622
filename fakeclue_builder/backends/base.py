"""Request / Response, the Backend protocol, the backend settings, and the lazy registry.

Every backend turns a list of `Request`s into the same number of `Response`s, in order. A failure of one
request is a `Response` with `error` set (failures are data); exceptions are for configuration problems
and for infrastructure that stays down after retries.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

REGISTRY = {
    "transformers": "fakeclue_builder.backends.transformers_backend:TransformersBackend",
    "vllm": "fakeclue_builder.backends.vllm_backend:VLLMBackend",
    "openai": "fakeclue_builder.backends.openai_backend:OpenAIBackend",
}


class SamplingSpec(BaseModel):
    """Sampling settings of one annotator (identical meaning on every backend)."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy (deterministic).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(256, ge=1, description="Most tokens generated per answer.")
    seed: int = Field(0, description="Sampling seed (a retry uses a new one derived from it).")
    stop: list[str] = Field(default_factory=list, description="Stop strings.")
    logprobs: int | None = Field(None, ge=0, description="Return the top-k log-probabilities per generated token.")


class BackendSpec(BaseModel):
    """How one model is served: what every backend reads from an annotator's YAML entry."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["transformers", "vllm", "openai"] = Field("transformers", description="Which backend serves it.")
    model: str = Field(..., description="Local model folder or Hub id (OpenAI backend: the served model name).")
    revision: str | None = Field(None, description="Hub revision to pin.")
    device: str = Field("auto", description="transformers: auto, cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="auto: bfloat16 on GPU, float32 on CPU.")
    batch_size: int = Field(8, ge=1, description="Requests per generate call (transformers) or per submission (vllm).")
    min_pixels: int | None = Field(None, ge=1, description="Smallest image size in pixels given to the model.")
    max_pixels: int | None = Field(None, ge=1, description="Largest image size in pixels (images are downscaled to fit).")
    trust_remote_code: bool = Field(False, description="Run the checkpoint's own code (InternVL2 needs it): explicit opt-in.")
    chat_template: str | None = Field(None, description="A chat template overriding the processor's (Jinja text).")
    # vLLM engine settings
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs per engine.")
    data_parallel_size: int = Field(1, ge=1, description="vllm: engines (one per GPU group) over the shards.")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="vllm: share of GPU memory for the engine.")
    max_model_len: int | None = Field(None, ge=1, description="vllm: context length.")
    hf_overrides: dict[str, Any] | None = Field(None, description="vllm: config overrides, e.g. DeepSeek-VL2's architectures.")
    mm_processor_kwargs: dict[str, Any] | None = Field(None, description="vllm: processor kwargs (e.g. max_pixels).")
    enable_prefix_caching: bool = Field(True, description="vllm: reuse the KV cache of shared prompt prefixes.")
    # OpenAI-compatible servers
    base_url: str | None = Field(None, description="openai: server URL, e.g. http://localhost:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable holding the key (never logged).")
    concurrency: int = Field(8, ge=1, description="openai: requests in flight.")
    timeout_s: float = Field(120.0, gt=0, description="openai: per-request timeout.")
    max_retries: int = Field(5, ge=0, description="openai: retries on 429 / 5xx / timeouts / connection errors.")


@dataclass
class Request:
    """One generation: an image, chat messages (OpenAI-style text parts; the image is attached by the backend),
    sampling, an optional assistant prefix the answer must continue, an optional JSON schema."""

    image_id: str
    image: Any  # PIL.Image.Image, already decoded and resized to the model's pixel budget (or None: text only)
    # OpenAI-style chat: [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]}];
    # the part {"type": "image"} marks where `image` goes, and each backend turns it into its own form
    messages: list[dict[str, Any]]
    sampling: SamplingSpec
    response_prefix: str | None = None
    json_schema: dict[str, Any] | None = None


@dataclass
class Response:
    text: str
    finish_reason: str | None = None  # stop | length | error
    tokens: int = 0  # generated tokens
    logprobs: list[dict[str, float]] | None = None  # per generated position: token -> logprob
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    spec: BackendSpec

    def generate(self, requests: list[Request]) -> list[Response]: ...

    def close(self) -> None: ...


def build_backend(spec: BackendSpec, key: str | None = None) -> Backend:
    """Instantiate the backend class registered for `spec.backend` (imported only now); `key` is the config
    path used in error messages (e.g. annotate.annotators.qwen2_vl)."""
    module_name, cls_name = REGISTRY[spec.backend].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(spec) if key is None else cls(spec, key=key)


def user_text(request: Request) -> str:
    """The text of the request's last user message (what model-specific prompt formats need)."""
    for message in reversed(request.messages):
        if message.get("role") == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return "\n".join(part["text"] for part in content if part.get("type") == "text")
    raise ValueError(f"request {request.image_id} has no user message")
