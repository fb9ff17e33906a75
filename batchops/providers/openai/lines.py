"""Request lines of an OpenAI batch input file, rendered from provider-neutral rows.

A neutral row is ``{"custom_id", "body": {"messages": [...]}}`` (chat) or ``{..., "body":
{"prompt": ...}}`` (completion), as ``batchops.datasets`` validates them. The OpenAI line adds
the method, the endpoint and the model and parameters inside the body:
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {"model", ...}}``.
Called by ``runner`` (rendering files to upload) and ``rules`` (validation), pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchops.wire_openai import CHAT_ENDPOINT, COMPLETIONS_ENDPOINT

# Manifest inference parameters (snake_case, as pydantic holds them) -> OpenAI body keys.
# ``top_k`` has no OpenAI equivalent; ``rules`` reports it rather than dropping it silently.
PARAMETER_NAMES = {
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "n": "n",
}


@dataclass(frozen=True)
class RequestShape:
    """What every line of one job shares: the model and the body parameters."""

    model: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_inference(
        cls, model: str, inference: Mapping[str, Any], extra_body: Mapping[str, Any] | None
    ) -> RequestShape:
        """From a job's ``inferenceParameters`` (``extraBody`` keys are merged into the body)."""
        params = {
            PARAMETER_NAMES[k]: v
            for k, v in inference.items()
            if k in PARAMETER_NAMES and v is not None
        }
        return cls(model=model, params={**params, **(extra_body or {})})

    @classmethod
    def from_manifest(cls, model: str, parameters: Mapping[str, Any]) -> RequestShape:
        """From the neutral ``JobSpec.inference_parameters`` (camelCase; ``extraBody`` as JSON
        text or a mapping)."""
        snake = {_snake(k): v for k, v in parameters.items() if k != "extraBody"}
        extra = parameters.get("extraBody")
        if isinstance(extra, str):
            extra = orjson.loads(extra) if extra else None
        return cls.from_inference(model, snake, extra)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def endpoint_of(body: Mapping[str, Any]) -> str:
    return CHAT_ENDPOINT if "messages" in body else COMPLETIONS_ENDPOINT


def request_line(row: Mapping[str, Any], shape: RequestShape) -> dict[str, Any]:
    body = row["body"]
    return {
        "custom_id": row["custom_id"],
        "method": "POST",
        "url": endpoint_of(body),
        "body": {"model": shape.model, **shape.params, **body},
    }


def render(row: Mapping[str, Any], shape: RequestShape) -> bytes:
    """One line, newline-terminated."""
    return orjson.dumps(request_line(row, shape)) + b"\n"


def render_raw(raw: bytes, shape: RequestShape) -> bytes:
    return render(orjson.loads(raw), shape)


def rows_of(lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, row) for every non-blank line of a neutral dataset."""
    for number, raw in enumerate(lines, start=1):
        if raw.strip():
            yield number, orjson.loads(raw)
