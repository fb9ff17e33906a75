"""Wire models of the Fireworks REST API (see the shared fireworks-api.md reference).

Shared by the client (``client``) and the embedded backend (``batchops.local``), so that both
sides of the contract are one definition. camelCase on the wire, snake_case in Python. Unknown
fields are kept (``extra="allow"``) and states are plain strings, so a newer server never breaks
an older client. Serialise with ``model.to_wire()``.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from batchops.providers.catalog import PRECISIONS as PRECISIONS  # re-exported; defined there
from batchops.providers.fireworks.names import *  # noqa: F403  # states, codes, resource names


class WireModel(BaseModel):
    """camelCase aliases, populate by either name, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        frozen=False,
        defer_build=True,  # validators built at first use: start-up pays only for what it uses
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict a server would send: camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Status(WireModel):
    code: str = "OK"  # a google.rpc code *name* inside resources
    message: str = ""


class InferenceParameters(WireModel):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    n: int | None = None
    extra_body: str | None = None  # JSON text on the wire, e.g. "{\"stop\": [\"\\n\"]}"


class JobProgress(WireModel):
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


class BatchInferenceJob(WireModel):
    name: str | None = None  # accounts/{account}/batchInferenceJobs/{id}; read-only
    display_name: str | None = None
    create_time: str | None = None
    created_by: str | None = None
    state: str | None = None  # JOB_STATE_*; unknown values tolerated
    status: Status | None = None
    model: str | None = None
    input_dataset_id: str | None = None  # full resource name in responses
    output_dataset_id: str | None = None
    inference_parameters: InferenceParameters | None = None
    update_time: str | None = None
    precision: str | None = None
    job_progress: JobProgress | None = None
    continued_from_job_name: str | None = None
    expire_time: str | None = None


class Dataset(WireModel):
    name: str | None = None  # accounts/{account}/datasets/{id}; read-only
    display_name: str | None = None
    create_time: str | None = None
    update_time: str | None = None
    created_by: str | None = None
    state: str | None = None  # UPLOADING | READY
    status: Status | None = None
    # int64 as a JSON string on the wire; the snake_case spelling is accepted too.
    example_count: str | None = Field(
        default=None, validation_alias=AliasChoices("exampleCount", "example_count")
    )
    estimated_token_count: str | None = None
    format: str | None = None  # FORMAT_UNSPECIFIED | CHAT | COMPLETION | RL
    user_uploaded: dict[str, Any] | None = None
    source_job_name: str | None = None
    external_url: str | None = None


class CreateDatasetRequest(WireModel):
    dataset_id: str
    dataset: Dataset
    source_dataset_id: str | None = None
    filter: str | None = None


class ListJobsResponse(WireModel):
    batch_inference_jobs: list[BatchInferenceJob] = Field(default_factory=list)
    next_page_token: str | None = None
    total_size: int | None = None


class ListDatasetsResponse(WireModel):
    datasets: list[Dataset] = Field(default_factory=list)
    next_page_token: str | None = None
    total_size: int | None = None


class GetUploadEndpointRequest(WireModel):
    filename_to_size: dict[str, str]  # sizes are int64-as-string


class SignedUrlsResponse(WireModel):
    """Both :getUploadEndpoint and :getDownloadEndpoint answer {filenameToSignedUrls: {...}}."""

    filename_to_signed_urls: dict[str, str] = Field(default_factory=dict)


class UploadResponse(BaseModel):
    """The direct :upload answer is snake_case, OpenAI-file style."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    id: str
    object: str = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str = "dataset"
