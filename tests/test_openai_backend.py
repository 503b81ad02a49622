"""OpenAIBackend against a real, scripted HTTP server on 127.0.0.1 (no network, no `openai` package)."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest
from PIL import Image

from fakeclue_builder.backends.base import BackendSpec, Request, SamplingSpec, build_backend
from fakeclue_builder.backends.openai_backend import OpenAIBackend
from fakeclue_builder.config import ConfigError

SECRET = "sk-TEST-s3cr3t-0123456789abcdef"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON, bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: Any


def ok(text: str = "real", finish_reason: str = "stop", tokens: int = 3, logprobs: Any = None) -> Reply:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return Reply(body={"id": "x", "object": "chat.completion", "choices": [choice],
                       "usage": {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}})


class ScriptedServer:
    """Records every call; `script(index, call) -> Reply` decides each answer; tracks requests in flight."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.script: Callable[[int, Call], Reply] = lambda index, call: ok()
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                call = Call(self.path, dict(self.headers.items()), json.loads(raw))
                with server.lock:
                    index = len(server.calls)
                    server.calls.append(call)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.script(index, call)
                    time.sleep(reply.delay_s)
                finally:  # done before answering: a client may send its next request as soon as it reads this one
                    with server.lock:
                        server.in_flight -= 1
                try:
                    body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                    self.send_response(reply.status)
                    for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)


@pytest.fixture
def server():
    scripted = ScriptedServer()
    scripted.thread.start()
    yield scripted
    scripted.httpd.shutdown()
    scripted.httpd.server_close()
    scripted.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def make_backend(base_url: str | None, sleeps: list[float] | None = None, **overrides: Any) -> OpenAIBackend:
    spec = BackendSpec(backend="openai", model="served-vlm", base_url=base_url,
                       **{"max_retries": 3, "timeout_s": 5.0, "concurrency": 4, **overrides})
    return OpenAIBackend(spec, sleep=(sleeps.append if sleeps is not None else lambda s: None))


def make_request(text: str = "Is this image real or fake?", image: Any = "default", **kwargs: Any) -> Request:
    if image == "default":
        image = Image.new("RGB", (12, 8), (200, 30, 40))
    content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": text}]
    kwargs.setdefault("sampling", SamplingSpec())
    return Request(image_id=text, image=image, messages=[{"role": "user", "content": content}], **kwargs)


def generate_one(backend: OpenAIBackend, request: Request | None = None):
    try:
        return backend.generate([request or make_request()])[0]
    finally:
        backend.close()


# ------------------------------------------------------------------------------------------ payload / mapping


