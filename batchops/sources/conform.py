"""``spec.responseFormat``: is an answer JSON that matches the job's JSON Schema?

Called by ``batchops.apply`` when it merges a job's results: ``answer_check(schema)`` is handed to
``batchops.merge.merge_lineage``, which moves each refused answer to the errors file with the
reason, so a non-conforming answer is a failed row, never a silent success. jsonschema is
imported only when a job has a response format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from batchops.sources.join import answer_fields

MAX_MESSAGE = 300


def answer_check(schema: dict[str, Any]) -> Callable[[bytes], str | None]:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)

    def check(line: bytes) -> str | None:
        try:
            answer = answer_fields(orjson.loads(line))[0]
        except (orjson.JSONDecodeError, AttributeError):
            return "the result line is not a JSON object"
        if not isinstance(answer, str):
            return "the answer has no text to check against responseFormat"
        try:
            value = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return "the answer is not JSON, but responseFormat asks for JSON"
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        at = f" at /{where}" if where else ""
        return f"the answer does not match responseFormat{at}: {error.message[:MAX_MESSAGE]}"

    return check
