"""Inference engines the worker runs rows through.

``echo`` answers instantly and deterministically from the last user message, or the prompt of a
COMPLETION row (tests, demos). ``openai`` forwards each row to an OpenAI-compatible server (vLLM,
SGLang, llama.cpp, Ollama) with a bounded thread pool: chat rows to ``/v1/chat/completions``,
``prompt`` rows to ``/v1/completions``. Both return one ``Outcome`` per row, in order.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson

from batchops.deadline import bounded, within
from batchops.local.config import BackendConfig
from batchops.tokens import counter_for, request_tokens

# One row's request to the upstream server: its whole answer within this (a server trickling bytes
# would otherwise hold the shared worker, and every account's jobs, forever), and at most this big.
ROW_TIMEOUT = 600.0
MAX_ANSWER_BYTES = 64 * 2**20
FAIL_MARKER = "__fail__"  # echo: a row whose last user message contains this becomes an error row
# echo, per-row faults: a transient one fails (UNAVAILABLE) the first time this engine sees the
# row's request and succeeds after; an invalid one always fails (INVALID_ARGUMENT).
TRANSIENT_MARKER = "__transient__"
INVALID_MARKER = "__invalid__"


@dataclass(frozen=True)
class Outcome:
    custom_id: str
    response: dict[str, Any] | None = None  # a chat.completion (or text_completion) object
    error: dict[str, Any] | None = None  # {"message", "code"}


class Engine(Protocol):
    def run(self, model: str, params: dict[str, Any], rows: list[dict[str, Any]]) -> list[Outcome]:
        """``params`` are the job's inferenceParameters as chat-completion (snake_case) params."""

    def close(self) -> None: ...


def job_params(inference_parameters: dict[str, Any] | None) -> dict[str, Any]:
    """Job inferenceParameters (camelCase, extraBody as JSON text) -> chat-completion params."""
    wire = dict(inference_parameters or {})
    extra = orjson.loads(wire.pop("extraBody", None) or "{}")
    names = {"maxTokens": "max_tokens", "topP": "top_p", "topK": "top_k"}
    params = {names.get(key, key): value for key, value in wire.items() if value is not None}
    return {**params, **(extra if isinstance(extra, dict) else {})}


def tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


text_of = _text  # the text of a message's content (OpenAI batches count prompt tokens with it)


class EchoEngine:
    """The assistant repeats the last user message, truncated to max_tokens (~4 chars a token)."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()  # requests with the transient marker asked once already
        self._lock = threading.Lock()

    def run(self, model: str, params: dict[str, Any], rows: list[dict[str, Any]]) -> list[Outcome]:
        created = int(time.time())
        return [self._one(model, params, row, created) for row in rows]

    def _one(
        self, model: str, params: dict[str, Any], row: dict[str, Any], created: int
    ) -> Outcome:
        body = {**params, **row["body"]}
        text = _prompt_text(body["prompt"]) if "prompt" in body else _last_user(body["messages"])
        if FAIL_MARKER in text:
            return Outcome(
                row["custom_id"], error={"message": "echo: failure requested", "code": "INTERNAL"}
            )
        if INVALID_MARKER in text:
            error = {"message": "echo: invalid request requested", "code": "INVALID_ARGUMENT"}
            return Outcome(row["custom_id"], error=error)
        if TRANSIENT_MARKER in text and self._first_time(model, body):
            error = {"message": "echo: transient failure requested", "code": "UNAVAILABLE"}
            return Outcome(row["custom_id"], error=error)
        if "prompt" in body:
            return Outcome(row["custom_id"], response=_text_completion(model, body, text, created))
        return Outcome(row["custom_id"], response=_completion(model, body, text, created))

    def _first_time(self, model: str, body: dict[str, Any]) -> bool:
        key = orjson.dumps([model, body], option=orjson.OPT_SORT_KEYS)
        with self._lock:
            first = key not in self._seen
            self._seen.add(key)
        return first

    def close(self) -> None:
        return None


def _last_user(messages: list[dict[str, Any]]) -> str:
    users = [m for m in messages if m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


def _prompt_text(prompt: Any) -> str:
    """What echo answers a COMPLETION row with: the prompt string, the last of a list of prompt
    strings, or a list of token IDs as text."""
    if isinstance(prompt, list):
        if prompt and all(isinstance(part, str) for part in prompt):
            return str(prompt[-1])
        return " ".join(str(part) for part in prompt)
    return str(prompt)


def _prompt_tokens(prompt: Any, model: str) -> int:
    """Prompt tokens as the planner counts them (batchops.tokens: the model's tokenizer or the
    estimator, plus BOS) per string; a list of token IDs counts exactly."""
    return request_tokens({"prompt": prompt}, model)


def _answer_tokens(model: str, body: dict[str, Any], content: str) -> int:
    """One choice's completion tokens, counted as the planner counts, at most max_tokens."""
    limit = body.get("max_tokens")
    counted = counter_for(model).count(content)
    return min(counted, limit) if isinstance(limit, int) and limit > 0 else counted


