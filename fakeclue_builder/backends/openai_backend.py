"""A backend for OpenAI-compatible chat servers (vLLM `serve`, SGLang, llama.cpp, hosted APIs), over HTTP.

Standard library only: `urllib.request` for the calls, a `ThreadPoolExecutor` bounding the requests in flight.
Retries (exponential backoff with jitter, `Retry-After` honoured) happen only on HTTP 429, 5xx, timeouts and
connection errors. Every other failure -- other 4xx, a 200 whose body is not JSON or has no `choices` -- becomes
that request's error `Response` at once: a malformed 200 is a server or proxy bug that resending the same
request will not fix. The API key is read from the environment, sent only in the Authorization header and
redacted from every log line and error text (servers sometimes echo headers back in error bodies).
"""

from __future__ import annotations

import base64
import copy
import email.utils
import http.client
import io
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from fakeclue_builder.backends.base import BackendSpec, Request, Response
from fakeclue_builder.config import ConfigError

logger = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
ERROR_BODY_CHARS = 300


@dataclass
class _Failure:
    """One failed attempt: what to report, and whether sending the request again may help."""

    reason: str
    retryable: bool
    retry_after_s: float | None = None


def image_data_uri(image: Any) -> str:
    """A PIL image as a `data:image/png;base64,...` URI."""
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date), capped; None if absent/bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), BACKOFF_CAP_S)


def backoff_delay(attempt: int) -> float:
    """Equal-jitter exponential backoff: in [d/2, d] with d = min(cap, base * 2**attempt)."""
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
    return delay / 2 + random.uniform(0, delay / 2)


