"""List pages of the Fireworks API (jobs, datasets) decoded with msgspec, without pydantic.

Called by ``FireworksClient.list_jobs`` / ``list_datasets``: observing is most of what a `plan`
does with the API, and importing pydantic and building the wire models cost more start-up than
the whole plan (issue 17). The Structs here mirror the wire models (``wire``) field for field,
with the same attribute names, so ``provider.job_from_wire`` / ``input_from_wire`` take either.

The wire models stay the contract: ``decode`` answers only when it is sure the models would give
the same values, and ``None`` otherwise, and the client then validates the page with the wire
model, which gives the same objects or the same error message as before. It is sure when every
value has exactly the type the model declares (the models also coerce: ``"5"`` to 5, ``5.0`` to
5, ``NaN``...) and no object uses a field's snake_case name, which the models also accept
(``populate_by_name``). Unknown fields are ignored, as the models keep them only as extras that
nothing reads, except in inference parameters, whose extras ``to_wire`` returns as the model's
``to_wire`` does. ``tests/providers/test_fireworks_pages.py`` checks the equivalence.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# The snake_case spellings the wire models accept besides the camelCase ones: a page using one
# goes to the models. Field names without an underscore are spelled the same both ways.
_SNAKE_PAGE = {"batch_inference_jobs", "next_page_token", "total_size"}
_SNAKE_JOB = {
    "display_name",
    "create_time",
    "created_by",
    "input_dataset_id",
    "output_dataset_id",
    "inference_parameters",
    "update_time",
    "job_progress",
    "continued_from_job_name",
    "expire_time",
}
_SNAKE_PROGRESS = {
    "total_input_requests",
    "total_processed_requests",
    "successfully_processed_requests",
    "failed_requests",
    "output_rows",
    "input_tokens",
    "output_tokens",
    "cached_input_token_count",
}
_SNAKE_PARAMS = {"max_tokens", "top_p", "top_k", "extra_body"}
_SNAKE_DATASET = {
    "display_name",
    "create_time",
    "update_time",
    "created_by",
    "example_count",
    "estimated_token_count",
    "user_uploaded",
    "source_job_name",
    "external_url",
}


class _Listed(msgspec.Struct, rename="camel", kw_only=True):
    """camelCase on the wire; unknown fields ignored."""


class ListedStatus(_Listed):
    code: str = "OK"
    message: str = ""


class ListedProgress(_Listed):
    percent: int | None = None
    epoch: int | None = None
    total_input_requests: int | None = None
    total_processed_requests: int | None = None
    successfully_processed_requests: int | None = None
    failed_requests: int | None = None
    output_rows: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_token_count: int | None = None


class ListedParams(_Listed, dict=True):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    n: int | None = None
    extra_body: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """As ``wire.InferenceParameters.to_wire``: the fields that are set, in declaration
        order, then the unknown ones the server sent (top-level nulls left out)."""
        out = {
            key: value
            for field, key in zip(
                self.__struct_fields__, self.__struct_encode_fields__, strict=True
            )
            if (value := getattr(self, field)) is not None
        }
        out.update(getattr(self, "extra", {}))
        return out


class ListedJob(_Listed):
    name: str | None = None
    display_name: str | None = None
    create_time: str | None = None
    created_by: str | None = None
    state: str | None = None
    status: ListedStatus | None = None
    model: str | None = None
    input_dataset_id: str | None = None
    output_dataset_id: str | None = None
    inference_parameters: ListedParams | None = None
    update_time: str | None = None
    precision: str | None = None
    job_progress: ListedProgress | None = None
    continued_from_job_name: str | None = None
    expire_time: str | None = None


class ListedDataset(_Listed):
    name: str | None = None
    display_name: str | None = None
    create_time: str | None = None
    update_time: str | None = None
    created_by: str | None = None
    state: str | None = None
    status: ListedStatus | None = None
    example_count: str | None = None
    estimated_token_count: str | None = None
    format: str | None = None
    user_uploaded: dict[str, Any] | None = None
    source_job_name: str | None = None
    external_url: str | None = None


class JobsPage(_Listed):
    batch_inference_jobs: list[ListedJob] = msgspec.field(default_factory=list)
    next_page_token: str | None = None
    total_size: int | None = None


class DatasetsPage(_Listed):
    datasets: list[ListedDataset] = msgspec.field(default_factory=list)
    next_page_token: str | None = None
    total_size: int | None = None


_PARAM_KEYS = frozenset(ListedParams.__struct_encode_fields__)


def decode_jobs(content: bytes) -> JobsPage | None:
    """The page, or None when the wire model must decide (see the module's docstring)."""
    page = _plain(content, "batchInferenceJobs")
    if page is None or not _jobs_plain(page):
        return None
    try:
        decoded = msgspec.convert(page, JobsPage)
    except (msgspec.ValidationError, RecursionError):
        return None
    for raw, job in zip(
        page.get("batchInferenceJobs") or (), decoded.batch_inference_jobs, strict=True
    ):
        params = raw.get("inferenceParameters")
        if job.inference_parameters is not None and params.keys() - _PARAM_KEYS:
            extra = {k: v for k, v in params.items() if k not in _PARAM_KEYS and v is not None}
            job.inference_parameters.extra = extra  # type: ignore[attr-defined]
    return decoded


def decode_datasets(content: bytes) -> DatasetsPage | None:
    page = _plain(content, "datasets")
    if page is None:
        return None
    for item in _items(page, "datasets"):
        if not _SNAKE_DATASET.isdisjoint(item):
            return None
    try:
        return msgspec.convert(page, DatasetsPage)
    except (msgspec.ValidationError, RecursionError):
        return None


def _plain(content: bytes, items: Literal["batchInferenceJobs", "datasets"]) -> Any:
    """The page as plain JSON values when it is an object with no snake_case page keys."""
    try:
        page = msgspec.json.decode(content)
    except (msgspec.DecodeError, RecursionError):  # the wire model says what is wrong with it
        return None
    if type(page) is not dict or not _SNAKE_PAGE.isdisjoint(page):
        return None
    if type(page.get(items, [])) is not list:
        return None
    return page


def _items(page: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The page's items that are objects (any other item fails ``convert``)."""
    return [item for item in page.get(key) or () if type(item) is dict]


def _jobs_plain(page: dict[str, Any]) -> bool:
    for job in _items(page, "batchInferenceJobs"):
        if not _SNAKE_JOB.isdisjoint(job):
            return False
        progress, params = job.get("jobProgress"), job.get("inferenceParameters")
        if type(progress) is dict and not _SNAKE_PROGRESS.isdisjoint(progress):
            return False
        if type(params) is dict and not _SNAKE_PARAMS.isdisjoint(params):
            return False
    return True
