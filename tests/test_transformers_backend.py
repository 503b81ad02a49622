"""The transformers backend on tiny random Qwen2-VL and LLaVA-1.5 checkpoints, loaded like real ones.

Random weights answer gibberish: these tests assert order, determinism, prefixes, token counts, finish reasons,
logprob shapes and error isolation, never wording.
"""

from __future__ import annotations

import filecmp
import logging

import pytest

pytest.importorskip("transformers")
pytest.importorskip("skimage")

from fakeclue_builder.backends.base import BackendSpec, Request, SamplingSpec, build_backend  # noqa: E402
from fakeclue_builder.backends.transformers_backend import TransformersBackend  # noqa: E402
from fakeclue_builder.tiny_vlms import make_tiny_llava, make_tiny_qwen2_vl  # noqa: E402

FAMILIES = ["qwen2_vl", "llava"]
MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is this image real or fake?"}]}]
PREFIX = "This is a"


@pytest.fixture(scope="session")
def tiny_vlm_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_vlms")
    return {"qwen2_vl": make_tiny_qwen2_vl(root / "qwen2_vl"), "llava": make_tiny_llava(root / "llava")}


@pytest.fixture(scope="session")
def photos():
    from PIL import Image
    from skimage import data

    return [Image.fromarray(f()).convert("RGB").resize((64, 64)) for f in (data.astronaut, data.chelsea, data.coffee)]


@pytest.fixture(scope="session")
def backends(tiny_vlm_dirs):
    """One loaded backend per family, shared (tests change batch_size on a copy of the spec only)."""
    loaded = {}
    for family, path in tiny_vlm_dirs.items():
        backend = TransformersBackend(BackendSpec(model=str(path), device="cpu", batch_size=3))
        backend.load()
        loaded[family] = backend
    yield loaded
    for backend in loaded.values():
        backend.close()


def _requests(photos, prefix=PREFIX, **sampling):
    spec = SamplingSpec(**{"max_tokens": 6, **sampling})
    return [Request(f"img{i}", image, MESSAGES, spec, response_prefix=prefix) for i, image in enumerate(photos)]


def _with_batch_size(backend: TransformersBackend, batch_size: int) -> TransformersBackend:
    """A second backend over the same loaded model with another batch size."""
    other = TransformersBackend(backend.spec.model_copy(update={"batch_size": batch_size}))
    other.processor, other.model, other.device = backend.processor, backend.model, backend.device
    return other


def test_tiny_builds_are_idempotent_and_deterministic(tiny_vlm_dirs, tmp_path):
    for family, make in (("qwen2_vl", make_tiny_qwen2_vl), ("llava", make_tiny_llava)):
        built = tiny_vlm_dirs[family]
        before = (built / "model.safetensors").stat().st_mtime_ns
        assert make(built) == built
        assert (built / "model.safetensors").stat().st_mtime_ns == before  # returned at once, nothing rewritten
        again = make(tmp_path / family)
        names = sorted(p.name for p in built.iterdir())
        assert names == sorted(p.name for p in again.iterdir())
        match, mismatch, errors = filecmp.cmpfiles(built, again, names, shallow=False)
        assert not mismatch and not errors, (family, mismatch, errors)


def test_tokenizer_knows_the_answer_sentences(backends):
    for backend in backends.values():
        tokenizer = backend.processor.tokenizer
        for sentence in ("This is a real image.", "This is a fake image."):
            ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(ids) == sentence
            assert len(ids) < len(sentence)  # merges were learnt from the corpus
        assert tokenizer.padding_side == "left"


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_answers_in_order_with_prefix(backends, photos, family):
    backend = backends[family]
    requests = _requests(photos)
    responses = backend.generate(requests)
    assert len(responses) == 3
    for response in responses:
        assert response.error is None and response.finish_reason in ("stop", "length")
        assert response.text.startswith(PREFIX)
        assert 1 <= response.tokens <= 6
    # order: each answer equals the answer to its request asked alone
    alone = [_with_batch_size(backend, 1).generate([r])[0].text for r in requests]
    assert [r.text for r in responses] == alone


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_is_deterministic_and_batch_size_independent(backends, photos, family):
    backend = backends[family]
    requests = _requests(photos, max_tokens=8)
    first, second = backend.generate(requests), backend.generate(requests)
    assert [r.text for r in first] == [r.text for r in second]
    # All prompts of one family have the same length here, so left padding adds no pad tokens and batch size 1
    # vs 3 must give the same greedy tokens (float32 on CPU). Mixed lengths are covered below.
    one_by_one = _with_batch_size(backend, 1).generate(requests)
    assert [r.text for r in one_by_one] == [r.text for r in first]
    assert [r.tokens for r in one_by_one] == [r.tokens for r in first]


@pytest.mark.parametrize("family", FAMILIES)
def test_left_padding_with_mixed_prompt_lengths(backends, photos, family):
    """Prompts of different lengths in one batch: left padding must keep each answer usable and the batch in order.

    With random weights, logits of padded and unpadded rows differ by float rounding and greedy argmax can flip on
    near ties, so only structure is asserted, plus equality for the longest prompt (which gets no padding)."""
    backend = backends[family]
    requests = _requests(photos, max_tokens=5)
    requests[0].messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Real?"}]}]
    requests[2].messages = [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "Is this image real or fake? Explain the evidence step by step."}]}]
    batched = backend.generate(requests)
    alone = _with_batch_size(backend, 1).generate(requests)
    assert all(r.error is None and r.text.startswith(PREFIX) and r.tokens >= 1 for r in batched)
    assert batched[2].text == alone[2].text