class OpenAIBackend:
    """`generate` POSTs each request to `{base_url}/chat/completions`, `spec.concurrency` at a time, in order."""

    def __init__(self, spec: BackendSpec, key: str = "annotate.annotators.<name>",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not spec.base_url:
            raise ConfigError(
                f"{key}.base_url is not set: the openai backend needs the server URL, "
                f"e.g. '{key}.base_url: http://localhost:8000/v1'"
            )
        self.spec = spec
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        self._api_key = os.environ.get(spec.api_key_env) or None
        self._sleep = sleep
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(spec.concurrency, "openai-backend")
        logger.debug("openai backend: %s, model %s, api key %s", self.url, spec.model,
                     f"from ${spec.api_key_env}" if self._api_key else "not set")

    # ------------------------------------------------------------------------------------------ public

    def generate(self, requests: list[Request]) -> list[Response]:
        if self._pool is None:
            raise RuntimeError("OpenAIBackend.generate called after close()")
        return list(self._pool.map(self._generate_one, requests))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # ------------------------------------------------------------------------------------------ payload

    def build_payload(self, request: Request) -> dict[str, Any]:
        """The JSON body for one request (the image attached where the messages hold {"type": "image"})."""
        sampling = request.sampling
        messages = [self._convert_message(message, request) for message in request.messages]
        payload: dict[str, Any] = {
            "model": self.spec.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
        }
        if sampling.stop:
            payload["stop"] = list(sampling.stop)
        if sampling.logprobs is not None:
            payload["logprobs"] = True
            payload["top_logprobs"] = sampling.logprobs
        if request.response_prefix:
            messages.append({"role": "assistant", "content": request.response_prefix})
            payload["continue_final_message"] = True  # vLLM extensions: continue the prefill,
            payload["add_generation_prompt"] = False  # do not open a new assistant turn
        if request.json_schema is not None:
            schema = {"name": "answer", "schema": request.json_schema}
            payload["response_format"] = {"type": "json_schema", "json_schema": schema}
        return payload

    @staticmethod
    def _convert_message(message: dict[str, Any], request: Request) -> dict[str, Any]:
        message = copy.deepcopy(message)
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image":
                    if request.image is None:
                        raise ValueError("the messages hold an image part but the request has no image")
                    part = {"type": "image_url", "image_url": {"url": image_data_uri(request.image)}}
                parts.append(part)
            message["content"] = parts
        return message

    # ------------------------------------------------------------------------------------------ calls

    def _generate_one(self, request: Request) -> Response:
        try:
            body = json.dumps(self.build_payload(request)).encode("utf-8")
        except (ValueError, TypeError, OSError) as e:
            return self._error(request, f"bad request: {e}", attempts=0)
        attempt = 0
        while True:
            logger.debug("POST %s for %s (attempt %d)", self.url, request.image_id, attempt + 1)
            outcome = self._post(body)
            if isinstance(outcome, Response):
                if request.response_prefix:
                    outcome.text = request.response_prefix + outcome.text
                outcome.extra["attempts"] = attempt + 1
                return outcome
            if not outcome.retryable or attempt >= self.spec.max_retries:
                if outcome.retryable:
                    logger.warning("%s: %s; giving up after %d retries", request.image_id, outcome.reason, attempt)
                return self._error(request, outcome.reason, attempts=attempt + 1)
            delay = outcome.retry_after_s if outcome.retry_after_s is not None else backoff_delay(attempt)
            logger.info("%s: %s; retry %d/%d in %.2f s", request.image_id, outcome.reason,
                        attempt + 1, self.spec.max_retries, delay)
            self._sleep(delay)
            attempt += 1

    def _post(self, body: bytes) -> Response | _Failure:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        http_request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(http_request, timeout=self.spec.timeout_s) as http_response:
                raw = http_response.read()
        except urllib.error.HTTPError as e:
            retryable = e.code == 429 or e.code >= 500
            try:
                text = e.read()
            except (OSError, ValueError):
                text = b""
            return _Failure(f"HTTP {e.code}: {self._short(text)}", retryable,
                            parse_retry_after(e.headers.get("Retry-After")) if retryable and e.headers else None)
        except TimeoutError:
            return _Failure(f"timeout after {self.spec.timeout_s:g} s", True)
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                return _Failure(f"timeout after {self.spec.timeout_s:g} s", True)
            return _Failure(self._redact(f"connection error: {e.reason}"), True)
        except (OSError, http.client.HTTPException) as e:  # reset, RemoteDisconnected, IncompleteRead, ...
            return _Failure(self._redact(f"connection error: {type(e).__name__}: {e}"), True)
        return self._parse(raw)

    def _parse(self, raw: bytes) -> Response | _Failure:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            logprobs = self._logprobs(choice.get("logprobs"))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            detail = f"{type(e).__name__} {e}" if not isinstance(e, ValueError) else "body is not JSON"
            return _Failure(f"malformed response: {detail}: {self._short(raw)}", retryable=False)
        usage = data.get("usage") or {}
        return Response(
            text=text,
            finish_reason=choice.get("finish_reason"),
            tokens=int(usage.get("completion_tokens") or 0),
            logprobs=logprobs,
        )

    @staticmethod
    def _logprobs(block: Any) -> list[dict[str, float]] | None:
        """OpenAI `logprobs.content` -> per generated position {token: logprob} over the top tokens."""
        if not isinstance(block, dict) or not isinstance(block.get("content"), list):
            return None
        positions = []
        for entry in block["content"]:
            top = {item["token"]: float(item["logprob"]) for item in entry.get("top_logprobs") or []}
            top.setdefault(entry["token"], float(entry["logprob"]))
            positions.append(top)
        return positions

    # ------------------------------------------------------------------------------------------ secrets

    def _redact(self, text: str) -> str:
        if self._api_key:
            for form in {self._api_key, json.dumps(self._api_key)[1:-1]}:
                text = text.replace(form, "***")
        return text

    def _short(self, raw: bytes) -> str:
        """An error body for a message: decoded, key redacted (before cutting), one line, bounded."""
        text = self._redact(raw.decode("utf-8", errors="replace"))
        text = " ".join(text.split())
        return text if len(text) <= ERROR_BODY_CHARS else text[:ERROR_BODY_CHARS] + "..."

    def _error(self, request: Request, reason: str, attempts: int) -> Response:
        reason = self._redact(reason)
        logger.debug("%s failed: %s", request.image_id, reason)
        return Response(text="", finish_reason="error", error=reason, extra={"attempts": attempts})
