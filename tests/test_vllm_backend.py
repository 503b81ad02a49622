"""The vLLM backend at its seam: the exact `LLM(...)`, `LLM.chat(...)` and `SamplingParams(...)` calls it makes.

vLLM cannot run a VLM on these machines, so the engine is a recording fake injected as `llm_factory`, and
`vllm.sampling_params` is a tiny stand-in module recording its kwargs; one test uses vLLM's real classes when
vllm is importable.
"""

from __future__ import annotations

import base64
import io
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fakeclue_builder.backends.base import BackendSpec, Request, SamplingSpec, build_backend
from fakeclue_builder.backends.vllm_backend import DEEPSEEK_VL2_HF_OVERRIDES, VLLMBackend
from fakeclue_builder.config_base import ConfigError

QWEN = "Qwen/Qwen2-VL-7B-Instruct"
INTERNVL = "OpenGVLab/InternVL2-8B"
DEEPSEEK = "deepseek-ai/deepseek-vl2-small"


# ---- fakes -------------------------------------------------------------------------------------------------------
@dataclass
class FakeSamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = 16
    seed: int | None = None
    stop: list[str] | None = None
    logprobs: int | None = None
    stop_token_ids: list[int] | None = None
    structured_outputs: Any = None


@dataclass
class FakeStructuredOutputsParams:
    json: Any = None


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in `vllm` / `vllm.sampling_params` (used even where the real vllm is installed)."""
    vllm = types.ModuleType("vllm")
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.SamplingParams = FakeSamplingParams
    sampling.StructuredOutputsParams = FakeStructuredOutputsParams
    vllm.sampling_params = sampling
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    return sampling


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str | None = "stop"
    logprobs: list[dict[int, Logprob]] | None = None


@dataclass
class RequestOutput:
    outputs: list[Completion]
    prompt_token_ids: list[int] = field(default_factory=lambda: [1, 2, 3])


class FakeTokenizer:
    def get_vocab(self):
        return {"hello": 5, "<|im_end|>": 92542, "<|im_start|>": 92543}


class FakeLLM:
    """Records `LLM(**kwargs)` and every `chat(...)`; answers with the conversation's last user text."""

    instances: list[FakeLLM] = []

    def __init__(self, fail_when: str | None = None, fail_batches: bool = False, **kwargs):
        self.kwargs = kwargs
        self.calls: list[dict[str, Any]] = []
        self.fail_when = fail_when  # a text whose presence makes any call containing it fail
        self.fail_batches = fail_batches  # every call with more than one conversation fails
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return FakeTokenizer()

    def chat(self, messages, sampling_params=None, **kwargs):
        self.calls.append({"messages": messages, "sampling_params": sampling_params, **kwargs})
        texts = [_user_text(conv) for conv in messages]
        if (self.fail_batches and len(messages) > 1) or (self.fail_when and self.fail_when in texts):
            raise RuntimeError("engine step failed")
        return [RequestOutput([Completion(f" answer to {t}", [7] * (3 + k),
                                          "length" if t.endswith("long") else "stop",
                                          [{7: Logprob(-0.1, 1, "a"), 8: Logprob(-2.5, 2, "b")}] * (3 + k))])
                for k, t in enumerate(texts)]


def _user_text(conversation):
    user = [m for m in conversation if m["role"] == "user"][-1]
    return next(p["text"] for p in user["content"] if p["type"] == "text")


def factory(**options):
    def make(**kwargs):
        return FakeLLM(**options, **kwargs)
    return make


def spec(model=QWEN, **kwargs) -> BackendSpec:
    return BackendSpec(backend="vllm", model=model, **kwargs)


def image(seed=0, size=(24, 16)) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def request(text="describe", prefix=None, schema=None, seed=0, img=None, **sampling) -> Request:
    return Request(image_id=text, image=img if img is not None else image(seed),
                   messages=[{"role": "system", "content": "You are an expert."},
                             {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}],
                   sampling=SamplingSpec(seed=seed, **sampling), response_prefix=prefix, json_schema=schema)


