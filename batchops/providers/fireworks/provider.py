"""The Fireworks ``Provider``: the REST client behind the neutral protocol, wire types mapped here.

``FireworksProvider`` wraps a ``FireworksClient``; the reconciler, apply and the job commands use
it through ``batchops.providers.Provider``. ``job_from_wire`` / ``input_from_wire`` are the one
place Fireworks jobs and datasets become ``RemoteJob`` / ``RemoteInput``: the job ID is our key
(IDs are ours to choose on Fireworks), ownership is the mark in the display name, and the
``JOB_STATE_*`` strings map to ``JobState`` (an unknown one means running).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchops.config import DEFAULT_BASE_URL, LOCAL_ACCOUNT_ID, Settings
from batchops.errors import ApiError, ConfigError, ConflictError, NotFoundError, OwnershipError
from batchops.identity import DEFAULT_ID_LIMIT, mark_filter, output_dataset_id, owner_of
from batchops.providers.base import ProgressFn, Stopped
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.factory import client_from_settings
from batchops.providers.fireworks.names import (
    DATASET_STATE_READY,
    GONE_JOB_STATES,
    JOB_STATE_CANCELLED,
    JOB_STATE_COMPLETED,
    JOB_STATE_CREATING,
    JOB_STATE_EXPIRED,
    JOB_STATE_FAILED,
    JOB_STATE_PENDING,
    JOB_STATE_VALIDATING,
    dataset_resource,
    job_resource,
    resource_id,
)
from batchops.providers.fireworks.outputs import to_neutral
from batchops.providers.model import (
    DatasetSpec,
    JobSpec,
    JobState,
    RemoteInput,
    RemoteJob,
    Rows,
    Tokens,
)
from batchops.providers.registry import ProviderConfig

if TYPE_CHECKING:  # the wire models (pydantic) are imported where a request body is built
    from batchops.providers.fireworks.pages import ListedDataset, ListedJob, ListedParams
    from batchops.providers.fireworks.wire import BatchInferenceJob, Dataset, InferenceParameters

_STATES = {
    JOB_STATE_VALIDATING: JobState.WAITING,
    JOB_STATE_PENDING: JobState.WAITING,
    JOB_STATE_CREATING: JobState.WAITING,
    JOB_STATE_COMPLETED: JobState.FINISHED,
    JOB_STATE_FAILED: JobState.FAILED,
    JOB_STATE_CANCELLED: JobState.CANCELLED,
    JOB_STATE_EXPIRED: JobState.EXPIRED,
    **dict.fromkeys(GONE_JOB_STATES, JobState.DELETING),
}


def job_state(raw: str | None) -> JobState:
    """A ``JOB_STATE_*`` string as a ``JobState``; anything unknown is in progress."""
    return _STATES.get(raw or "", JobState.RUNNING)


class _WireParams(Mapping[str, Any]):
    """A job's inference parameters in manifest form, computed only when read (the plan reads
    them only for a replaced job's spec diff; a 1,000-job plan need not dump 1,000 models)."""

    __slots__ = ("_dict", "_params")

    def __init__(self, params: InferenceParameters | ListedParams | None) -> None:
        self._params = params
        self._dict: dict[str, Any] | None = None

    def _wire(self) -> dict[str, Any]:
        if self._dict is None:
            self._dict = self._params.to_wire() if self._params is not None else {}
        return self._dict

    def __getitem__(self, key: str) -> Any:
        return self._wire()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._wire())

    def __len__(self) -> int:
        return len(self._wire())


def job_from_wire(job: BatchInferenceJob | ListedJob, provider: str = "fireworks") -> RemoteJob:
    rid = resource_id(job.name or "")
    p = job.job_progress
    rows, tokens = None, Tokens()
    if p is not None:
        rows = Rows(
            p.total_input_requests or 0,
            p.successfully_processed_requests or 0,
            p.failed_requests or 0,
            p.percent or 0,
            p.total_processed_requests or 0,
        )
        tokens = Tokens(p.input_tokens or 0, p.output_tokens or 0, p.cached_input_token_count or 0)
    continued = job.continued_from_job_name
    output = job.output_dataset_id
    return RemoteJob(
        key=rid,
        remote_id=rid,
        owner=owner_of(job.display_name),
        state=job_state(job.state),
        raw_state=job.state or "JOB_STATE_UNSPECIFIED",
        provider=provider,
        message=(job.status.message or "") if job.status else "",
        code=(job.status.code or "") if job.status else "",
        model=job.model or "",
        input_id=resource_id(job.input_dataset_id or ""),
        parameters=_WireParams(job.inference_parameters),
        precision=job.precision,
        rows=rows,
        tokens=tokens,
        created=job.create_time or "",
        updated=job.update_time or "",
        expires=job.expire_time or "",
        continued_from=resource_id(continued) if continued else None,
        output_id=resource_id(output) if output else None,
        display_name=job.display_name or "",
    )