@pytest.mark.parametrize("family", FAMILIES)
def test_max_tokens_gives_length_and_token_count(backends, photos, family):
    # the tiny models never emit EOS within 3 tokens (checked for seed 0), so every answer runs to max_tokens
    responses = backends[family].generate(_requests(photos, prefix=None, max_tokens=3))
    for response in responses:
        assert response.finish_reason == "length"
        assert response.tokens == 3


@pytest.mark.parametrize("family", FAMILIES)
def test_logprobs_shape(backends, photos, family):
    responses = backends[family].generate(_requests(photos, max_tokens=4, logprobs=3))
    for response in responses:
        assert response.logprobs is not None and len(response.logprobs) == response.tokens
        for position in response.logprobs:
            assert 1 <= len(position) <= 3 and all(isinstance(t, str) for t in position)
            assert all(value <= 0.0 for value in position.values())
    assert backends[family].generate(_requests(photos[:1]))[0].logprobs is None


@pytest.mark.parametrize("family", FAMILIES)
def test_stop_string_cuts_the_continuation(backends, photos, family):
    backend = backends[family]
    plain = backend.generate(_requests(photos[:1], prefix=None, max_tokens=8))[0].text
    stop = plain[2:4]
    assert stop.strip(), plain
    cut = backend.generate(_requests(photos[:1], prefix=None, max_tokens=8, stop=[stop]))[0]
    assert cut.text == plain[: plain.find(stop)] and cut.finish_reason == "stop"


@pytest.mark.parametrize("family", FAMILIES)
def test_sampling_is_seeded(backends, photos, family):
    backend = backends[family]
    a = backend.generate(_requests(photos, max_tokens=8, temperature=1.5, seed=7))
    b = backend.generate(_requests(photos, max_tokens=8, temperature=1.5, seed=7))
    assert [r.text for r in a] == [r.text for r in b]


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_request_fails_alone(backends, photos, family, caplog):
    requests = _requests(photos)
    requests[1].image = "https://example.com/not-decoded.jpg"  # a string must never be fetched
    with caplog.at_level(logging.WARNING):
        responses = backends[family].generate(requests)
    assert responses[1].finish_reason == "error" and responses[1].text == ""
    assert "PIL" in responses[1].error
    for index in (0, 2):
        assert responses[index].error is None and responses[index].text.startswith(PREFIX)


@pytest.mark.parametrize("family", FAMILIES)
def test_text_only_request_drops_the_image_placeholder(backends, family):
    backend = backends[family]
    request = Request("text", None, MESSAGES, SamplingSpec(max_tokens=3))
    prompt = backend.prompt_text(request)
    assert "image" not in prompt.replace("this image", "")  # no image token left for a missing image
    assert backend.generate([request])[0].error is None


def test_json_schema_is_ignored_with_one_warning(backends, photos, caplog):
    backend = backends["llava"]
    backend._warned_json_schema = False
    requests = _requests(photos[:2])
    for request in requests:
        request.json_schema = {"type": "object"}
    with caplog.at_level(logging.WARNING):
        backend.generate(requests)
        backend.generate(requests)
    assert sum("json_schema" in record.getMessage() for record in caplog.records) == 1


def test_pixel_budget_reaches_the_qwen2_vl_image_processor(tiny_vlm_dirs):
    backend = TransformersBackend(BackendSpec(model=str(tiny_vlm_dirs["qwen2_vl"]), device="cpu",
                                              min_pixels=28 * 28, max_pixels=56 * 56))
    backend.load()
    size = backend.processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (28 * 28, 56 * 56)
    backend.close()
    assert backend.model is None


@pytest.mark.parametrize("trust", [False, True])
def test_trust_remote_code_passes_through(tiny_vlm_dirs, monkeypatch, trust):
    import transformers

    seen = []
    for name in ("AutoProcessor", "AutoModelForImageTextToText"):
        cls = getattr(transformers, name)
        original = cls.from_pretrained

        def spy(*args, _original=original, **kwargs):
            seen.append(kwargs)
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    spec = BackendSpec(model=str(tiny_vlm_dirs["llava"]), device="cpu", trust_remote_code=trust, revision=None)
    backend = build_backend(spec)
    assert isinstance(backend, TransformersBackend) and backend.model is None  # nothing heavy in __init__
    backend.load()
    assert len(seen) == 2 and all(kwargs["trust_remote_code"] is trust for kwargs in seen)
    backend.close()


def test_cuda_without_gpu_names_the_config_key(tiny_vlm_dirs):
    import torch

    from fakeclue_builder.config import ConfigError

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    backend = TransformersBackend(BackendSpec(model=str(tiny_vlm_dirs["llava"]), device="cuda"))
    with pytest.raises(ConfigError, match="annotate.annotators.judge.device"):
        backend.load(key="annotate.annotators.judge")
