"""The OpenAI-compatible ``Provider``: the neutral protocol on top of ``client``.

Built by ``batchops.providers.registry`` (kind ``openai``) through ``from_config``. IDs are the
server's; our keys live in batch metadata (``ownership``). Jobs are observed with list calls only;
one job key is one or more batches (parts of a split dataset, attempts after a quota refusal),
shown as one ``RemoteJob`` (``aggregate``). Inputs are rendered per job (an OpenAI request line
carries the model), so ``create_input`` only records where a dataset's files are and
``create_job`` uploads one file per part. OpenAI has no batch delete: ``delete_job`` cancels a
live batch and deletes its files; the batch record stays on the server.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from batchops.config import Secret
from batchops.errors import ApiError, ConfigError, NotFoundError
from batchops.providers.base import ProgressFn
from batchops.providers.model import (
    ERRORS_FILE,
    OUTPUT_FILE,
    DatasetSpec,
    JobSpec,
    RemoteInput,
    RemoteJob,
)
from batchops.providers.openai import ownership as own
from batchops.providers.openai.aggregate import part_keepers, remote_jobs
from batchops.providers.openai.client import OpenAIBatchClient
from batchops.providers.openai.inputs import first_attempt_parts, shape_of, write_neutral
from batchops.providers.openai.lines import RequestShape
from batchops.providers.openai.outputs import convert, ran_ids
from batchops.providers.openai.parts import Limits, limits_from
from batchops.providers.openai.states import is_live
from batchops.providers.openai.submit import Submitter, dataset_rows, render_parts
from batchops.providers.openai.sweep import SharedSweep
from batchops.providers.openai.wire import Batch
from batchops.providers.registry import ProviderConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"


_CLIENT_OPTIONS = (
    "transport",
    "sleep",
    "clock",
    "max_retries",
    "retry_budget",
    "jitter",
    "max_rate",
    "timeout",
)
_PROVIDER_OPTIONS = ("datasets", "scratch", "poll", "stop")


def from_config(config: ProviderConfig, **options: Any) -> OpenAIProvider:
    """The registry's factory. ``base_url`` (the embedded backend's root) overrides the declared
    one, with ``/v1`` added; ``api_key`` is the declared variable's value (None: no key)."""
    key = options.get("api_key")
    if isinstance(key, str):
        key = Secret(key)
    base_url = config.base_url or DEFAULT_BASE_URL
    if options.get("base_url"):
        base_url = str(options["base_url"]).rstrip("/") + "/v1"
    client = OpenAIBatchClient(
        base_url=base_url, api_key=key, **{k: options[k] for k in _CLIENT_OPTIONS if k in options}
    )
    extra = {k: options[k] for k in _PROVIDER_OPTIONS if k in options}
    return OpenAIProvider(config.name, client, limits_from(config.limits), **extra)