# ---- engine kwargs -----------------------------------------------------------------------------------------------
def test_engine_kwargs_qwen2_vl_puts_the_pixel_budget_in_mm_processor_kwargs():
    backend = VLLMBackend(spec(QWEN, min_pixels=3136, max_pixels=401408, max_model_len=8192, revision="abc123",
                               mm_processor_kwargs={"fps": 1}, dtype="bfloat16", tensor_parallel_size=2))
    assert backend.engine_kwargs() == {
        "model": QWEN, "revision": "abc123", "tokenizer_revision": "abc123", "trust_remote_code": False,
        "tensor_parallel_size": 2, "gpu_memory_utilization": 0.9, "max_model_len": 8192,
        "limit_mm_per_prompt": {"image": 1}, "enable_prefix_caching": True, "dtype": "bfloat16", "seed": 0,
        "mm_processor_kwargs": {"fps": 1, "min_pixels": 3136, "max_pixels": 401408},
    }


def test_engine_kwargs_qwen2_vl_conflicting_pixel_budget_is_a_config_error():
    backend = VLLMBackend(spec(QWEN, max_pixels=1000, mm_processor_kwargs={"max_pixels": 2000}), key="annotate.q")
    with pytest.raises(ConfigError, match="annotate.q: max_pixels"):
        backend.engine_kwargs()


def test_engine_kwargs_internvl2_trust_remote_code_only_when_the_spec_says_so():
    default = VLLMBackend(spec(INTERNVL, max_pixels=1000)).engine_kwargs()
    assert default["trust_remote_code"] is False
    assert "mm_processor_kwargs" not in default  # InternVL's processor takes no pixel budget
    opted_in = VLLMBackend(spec(INTERNVL, trust_remote_code=True)).engine_kwargs()
    assert opted_in["trust_remote_code"] is True
    assert opted_in["dtype"] == "auto" and "hf_overrides" not in opted_in and "revision" not in opted_in


def test_engine_kwargs_deepseek_vl2_gets_hf_overrides_by_default(caplog):
    with caplog.at_level("INFO"):
        kwargs = VLLMBackend(spec(DEEPSEEK)).engine_kwargs()
    assert kwargs["hf_overrides"] == {"architectures": ["DeepseekVLV2ForCausalLM"]}
    assert "hf_overrides" in caplog.text
    given = VLLMBackend(spec(DEEPSEEK, hf_overrides={"architectures": ["X"]})).engine_kwargs()
    assert given["hf_overrides"] == {"architectures": ["X"]}
    kwargs["hf_overrides"]["architectures"].append("mutated")
    assert DEEPSEEK_VL2_HF_OVERRIDES == {"architectures": ["DeepseekVLV2ForCausalLM"]}


def test_engine_is_created_lazily_once_with_engine_kwargs(fake_vllm):
    FakeLLM.instances.clear()
    backend = VLLMBackend(spec(DEEPSEEK, data_parallel_size=4), llm_factory=factory())
    assert FakeLLM.instances == []  # nothing heavy at init
    backend.generate([request("a")])
    backend.generate([request("b")])
    assert len(FakeLLM.instances) == 1
    assert FakeLLM.instances[0].kwargs == backend.engine_kwargs()
    assert "data_parallel_size" not in FakeLLM.instances[0].kwargs
    backend.close()
    assert backend.llm is None
    backend.close()  # idempotent


def test_registry_builds_the_vllm_backend():
    assert isinstance(build_backend(spec()), VLLMBackend)


