"""Failed rows classified from the provider's error (issue 14)."""

from __future__ import annotations

import pytest

from batchops.plan.rowerrors import RowFailure, classify

T, P = RowFailure.TRANSIENT, RowFailure.PERMANENT


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("RESOURCE_EXHAUSTED: quota", T),
        ("429: Too Many Requests", T),
        ("UNAVAILABLE: echo: transient failure requested", T),
        ("INTERNAL: boom", T),
        ("503: upstream", T),
        ("DEADLINE_EXCEEDED: took too long", T),
        ("EXPIRED: the job expired before this row ran", T),
        ("rate limit reached, try again", T),
        ("the request timed out", T),
        ("INVALID_ARGUMENT: messages must not be empty", P),
        ("400: This model's maximum context length is 8192 tokens", P),
        ("content_policy_violation: flagged", P),
        ("RESPONSE_FORMAT: the answer does not match the schema", P),
        ("something nobody has seen", P),
        ("", P),
        (None, P),
    ],
)
def test_classify(error: str | None, expected: RowFailure) -> None:
    assert classify(error) is expected
