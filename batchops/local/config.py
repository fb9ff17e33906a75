"""Settings of the embedded local backend. Built by the CLI (`batchops serve`) and by tests/benches.

Frozen dataclasses, so one config can be shared by the HTTP app, the worker and the engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection on /v1 routes (and signed-URL transfers when ``on_transfers``).

    Each request draws once from a seeded RNG; the rates are probabilities in [0, 1]. ``latency``
    is added to a share ``latency_rate`` of requests, or to every request when that rate is 0.
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    latency: float = 0.0
    latency_rate: float = 0.0
    retry_after: float = 1.0
    on_transfers: bool = False
    seed: int | None = None

    @property
    def active(self) -> bool:
        return any((self.rate_429, self.rate_500, self.rate_503, self.rate_drop, self.latency))


@dataclass(frozen=True)
class BackendConfig:
    """Everything the backend needs. ``api_key`` None means no auth on /v1 routes."""

    data_dir: Path
    api_key: str | None = field(default=None, repr=False)
    engine: str = "echo"  # echo | openai
    openai_base_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    model_map: dict[str, str] = field(default_factory=dict)
    openai_concurrency: int = 8
    row_delay: float = 0.0  # seconds added per row (tests: make a job take a while)
    stage_delay: float = 0.0  # seconds spent in each of VALIDATING, PENDING, WRITING_RESULTS
    max_job_duration: float = 86400.0  # the job's expireTime is create + this
    faults: FaultConfig = field(default_factory=FaultConfig)
    lease_seconds: float = 15.0  # a worker's claim on a job; a dead owner's lease lapses after it
    poll_interval: float = 0.05  # how often an idle worker looks for runnable jobs
    # OpenAI batches: enqueued input tokens allowed per model across in-flight batches (None: any)
    openai_enqueued_token_limit: int | None = None
