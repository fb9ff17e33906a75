"""The provider protocol: what the reconciler, apply and the job commands ask of a provider.

A provider is one configured batch service (``fireworks``, or a declared ``openai``-kind one such
as ``together``) behind this one interface; ``batchops.providers.registry`` builds them by kind.
Every method speaks the neutral model (``batchops.providers.model``): a provider maps its wire types
at its edge and raises only ``batchops.errors`` errors (``NotFoundError``, ``ConflictError``,
``OwnershipError``, ``ApiError``...), never an httpx or pydantic one.

Writes are idempotent under our content-addressed keys: creating what already exists, ours and
identical, is success; what exists and is not ours raises ``OwnershipError``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from batchops.errors import BatchopsError
from batchops.providers.model import DatasetSpec, JobSpec, RemoteInput, RemoteJob

ProgressFn = Callable[[int], None]  # bytes moved since the last call


class Stopped(BatchopsError):
    """A provider call gave up waiting because its ``stop`` event was set."""


@runtime_checkable
class Provider(Protocol):
    """One batch provider, in the neutral model's terms."""

    @property
    def name(self) -> str:
        """The provider's name in the project file (``fireworks``, ``together``...)."""
        ...

    @property
    def kind(self) -> str:
        """The provider's kind: ``fireworks`` or ``openai``."""
        ...

    @property
    def max_id_length(self) -> int:
        """The longest ID we may give a job or an input here (with its ``-out`` dataset):
        Fireworks 63; OpenAI-compatible 512, the longest metadata value, where our keys live.
        Longer derived IDs are shortened (``identity.job_key``)."""
        ...

    def list_jobs(self, *, project: str | None = None) -> list[RemoteJob]:
        """Every job of the account, with list calls (never a GET each); with ``project``, the
        server is asked for that project's only where its API can filter (the answer may be a
        superset: the planner reads ``owner``)."""
        ...

    def list_inputs(self, *, project: str | None = None) -> list[RemoteInput]:
        """Every input (dataset, file) of the account; ``project`` narrows as for jobs."""
        ...

    def get_input(self, key: str) -> RemoteInput:
        """One input by its ID (one a manifest names, maybe not ours); ``NotFoundError``."""
        ...

    def get_job(self, key: str) -> RemoteJob:
        """One job by our key; ``NotFoundError`` when it does not exist."""
        ...

    def create_input(
        self,
        spec: DatasetSpec,
        *,
        project: str,
        progress: ProgressFn | None = None,
        stop: threading.Event | None = None,
        ready_timeout: float = 600.0,
    ) -> None:
        """Create and upload an input, and return once jobs may read it (idempotent)."""
        ...

    def create_job(self, spec: JobSpec, *, project: str) -> None:
        """Create a job (idempotent: ours and identical already there is success)."""
        ...

    def delete_job(self, key: str) -> None:
        """Delete a job (a running one is stopped); ``NotFoundError`` when already gone."""
        ...

    def cancel_job(self, key: str) -> None:
        """Stop a running job, keeping what it finished."""
        ...

    def cancel_duplicates(self, key: str) -> None:
        """Cancel the live duplicates of a job (``RemoteJob.duplicates``), keeping the oldest.
        A provider whose IDs are ours (Fireworks) never has any: a no-op."""
        ...

    def delete_input(self, key: str) -> None:
        """Delete an input; ``NotFoundError`` when already gone."""
        ...

    def download_outputs(
        self, job_keys: Sequence[str], target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        """Download the outputs of a lineage (``job_keys`` in order) into folders under
        ``target``, one per job that wrote any, each holding ``model.OUTPUT_FILE`` and/or
        ``model.ERRORS_FILE`` with lines in the neutral results shape. The last job's output
        missing raises ``NotFoundError``; an earlier one's is skipped (a failed attempt)."""
        ...

    def download_input(
        self, key: str, target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        """An input's JSONL files (what its jobs were asked), downloaded under ``target``; for
        rebuilding the reuse index from the provider. ``NotFoundError`` when it is gone."""
        ...

    def set_deadline(self, deadline: float | None) -> None:
        """The command's deadline (``time.monotonic()``): no call, retry or wait goes past it."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