# ---- sampling params ---------------------------------------------------------------------------------------------
def test_sampling_params_carry_every_setting_and_the_schema(fake_vllm):
    schema = {"type": "object", "properties": {"verdict": {"enum": ["real", "fake"]}}}
    params = VLLMBackend(spec()).sampling_params(
        SamplingSpec(temperature=0.7, top_p=0.9, max_tokens=99, seed=42, stop=["</s>"], logprobs=3), schema)
    assert params == FakeSamplingParams(temperature=0.7, top_p=0.9, max_tokens=99, seed=42, stop=["</s>"],
                                        logprobs=3, structured_outputs=FakeStructuredOutputsParams(json=schema))
    plain = VLLMBackend(spec()).sampling_params(SamplingSpec(), None)
    assert plain.structured_outputs is None and plain.temperature == 0.0 and plain.stop == []


def test_sampling_params_with_real_vllm_classes():
    pytest.importorskip("vllm")
    from vllm.sampling_params import SamplingParams, StructuredOutputsParams

    schema = {"type": "object", "properties": {"verdict": {"type": "string"}}, "required": ["verdict"]}
    params = VLLMBackend(spec()).sampling_params(
        SamplingSpec(temperature=0.0, max_tokens=64, seed=7, stop=["\n\n"], logprobs=2), schema)
    assert isinstance(params, SamplingParams)
    assert (params.temperature, params.max_tokens, params.seed, params.stop, params.logprobs) == (
        0.0, 64, 7, ["\n\n"], 2)
    assert isinstance(params.structured_outputs, StructuredOutputsParams)
    assert params.structured_outputs.json == schema


def test_missing_vllm_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", None)
    with pytest.raises(ConfigError, match="vllm"):
        VLLMBackend(spec(), key="annotate.annotators.qwen").generate([request()])


# ---- messages ----------------------------------------------------------------------------------------------------
def test_messages_carry_a_png_data_uri_that_decodes_to_the_request_image():
    img = image(3, size=(31, 17))
    messages = VLLMBackend(spec()).messages(request("what is fake?", img=img))
    assert messages[0] == {"role": "system", "content": "You are an expert."}
    image_part, text_part = messages[1]["content"]
    assert text_part == {"type": "text", "text": "what is fake?"}
    assert image_part["type"] == "image_url"
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.format == "PNG"
    assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(img))
    assert len(messages) == 2


def test_messages_prefix_becomes_a_final_assistant_turn():
    messages = VLLMBackend(spec()).messages(request(prefix="Verdict: fake. Evidence:"))
    assert messages[-1] == {"role": "assistant", "content": "Verdict: fake. Evidence:"}


# ---- generate ----------------------------------------------------------------------------------------------------
def test_generate_groups_prefilled_requests_and_maps_outputs_in_order(fake_vllm):
    schema = {"type": "object"}
    backend = VLLMBackend(spec(QWEN, chat_template="{{ messages }}"), llm_factory=factory())
    requests = [request("r0", seed=10, temperature=0.5, max_tokens=40, stop=["###"], logprobs=2),
                request("r1", prefix="The image is", seed=11),
                request("r2-long", seed=12, schema=schema),
                request("r3", prefix="Artifacts:", seed=13)]
    responses = backend.generate(requests)
    llm = backend.llm
    assert len(llm.calls) == 2
    plain, prefilled = llm.calls
    assert [_user_text(c) for c in plain["messages"]] == ["r0", "r2-long"]
    assert (plain["add_generation_prompt"], plain["continue_final_message"]) == (True, False)
    assert [_user_text(c) for c in prefilled["messages"]] == ["r1", "r3"]
    assert (prefilled["add_generation_prompt"], prefilled["continue_final_message"]) == (False, True)
    assert prefilled["messages"][0][-1] == {"role": "assistant", "content": "The image is"}
    for call in llm.calls:
        assert call["use_tqdm"] is False and call["chat_template"] == "{{ messages }}"
    p0, p2 = plain["sampling_params"]
    assert (p0.seed, p0.temperature, p0.max_tokens, p0.stop, p0.logprobs) == (10, 0.5, 40, ["###"], 2)
    assert p0.structured_outputs is None
    assert p2.seed == 12 and p2.structured_outputs == FakeStructuredOutputsParams(json=schema)
    assert [p.seed for p in prefilled["sampling_params"]] == [11, 13]

    assert [r.error for r in responses] == [None] * 4
    assert responses[0].text == " answer to r0" and responses[0].finish_reason == "stop"
    assert responses[0].tokens == 3 and responses[0].logprobs == [{"a": -0.1, "b": -2.5}] * 3
    assert responses[1].text == "The image is answer to r1"
    assert responses[2].text == " answer to r2-long" and responses[2].finish_reason == "length"
    assert responses[2].tokens == 4 and responses[2].logprobs is None  # not asked for
    assert responses[3].text.startswith("Artifacts:") and responses[3].tokens == 4
    assert responses[0].extra == {"prompt_tokens": 3}