def test_payload_carries_image_sampling_prefill_and_schema(server):
    logprobs = {"content": [
        {"token": " fake", "logprob": -0.1, "top_logprobs": [{"token": " fake", "logprob": -0.1},
                                                              {"token": " real", "logprob": -2.4}]},
        {"token": ".", "logprob": -0.5, "top_logprobs": []},
    ]}
    server.script = lambda i, call: ok(" fake.", finish_reason="length", tokens=2, logprobs=logprobs)
    schema = {"type": "object", "properties": {"label": {"enum": ["real", "fake"]}}, "required": ["label"]}
    sampling = SamplingSpec(temperature=0.7, top_p=0.9, max_tokens=32, seed=7, stop=["\n\n"], logprobs=2)
    request = make_request(sampling=sampling, response_prefix="Answer:", json_schema=schema)

    response = generate_one(make_backend(server.base_url), request)

    assert response.error is None
    assert response.text == "Answer: fake."
    assert (response.finish_reason, response.tokens) == ("length", 2)
    assert response.logprobs == [{" fake": -0.1, " real": -2.4}, {".": -0.5}]
    (call,) = server.calls
    assert call.path == "/v1/chat/completions"
    body = call.body
    assert body["model"] == "served-vlm"
    assert {k: body[k] for k in ("temperature", "top_p", "max_tokens", "seed", "stop")} == {
        "temperature": 0.7, "top_p": 0.9, "max_tokens": 32, "seed": 7, "stop": ["\n\n"]}
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    user, assistant = body["messages"]
    image_part, text_part = user["content"]
    assert image_part["type"] == "image_url"
    uri = image_part["image_url"]["url"]
    assert uri.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert decoded.size == (12, 8) and decoded.getpixel((0, 0))[:3] == (200, 30, 40)
    assert text_part == {"type": "text", "text": "Is this image real or fake?"}
    assert assistant == {"role": "assistant", "content": "Answer:"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def test_plain_request_sends_no_optional_fields(server):
    response = generate_one(make_backend(server.base_url), make_request(image=None))
    assert response.text == "real" and response.logprobs is None
    body = server.calls[0].body
    for key in ("stop", "logprobs", "top_logprobs", "continue_final_message", "add_generation_prompt",
                "response_format"):
        assert key not in body
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Is this image real or fake?"}]}]


def test_authorization_header_only_when_env_var_set(server, monkeypatch):
    generate_one(make_backend(server.base_url))
    monkeypatch.setenv("MY_KEY", SECRET)
    generate_one(make_backend(server.base_url, api_key_env="MY_KEY"))
    without, with_key = ({k.lower(): v for k, v in call.headers.items()} for call in server.calls)
    assert "authorization" not in without
    assert with_key["authorization"] == f"Bearer {SECRET}"


def test_missing_base_url_is_a_config_error():
    spec = BackendSpec(backend="openai", model="m")
    with pytest.raises(ConfigError, match=r"annotate\.annotators\.judge\.base_url"):
        OpenAIBackend(spec, key="annotate.annotators.judge")


def test_registry_builds_it_and_generate_after_close_fails(server):
    backend = build_backend(BackendSpec(backend="openai", model="m", base_url=server.base_url))
    assert isinstance(backend, OpenAIBackend)
    backend.close()
    with pytest.raises(RuntimeError, match="after close"):
        backend.generate([make_request()])


# ------------------------------------------------------------------------------------------ retries


def test_429_with_retry_after_is_retried_once(server):
    server.script = lambda i, call: Reply(429, {"error": "slow down"}, {"Retry-After": "0"}) if i == 0 else ok()
    sleeps: list[float] = []
    response = generate_one(make_backend(server.base_url, sleeps))
    assert (response.text, response.error, response.extra["attempts"]) == ("real", None, 2)
    assert len(server.calls) == 2 and sleeps == [0.0]


def test_500_twice_then_ok_backs_off_exponentially(server):
    server.script = lambda i, call: Reply(500, {"error": "boom"}) if i < 2 else ok("fake")
    sleeps: list[float] = []
    response = generate_one(make_backend(server.base_url, sleeps))
    assert response.text == "fake" and response.error is None
    assert len(server.calls) == 3 and len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # base 0.5 s, doubling, equal jitter


def test_5xx_exhausted_reports_the_last_reason(server):
    server.script = lambda i, call: Reply(503, {"error": f"overloaded #{i}"})
    sleeps: list[float] = []
    response = generate_one(make_backend(server.base_url, sleeps, max_retries=2))
    assert len(server.calls) == 3 and len(sleeps) == 2
    assert (response.text, response.finish_reason) == ("", "error")
    assert response.error.startswith("HTTP 503") and "overloaded #2" in response.error


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried(server, status):
    server.script = lambda i, call: Reply(status, {"error": {"message": "unknown model served-vlm"}})
    sleeps: list[float] = []
    response = generate_one(make_backend(server.base_url, sleeps))
    assert len(server.calls) == 1 and sleeps == []
    assert (response.text, response.finish_reason) == ("", "error")
    assert response.error.startswith(f"HTTP {status}: ") and "unknown model served-vlm" in response.error


def test_timeouts_are_retried_then_reported(server):
    server.script = lambda i, call: Reply(200, ok().body, delay_s=0.8)  # longer than timeout_s
    sleeps: list[float] = []
    started = time.monotonic()
    response = generate_one(make_backend(server.base_url, sleeps, timeout_s=0.3, max_retries=2))
    assert len(server.calls) == 3 and len(sleeps) == 2
    assert response.finish_reason == "error" and "timeout" in response.error
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("body", [b"<html>bad gateway</html>", b'{"object": "chat.completion"}', b'{"choices": []}'])
def test_malformed_200_is_an_error_without_retry(server, body):
    server.script = lambda i, call: Reply(200, body)
    sleeps: list[float] = []
    response = generate_one(make_backend(server.base_url, sleeps))
    assert len(server.calls) == 1 and sleeps == []
    assert response.finish_reason == "error" and response.error.startswith("malformed response:")


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps: list[float] = []
    response = generate_one(make_backend(f"http://127.0.0.1:{port}/v1", sleeps, max_retries=2))
    assert len(sleeps) == 2
    assert response.finish_reason == "error" and response.error.startswith("connection error")
    assert response.extra["attempts"] == 3


# ------------------------------------------------------------------------------------------ secrets


def test_api_key_never_logged_nor_in_errors(server, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)

    seen: dict[str, int] = {}

    def echo(i: int, call: Call) -> Reply:
        auth = {k.lower(): v for k, v in call.headers.items()}["authorization"]
        question = call.body["messages"][0]["content"][-1]["text"]
        seen[question] = seen.get(question, 0) + 1
        status = 503 if seen[question] == 1 else 400  # a retried echo (logged), then a final one (the error)
        return Reply(status, f"invalid credentials: {auth} ({json.dumps(auth)})".encode())

    server.script = echo

    responses = make_backend(server.base_url).generate([make_request("a"), make_request("b")])
    assert len(server.calls) == 4
    for response in responses:
        assert response.error.startswith("HTTP 400") and "Bearer ***" in response.error
        assert SECRET not in response.error
    assert caplog.records and SECRET not in caplog.text
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert any("HTTP 503" in record.getMessage() for record in caplog.records)


# ------------------------------------------------------------------------------------------ concurrency


def test_concurrency_bounded_and_order_preserved(server):
    n = 12

    def answer(i: int, call: Call) -> Reply:
        text = call.body["messages"][0]["content"][-1]["text"]
        position = int(text.split("-")[1])
        reply = ok(f"answer-{position}")
        reply.delay_s = 0.02 + 0.01 * (n - position)  # later requests finish first
        return reply

    server.script = answer
    backend = make_backend(server.base_url, concurrency=3)
    try:
        responses = backend.generate([make_request(f"q-{k}", image=None) for k in range(n)])
    finally:
        backend.close()
    assert [r.text for r in responses] == [f"answer-{k}" for k in range(n)]
    assert len(server.calls) == n
    assert 2 <= server.max_in_flight <= 3
