"""The provider-neutral model and the registry (batchops.providers)."""

from __future__ import annotations

import pytest

from batchops.errors import ConfigError
from batchops.providers import JobState, RemoteJob, Tokens, result_row
from batchops.providers.registry import ProviderConfig, build


def test_result_row_reads_the_neutral_fields() -> None:
    line = {
        "custom_id": "r1",
        "text": "4",
        "finish_reason": "stop",
        "job": "j-1",
        "usage": {"input_tokens": 47, "output_tokens": 2, "cached_tokens": 29},
        "response": {"choices": []},
    }
    row = result_row(line)
    assert (row.custom_id, row.text, row.finish_reason, row.job) == ("r1", "4", "stop", "j-1")
    assert row.usage == Tokens(47, 2, 29)
    assert row.response == {"choices": []} and row.error is None


def test_remote_job_ownership_is_by_project() -> None:
    job = RemoteJob("k", "k", "demo", JobState.RUNNING, "JOB_STATE_RUNNING")
    assert job.is_ours("demo") and not job.is_ours("other")


def test_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown provider kind 'anthropic'"):
        build(ProviderConfig(name="a", kind="anthropic"))


def test_a_declared_fireworks_account_is_built_by_the_registry() -> None:
    from batchops.config import Secret
    from batchops.providers.fireworks.provider import FireworksProvider

    eu = ProviderConfig(name="fw-eu", kind="fireworks", account_id="acct-eu")
    provider = build(eu, api_key=Secret("fw-key"))
    assert isinstance(provider, FireworksProvider) and provider.name == "fw-eu"
    assert provider.client.account_id == "acct-eu"
    assert provider.client.base_url.startswith("https://api.fireworks.ai")
    provider.close()
    with pytest.raises(ConfigError, match="fw-eu: accountId is required"):
        build(ProviderConfig(name="fw-eu", kind="fireworks"), api_key=Secret("k"))