class OpenAIProvider:
    """One OpenAI-compatible batch service, in the neutral model's terms."""

    kind = "openai"
    max_id_length = 512  # our keys live in batch metadata values (at most 512 characters)

    def __init__(
        self,
        name: str,
        client: OpenAIBatchClient,
        limits: Limits,
        *,
        datasets: Mapping[str, DatasetSpec] | None = None,
        scratch: Path | None = None,
        poll: float = 5.0,
        stop: threading.Event | None = None,
    ) -> None:
        self._name = name
        self.client = client
        self.limits = limits
        self._datasets = dict(datasets or {})
        self._scratch = scratch
        self._stop = stop or threading.Event()
        self._submitter = Submitter(client, limits, poll, self._stop, self._observe)
        self._lock = threading.Lock()
        self._shared = SharedSweep(self._observe, client.write_marks)

    @property
    def name(self) -> str:
        return self._name

    def close(self) -> None:
        self.client.close()

    def set_deadline(self, deadline: float | None) -> None:
        self.client.deadline = deadline

    # -- observe ---------------------------------------------------------------------------------

    def _observe(self) -> list[Batch]:
        """Our batches (any project's: ownership is decided above), one list sweep."""
        return [b for b in self.client.iter_batches() if own.slot_of(b) is not None]

    def list_jobs(self, *, project: str | None = None) -> list[RemoteJob]:
        """One sweep of the batches (shared with ``list_inputs`` when both ask at once, as a pass
        does) and one of the files (to tell deleted jobs apart). The Batches API cannot filter
        on metadata: ``project`` is not sent (the planner reads ``owner``)."""
        batches = self._shared.run()
        files = {f.id for f in self.client.iter_files()} if batches else set()
        return remote_jobs(batches, self._name, files)

    def list_inputs(self, *, project: str | None = None) -> list[RemoteInput]:
        """Inputs are found through the batches that read them (``project``: as for jobs)."""
        seen: dict[str, RemoteInput] = {}
        for batch in self._shared.run():
            meta = batch.metadata or {}
            key = meta.get(own.INPUT)
            if key and key not in seen:
                seen[key] = RemoteInput(
                    key=key,
                    remote_id=batch.input_file_id,
                    owner=meta.get(own.PROJECT),
                    ready=True,
                    raw_state="processed",
                    provider=self._name,
                )
        return list(seen.values())

    def get_input(self, key: str) -> RemoteInput:
        """An input by our key, found through the batches that read it (there is no GET of an
        input by key: files are server-named)."""
        for item in self.list_inputs():
            if item.key == key:
                return item
        raise NotFoundError(f"no batch reads input {key}", status=404)

    def get_job(self, key: str) -> RemoteJob:
        for job in self.list_jobs():
            if job.key == key:
                return job
        raise NotFoundError(f"no batch for job {key}", status=404)

    def duplicates(self, project: str) -> list[tuple[Batch, Batch]]:
        """(duplicate, kept) for this project's live duplicate batches (concurrent applies)."""
        return own.duplicates(b for b in self._observe() if own.is_ours(b, project))

    def cancel_duplicates(self, key: str) -> None:
        """Cancel the live duplicates of one job (a concurrent apply's), keeping the oldest."""
        for duplicate, _ in own.duplicates(self._batches_of(key)):
            self._cancel(duplicate)

    # -- create ----------------------------------------------------------------------------------

    def create_input(
        self,
        spec: DatasetSpec,
        *,
        project: str,
        progress: ProgressFn | None = None,
        stop: threading.Event | None = None,
        ready_timeout: float = 600.0,
    ) -> None:
        """Record the dataset's files: each job renders and uploads its own request lines."""
        with self._lock:
            self._datasets[spec.dataset_id] = spec

    def create_job(self, spec: JobSpec, *, project: str) -> None:
        """Submit every part not yet on the server, in waves under the quota (idempotent)."""
        files = spec.input_files or self._files_of(spec.input_dataset_id)
        if not files:
            raise ConfigError(
                f"{spec.name}: an OpenAI-compatible provider needs the input's local files; "
                f"{spec.input_dataset_id} is not a dataset declared in the manifests"
            )
        rows = dataset_rows(files)
        if spec.continued_from:
            done = self._ran_in_lineage(spec.continued_from)
            rows = (row for row in rows if row["custom_id"] not in done)
        shape = RequestShape.from_manifest(spec.model, spec.inference_parameters)
        with tempfile.TemporaryDirectory(dir=self._scratch) as folder:
            rendered = render_parts(rows, shape, self.limits, Path(folder))

            def meta(slot: own.Slot, part: Any) -> dict[str, str]:
                return own.metadata(
                    project,
                    spec.name,
                    slot,
                    tokens=part.tokens,
                    rows=part.requests,
                    input_key=spec.input_dataset_id,
                    model=spec.model,
                    continued_from=spec.continued_from,
                    parameters=spec.inference_parameters,
                )

            self._submitter.submit(rendered, key=spec.job_id, model=spec.model, meta=meta)

    def _files_of(self, dataset_id: str) -> tuple[Path, ...]:
        with self._lock:
            known = self._datasets.get(dataset_id)
        return known.files if known is not None else ()

    def _lineage(self, key: str) -> list[str]:
        """``key`` and the keys it continues, oldest first."""
        batches = self._observe()
        chain: list[str] = []
        while key and key not in chain:
            chain.append(key)
            parents = [
                (b.metadata or {}).get(own.FROM)
                for b in batches
                if (s := own.slot_of(b)) and s.key == key
            ]
            key = next((p for p in parents if p), "")
        return chain[::-1]

    def _ran_in_lineage(self, key: str) -> set[str]:
        with tempfile.TemporaryDirectory(dir=self._scratch) as folder:
            raw = self._download_raw(self._lineage(key), Path(folder))
            return ran_ids([p for files in raw.values() for p in files])

    # -- stop and remove -------------------------------------------------------------------------

    def _batches_of(self, key: str) -> list[Batch]:
        found = [b for b in self._observe() if (s := own.slot_of(b)) and s.key == key]
        if not found:
            raise NotFoundError(f"no batch for job {key}", status=404)
        return found

    def _cancel(self, batch: Batch) -> None:
        try:
            self.client.cancel_batch(batch.id)
        except ApiError as error:  # it ended meanwhile: nothing left to stop
            if error.status not in (400, 404, 409):
                raise

    def cancel_job(self, key: str) -> None:
        for batch in self._batches_of(key):
            if is_live(batch.status):
                self._cancel(batch)

    def delete_job(self, key: str) -> None:
        """Cancel what runs and delete the files of the job's ended batches (the API keeps the
        batch records: there is no batch delete). A batch just cancelled still holds its input
        until it ends; the next delete or prune pass removes those files. Nothing left anywhere:
        NotFoundError."""
        changed = 0
        for batch in self._batches_of(key):
            if is_live(batch.status):
                self._cancel(batch)
                changed += 1
                continue
            changed += self._delete_files(
                batch.input_file_id, batch.output_file_id, batch.error_file_id
            )
        if not changed:
            raise NotFoundError(f"the files of job {key} are already deleted", status=404)

    def delete_input(self, key: str) -> None:
        files = {
            b.input_file_id for b in self._observe() if (b.metadata or {}).get(own.INPUT) == key
        }
        if not self._delete_files(*files):
            raise NotFoundError(f"no file left for input {key}", status=404)

    def _delete_files(self, *file_ids: str | None) -> int:
        deleted = 0
        for file_id in filter(None, file_ids):
            try:
                deleted += int(self.client.delete_file(file_id))
            except NotFoundError:
                continue
        return deleted

    # -- results ---------------------------------------------------------------------------------

    def _download_raw(self, keys: Sequence[str], folder: Path) -> dict[str, list[Path]]:
        """Each key's parts' output and error files, raw, in ``folder/<key>/``."""
        batches = self._observe()
        raw: dict[str, list[Path]] = {}
        for key in keys:
            mine = [b for b in batches if (s := own.slot_of(b)) and s.key == key]
            files: list[Path] = []
            for part, batch in sorted(part_keepers(mine).items()):
                for kind, file_id in (("out", batch.output_file_id), ("err", batch.error_file_id)):
                    if file_id:
                        target = folder / key / f"{part:04d}.{kind}.jsonl"
                        files.append(self.client.download_file(file_id, target))
            raw[key] = files
        return raw

    def download_input(
        self, key: str, target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        """The neutral rows the first job that read input ``key`` was asked, one file per part
        under ``target/<key>/`` (``inputs``); NotFoundError when a part's file is gone."""
        parts = first_attempt_parts(self._observe(), key)
        if parts is None:
            raise NotFoundError(f"no batch holds the whole of input {key}", status=404)
        written = []
        with tempfile.TemporaryDirectory(dir=self._scratch) as tmp:
            for part, batch in sorted(parts.items()):
                raw = self.client.download_file(batch.input_file_id, Path(tmp) / f"{part}.jsonl")
                neutral = target / key / f"{part:04d}.jsonl"
                written.append(write_neutral(raw, neutral, shape_of(batch)))
        return written

    def download_outputs(
        self, job_keys: Sequence[str], target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        folders: list[Path] = []
        with tempfile.TemporaryDirectory(dir=self._scratch) as tmp:
            raw = self._download_raw(job_keys, Path(tmp))
            for number, key in enumerate(job_keys):
                if not raw.get(key):
                    if number == len(job_keys) - 1:
                        raise NotFoundError(f"job {key} has no output yet", status=404)
                    continue
                folder = target / key
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                convert(raw[key], key, folder / OUTPUT_FILE, folder / ERRORS_FILE)
                folders.append(folder)
        return folders
