"""Inference engines the worker runs rows through.

``echo`` answers instantly and deterministically from the last user message, or the prompt of a
COMPLETION row (tests, demos). ``openai`` forwards each row to an OpenAI-compatible server (vLLM,
SGLang, llama.cpp, Ollama) with a bounded thread pool: chat rows to ``/v1/chat/completions``,
``prompt`` rows to ``/v1/completions``. Both return one ``Outcome`` per row, in order.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson

from batchops.local.config import BackendConfig

FAIL_MARKER = "__fail__"  # echo: a row whose last user message contains this becomes an error row


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
        if "prompt" in body:
            return Outcome(row["custom_id"], response=_text_completion(model, body, text, created))
        return Outcome(row["custom_id"], response=_completion(model, body, text, created))

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


def _prompt_tokens(prompt: Any) -> int:
    """Prompt tokens: ~4 characters a token per string; a list of token IDs counts exactly."""
    if isinstance(prompt, list):
        return sum(tokens(p) if isinstance(p, str) else 1 for p in prompt)
    return tokens(str(prompt))


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
    prompt = sum(tokens(_text(m.get("content"))) for m in body["messages"])
    choice = {"message": {"role": "assistant", "content": content}, "finish_reason": finish}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": i, **choice} for i in range(count)],
        "usage": _usage(prompt, tokens(content) * count),
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
        "usage": _usage(_prompt_tokens(body["prompt"]), tokens(content) * count),
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
        self._client = httpx.Client(
            base_url=base, headers=headers, timeout=600.0, transport=transport
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
            response = self._client.post(
                path,
                content=orjson.dumps(payload),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            return Outcome(
                row["custom_id"],
                error={"message": f"request failed: {exc!r}", "code": "UNAVAILABLE"},
            )
        if response.status_code != 200:
            message = f"upstream HTTP {response.status_code}: {response.text[:500]}"
            return Outcome(
                row["custom_id"], error={"message": message, "code": str(response.status_code)}
            )
        return _parsed(row["custom_id"], response)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _parsed(custom_id: str, response: httpx.Response) -> Outcome:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return Outcome(custom_id, error={"message": "upstream answered non-JSON", "code": "502"})
    return Outcome(custom_id, response=body)


def make_engine(config: BackendConfig) -> Engine:
    if config.engine == "echo":
        return EchoEngine()
    if config.engine == "openai":
        return OpenAIEngine(config)
    raise ValueError(f"unknown engine {config.engine!r}; choose echo or openai")