def test_generate_without_chat_template_leaves_the_tokenizer_template(fake_vllm):
    backend = VLLMBackend(spec(QWEN), llm_factory=factory())
    backend.generate([request()])
    assert "chat_template" not in backend.llm.calls[0]


def test_generate_respects_batch_size(fake_vllm):
    backend = VLLMBackend(spec(QWEN, batch_size=2), llm_factory=factory())
    responses = backend.generate([request(f"r{i}") for i in range(5)])
    assert [len(c["messages"]) for c in backend.llm.calls] == [2, 2, 1]
    assert [r.text for r in responses] == [f" answer to r{i}" for i in range(5)]


def test_whole_call_failure_retries_one_by_one_and_only_the_bad_request_fails(fake_vllm, caplog):
    backend = VLLMBackend(spec(QWEN), llm_factory=factory(fail_when="bad"))
    with caplog.at_level("WARNING"):
        responses = backend.generate([request("ok0"), request("bad"), request("ok2")])
    assert [len(c["messages"]) for c in backend.llm.calls] == [3, 1, 1, 1]
    assert [r.text for r in responses] == [" answer to ok0", "", " answer to ok2"]
    assert responses[1].error == "RuntimeError: engine step failed" and responses[1].finish_reason == "error"
    assert responses[0].error is None and responses[2].error is None
    assert "retrying them one by one" in caplog.text


def test_batch_only_failure_recovers_every_request(fake_vllm):
    backend = VLLMBackend(spec(QWEN), llm_factory=factory(fail_batches=True))
    responses = backend.generate([request("a"), request("b", prefix="P:")])
    assert [r.error for r in responses] == [None, None]
    assert responses[1].text == "P: answer to b"


def test_a_request_that_cannot_be_built_fails_alone(fake_vllm):
    backend = VLLMBackend(spec(QWEN), llm_factory=factory())
    broken = request("no image")
    broken.image = None
    responses = backend.generate([request("fine"), broken])
    assert responses[0].error is None
    assert "has an image part but no image" in responses[1].error
    assert [_user_text(c) for c in backend.llm.calls[0]["messages"]] == ["fine"]


def test_dead_engine_is_raised_not_turned_into_data(fake_vllm):
    class EngineDeadError(Exception):
        pass

    class DeadLLM(FakeLLM):
        def chat(self, messages, sampling_params=None, **kwargs):
            raise EngineDeadError("EngineCore encountered an issue")

    backend = VLLMBackend(spec(QWEN), llm_factory=DeadLLM)
    with pytest.raises(RuntimeError, match="engine died"):
        backend.generate([request("a"), request("b")])


def test_internvl_stops_on_its_turn_tokens(fake_vllm):
    backend = VLLMBackend(spec(INTERNVL, trust_remote_code=True), llm_factory=factory())
    backend.generate([request()])
    params = backend.llm.calls[0]["sampling_params"][0]
    assert params.stop_token_ids == [92543, 92542]
    qwen = VLLMBackend(spec(QWEN), llm_factory=factory())
    qwen.generate([request()])
    assert qwen.llm.calls[0]["sampling_params"][0].stop_token_ids is None


def test_generate_of_nothing_starts_no_engine():
    backend = VLLMBackend(spec(QWEN), llm_factory=factory())
    assert backend.generate([]) == []
    assert backend.llm is None
