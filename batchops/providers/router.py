"""``ProviderSet``: several named providers behind the one ``Provider`` the reconciler uses.

``batchops.cli.backend.open_provider`` builds one per command: the built-in ``fireworks`` and each
provider the project file declares. Lists are the union of every provider's (each item names its
provider); a create goes to the provider its spec names; a delete, cancel or download goes to the
provider that listed the key (the reconciler always lists before it acts), else to ``fireworks``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from batchops.errors import ConfigError, NotFoundError
from batchops.identity import DEFAULT_ID_LIMIT
from batchops.providers.base import ProgressFn, Provider
from batchops.providers.model import DEFAULT_PROVIDER, DatasetSpec, JobSpec, RemoteInput, RemoteJob


class ProviderSet:
    """Named providers as one ``Provider``; ``providers`` maps name -> provider."""

    kind = "set"

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self.providers = dict(providers)
        self._job_at: dict[str, str] = {}  # job key -> provider name, from the last list
        self._inputs_at: dict[str, set[str]] = {}  # input key -> provider names
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "+".join(sorted(self.providers))

    @property
    def max_id_length(self) -> int:
        """The strictest member's (each job's own is in ``id_limits``)."""
        return min((p.max_id_length for p in self.providers.values()), default=DEFAULT_ID_LIMIT)

    def id_limits(self) -> dict[str, int]:
        """Each provider's ``max_id_length`` by name: a job's IDs fit where it runs."""
        return {name: p.max_id_length for name, p in self.providers.items()}

    def __repr__(self) -> str:
        return f"ProviderSet({sorted(self.providers)})"

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()

    def set_deadline(self, deadline: float | None) -> None:
        for provider in self.providers.values():
            provider.set_deadline(deadline)

    def _get(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise ConfigError(f"no provider named {name!r} is configured")
        return provider

    def _of_job(self, key: str) -> Provider:
        with self._lock:
            return self._get(self._job_at.get(key, DEFAULT_PROVIDER))

    # -- observe -----------------------------------------------------------------------------

    def list_jobs(self, *, project: str | None = None) -> list[RemoteJob]:
        jobs = [job for p in self.providers.values() for job in p.list_jobs(project=project)]
        with self._lock:
            self._job_at.update((job.key, job.provider) for job in jobs)
        return jobs

    def list_inputs(self, *, project: str | None = None) -> list[RemoteInput]:
        inputs = [item for p in self.providers.values() for item in p.list_inputs(project=project)]
        with self._lock:
            for item in inputs:
                self._inputs_at.setdefault(item.key, set()).add(item.provider)
        return inputs

    def get_job(self, key: str) -> RemoteJob:
        return self._of_job(key).get_job(key)

    def get_input(self, key: str) -> RemoteInput:
        """From the default provider (a dataset a manifest names by ID is a Fireworks one)."""
        return self._get(DEFAULT_PROVIDER).get_input(key)

    # -- writes ------------------------------------------------------------------------------

    def create_input(
        self,
        spec: DatasetSpec,
        *,
        project: str,
        progress: ProgressFn | None = None,
        stop: threading.Event | None = None,
        ready_timeout: float = 600.0,
    ) -> None:
        """The input on every provider the spec names (those whose jobs read it)."""
        for name in spec.providers:
            self._get(name).create_input(
                spec, project=project, progress=progress, stop=stop, ready_timeout=ready_timeout
            )

    def create_job(self, spec: JobSpec, *, project: str) -> None:
        self._get(spec.provider).create_job(spec, project=project)
        with self._lock:
            self._job_at[spec.job_id] = spec.provider

    def delete_job(self, key: str) -> None:
        self._of_job(key).delete_job(key)

    def cancel_job(self, key: str) -> None:
        self._of_job(key).cancel_job(key)

    def cancel_duplicates(self, key: str) -> None:
        self._of_job(key).cancel_duplicates(key)

    def delete_input(self, key: str) -> None:
        """The input on every provider that listed it."""
        with self._lock:
            names = sorted(self._inputs_at.get(key) or {DEFAULT_PROVIDER})
        gone: list[NotFoundError] = []
        for name in names:
            try:
                self._get(name).delete_input(key)
            except NotFoundError as exc:
                gone.append(exc)
        if len(gone) == len(names):
            raise gone[0]

    def download_input(
        self, key: str, target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        """From any provider that listed it: a content-addressed input is the same everywhere."""
        with self._lock:
            names = sorted(self._inputs_at.get(key) or {DEFAULT_PROVIDER})
        for name in names[:-1]:
            with contextlib.suppress(NotFoundError):
                return self._get(name).download_input(key, target, progress=progress)
        return self._get(names[-1]).download_input(key, target, progress=progress)

    def download_outputs(
        self, job_keys: Sequence[str], target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        """A lineage runs on one provider: the one that listed its last job."""
        provider = self._of_job(job_keys[-1]) if job_keys else self._get(DEFAULT_PROVIDER)
        return provider.download_outputs(job_keys, target, progress=progress)