def input_from_wire(ds: Dataset | ListedDataset, provider: str = "fireworks") -> RemoteInput:
    rid = resource_id(ds.name or "")
    count = ds.example_count or ""
    rows = int(count) if count.isdigit() else None
    source = ds.source_job_name
    return RemoteInput(
        key=rid,
        remote_id=rid,
        owner=owner_of(ds.display_name),
        ready=ds.state == DATASET_STATE_READY,
        raw_state=ds.state or "",
        provider=provider,
        rows=rows,
        source_job=resource_id(source) if source else None,
        created=ds.create_time or "",
        updated=ds.update_time or "",
    )


def job_body(spec: JobSpec, account: str) -> BatchInferenceJob:
    from batchops.providers.fireworks.wire import BatchInferenceJob, InferenceParameters

    continued = job_resource(account, spec.continued_from) if spec.continued_from else None
    return BatchInferenceJob(
        display_name=spec.display_name,
        model=spec.model,
        input_dataset_id=dataset_resource(account, spec.input_dataset_id),
        output_dataset_id=dataset_resource(account, spec.output_dataset_id),
        inference_parameters=InferenceParameters.model_validate(spec.inference_parameters),
        precision=spec.precision,
        continued_from_job_name=continued,
    )


class FireworksProvider:
    """The Fireworks API (or the embedded backend speaking it) as a ``Provider``."""

    kind = "fireworks"
    max_id_length = DEFAULT_ID_LIMIT  # resource IDs: [a-z0-9-], at most 63 characters

    def __init__(self, client: FireworksClient, *, name: str = "fireworks") -> None:
        self.client = client
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"FireworksProvider({self._name!r}, {self.client!r})"

    def close(self) -> None:
        self.client.close()

    def set_deadline(self, deadline: float | None) -> None:
        self.client.deadline = deadline

    # -- observe -----------------------------------------------------------------------------

    def list_jobs(self, *, project: str | None = None) -> list[RemoteJob]:
        """With ``project``, the server filters on the mark (AIP-160; one that cannot answers
        every job, which the planner narrows)."""
        only = mark_filter(project) if project else None
        return [job_from_wire(j, self._name) for j in self.client.list_jobs(filter=only)]

    def list_inputs(self, *, project: str | None = None) -> list[RemoteInput]:
        only = mark_filter(project) if project else None
        return [input_from_wire(d, self._name) for d in self.client.list_datasets(filter=only)]

    def get_input(self, key: str) -> RemoteInput:
        return input_from_wire(self.client.get_dataset(key), self._name)

    def get_job(self, key: str) -> RemoteJob:
        return job_from_wire(self.client.get_job(key), self._name)

    # -- inputs ------------------------------------------------------------------------------

    def create_input(
        self,
        spec: DatasetSpec,
        *,
        project: str,
        progress: ProgressFn | None = None,
        stop: threading.Event | None = None,
        ready_timeout: float = 600.0,
    ) -> None:
        """create (409 = confirm ours and identical) -> upload -> wait until READY."""
        from batchops.providers.fireworks.wire import Dataset

        body = Dataset(
            display_name=spec.display_name,
            example_count=str(spec.rows),
            user_uploaded={},
            format=spec.format,
        )
        try:
            existing = self.client.create_dataset(spec.dataset_id, body)
        except ConflictError:
            existing = self.client.get_dataset(spec.dataset_id)
            _confirm_dataset(existing, spec, project)
        if existing.state == DATASET_STATE_READY:
            return
        self.client.upload_dataset_files(spec.dataset_id, list(spec.files), progress=progress)
        self._wait_ready(spec.dataset_id, stop or threading.Event(), ready_timeout)

    def _wait_ready(self, dataset_id: str, stop: threading.Event, timeout: float) -> None:
        delay, waited = 0.05, 0.0
        while waited < timeout:
            if self.client.get_dataset(dataset_id).state == DATASET_STATE_READY:
                return
            if stop.wait(delay):
                raise Stopped(f"dataset {dataset_id}: stopped while waiting for READY")
            waited += delay
            delay = min(delay * 2, 2.0)
        raise ApiError(f"dataset {dataset_id} was not READY after {timeout:.0f} s")

    def delete_input(self, key: str) -> None:
        self.client.delete_dataset(key)

    # -- jobs --------------------------------------------------------------------------------

    def create_job(self, spec: JobSpec, *, project: str) -> None:
        """create, passing the output dataset ID; a 409 is success once confirmed ours and
        identical."""
        body = job_body(spec, self.client.account_id)
        try:
            self.client.create_job(spec.job_id, body)
        except ConflictError:
            try:
                existing = self.client.get_job(spec.job_id)
            except NotFoundError:
                # No such job: the 409 was about its output dataset, left behind by an earlier
                # job of this very ID that was pruned (pruning keeps outputs). Re-declaring it
                # must converge.
                self._drop_orphan_output(spec)
                self.client.create_job(spec.job_id, body)
                return
            _confirm_job(existing, spec, project)

    def _drop_orphan_output(self, spec: JobSpec) -> None:
        """Delete ``<job id>-out`` if it is the output of a job with this ID (deleted since)."""
        output = self.client.get_dataset(spec.output_dataset_id)
        source = resource_id(output.source_job_name or "")
        if source not in ("", spec.job_id):
            raise OwnershipError(
                f"output dataset {spec.output_dataset_id} exists and belongs to job {source}; "
                f"job {spec.job_id} cannot be created"
            )
        with contextlib.suppress(NotFoundError):  # a retried DELETE whose first answer was lost
            self.client.delete_dataset(spec.output_dataset_id)

    def delete_job(self, key: str) -> None:
        self.client.delete_job(key)

    def cancel_duplicates(self, key: str) -> None:
        """Job IDs are ours: two creates of one ID cannot both succeed, so there are none."""

    def cancel_job(self, key: str) -> None:
        """Fireworks has no cancel call: DELETE stops a running job (its output is kept)."""
        self.client.delete_job(key)

    # -- results -----------------------------------------------------------------------------

    def download_input(
        self, key: str, target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        """An input's JSONL files, downloaded under ``target`` (the reuse index is rebuilt from
        earlier jobs' inputs and outputs: ``batchops.reuse_rows.rebuild``)."""
        paths = self.client.download_dataset(key, target, progress=progress)
        return sorted(p for p in paths if p.suffix == ".jsonl")

    def download_outputs(
        self, job_keys: Sequence[str], target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        """Each job's output dataset (``<job>-out``) into ``target/<dataset>``; its files are
        ``BIJOutputSet.jsonl`` and ``error-data``, the neutral layout's names, rewritten in the
        neutral results shape (``outputs.to_neutral``)."""
        folders = []
        last = len(job_keys) - 1
        for i, key in enumerate(job_keys):
            ds_id = output_dataset_id(key)
            try:
                self.client.download_dataset(ds_id, target, progress=progress)
            except NotFoundError:
                if i == last:
                    raise
                continue  # a failed earlier attempt never wrote an output dataset
            to_neutral(target / ds_id, key)
            folders.append(target / ds_id)
        return folders


def _confirm_dataset(existing: Dataset, spec: DatasetSpec, project: str) -> None:
    if owner_of(existing.display_name) != project:
        raise OwnershipError(f"dataset {spec.dataset_id} exists and is not ours; not touching it")
    if existing.example_count not in (None, str(spec.rows)):
        raise OwnershipError(
            f"dataset {spec.dataset_id} exists with {existing.example_count} rows, expected "
            f"{spec.rows}"
        )


def _confirm_job(existing: BatchInferenceJob, spec: JobSpec, project: str) -> None:
    if owner_of(existing.display_name) != project:
        raise OwnershipError(f"job {spec.job_id} exists and is not ours; not touching it")
    params = existing.inference_parameters.to_wire() if existing.inference_parameters else {}
    same = (
        (existing.model or spec.model) == spec.model
        and resource_id(existing.input_dataset_id or spec.input_dataset_id) == spec.input_dataset_id
        and all(params.get(k) == v for k, v in spec.inference_parameters.items())
    )
    if not same:
        raise OwnershipError(f"job {spec.job_id} exists with a different model, input or params")


def from_config(
    config: ProviderConfig, *, settings: Settings | None = None, **options: Any
) -> FireworksProvider:
    """The registry's factory. With ``settings``, the client is ``client_from_settings``' (the
    FIREWORKS_* variables, ``base_url`` overriding); ``options`` go to ``FireworksClient``."""
    if settings is not None:
        base_url = options.pop("base_url", None) or config.base_url
        client = client_from_settings(settings, base_url=base_url, **options)
        return FireworksProvider(client, name=config.name)
    args: dict[str, Any] = {"base_url": config.base_url, "account_id": config.account_id}
    args.update(options)
    args["base_url"] = args.get("base_url") or DEFAULT_BASE_URL
    if args.get("api_key") is not None and not args["account_id"]:
        raise ConfigError(f"provider {config.name}: accountId is required with a key")
    args["account_id"] = args.get("account_id") or LOCAL_ACCOUNT_ID
    return FireworksProvider(FireworksClient(**args), name=config.name)