def _truncated(body: dict[str, Any], text: str) -> tuple[str, str, int]:
    """(content, finish_reason, choices) under the row's max_tokens and n."""
    limit = body.get("max_tokens")
    content, finish = text, "stop"
    if isinstance(limit, int) and limit > 0 and tokens(text) > limit:
        content, finish = text[: limit * 4], "length"
    return content, finish, max(1, int(body.get("n") or 1))


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(model: str, body: dict[str, Any], text: str, created: int) -> dict[str, Any]:
    content, finish, count = _truncated(body, text)
    # Counted as batchops' planner counts them (template overhead included), so a plan's
    # estimate can be checked against what the local backend bills.
    prompt = request_tokens(body, model)
    choice = {"message": {"role": "assistant", "content": content}, "finish_reason": finish}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": i, **choice} for i in range(count)],
        "usage": _usage(prompt, _answer_tokens(model, body, content) * count),
    }


def _text_completion(model: str, body: dict[str, Any], text: str, created: int) -> dict[str, Any]:
    """The /v1/completions answer: choices carry ``text``, not a message."""
    content, finish, count = _truncated(body, text)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": i, "text": content, "finish_reason": finish, "logprobs": None}
            for i in range(count)
        ],
        "usage": _usage(
            _prompt_tokens(body["prompt"], model), _answer_tokens(model, body, content) * count
        ),
    }


class OpenAIEngine:
    """Forward chat rows to ``{base}/v1/chat/completions`` and prompt rows to
    ``{base}/v1/completions``; a failed request becomes an error row."""

    def __init__(
        self, config: BackendConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not config.openai_base_url:
            raise ValueError("the openai engine needs openai_base_url")
        base = config.openai_base_url.rstrip("/").removesuffix("/v1")
        headers = (
            {"Authorization": f"Bearer {config.openai_api_key}"} if config.openai_api_key else {}
        )
        self._client = bounded(
            httpx.Client(base_url=base, headers=headers, timeout=ROW_TIMEOUT, transport=transport)
        )
        self._pool = ThreadPoolExecutor(max(1, config.openai_concurrency), "batchops-openai")
        self._model_map = dict(config.model_map)

    def run(self, model: str, params: dict[str, Any], rows: list[dict[str, Any]]) -> list[Outcome]:
        served = self._model_map.get(model, model)
        call: Callable[[dict[str, Any]], Outcome] = lambda row: self._one(served, params, row)  # noqa: E731
        return list(self._pool.map(call, rows))

    def _one(self, served: str, params: dict[str, Any], row: dict[str, Any]) -> Outcome:
        payload = {**params, **row["body"], "model": served}
        # OpenAI batch rows name their endpoint; Fireworks COMPLETION rows carry a prompt.
        completions = row.get("url") == "/v1/completions" or "prompt" in row["body"]
        path = "/v1/completions" if completions else "/v1/chat/completions"
        try:
            with within(hard=None, timeout=ROW_TIMEOUT):
                status, content = self._post(path, orjson.dumps(payload))
        except (httpx.HTTPError, httpx.StreamError) as exc:
            return Outcome(
                row["custom_id"],
                error={"message": f"request failed: {exc!r}", "code": "UNAVAILABLE"},
            )
        if content is None:
            message = f"upstream answer larger than {MAX_ANSWER_BYTES:,} bytes"
            return Outcome(row["custom_id"], error={"message": message, "code": "502"})
        if status != 200:
            text = content[:500].decode("utf-8", "replace")
            message = f"upstream HTTP {status}: {text}"
            return Outcome(row["custom_id"], error={"message": message, "code": str(status)})
        return _parsed(row["custom_id"], content)

    def _post(self, path: str, body: bytes) -> tuple[int, bytes | None]:
        """(status, body), the body None when it is over MAX_ANSWER_BYTES."""
        headers = {"Content-Type": "application/json"}
        with self._client.stream("POST", path, content=body, headers=headers) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    return response.status_code, None
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _parsed(custom_id: str, content: bytes) -> Outcome:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return Outcome(custom_id, error={"message": "upstream answered non-JSON", "code": "502"})
    return Outcome(custom_id, response=body)


def make_engine(config: BackendConfig) -> Engine:
    if config.engine == "echo":
        return EchoEngine()
    if config.engine == "openai":
        return OpenAIEngine(config)
    raise ValueError(f"unknown engine {config.engine!r}; choose echo or openai")
