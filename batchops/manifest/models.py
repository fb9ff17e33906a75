"""The pydantic models of the manifest kinds: what a YAML document may say, field by field.

Pure: no I/O and no httpx/watchfiles imports (an import-linter contract enforces it). The loader
(``batchops.manifest.loader``) validates each YAML document against one of these; ``batchops
schema`` prints their JSON Schema (``manifest_json_schema``). YAML keys are camelCase aliases of the
snake_case fields, and unknown keys are rejected (``extra="forbid"``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from batchops.providers.catalog import PRECISIONS

NAME_MAX = 40  # the reconciler appends up to 22 characters of ID suffixes; Fireworks IDs max 63
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PERCENT_RE = r"^[0-9]+(\.[0-9]+)?%$"


class StrictModel(BaseModel):
    """camelCase keys only, unknown keys rejected, no silent type coercion ("256" is not 256)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True, frozen=True
    )


class Metadata(StrictModel):
    name: str = Field(description="lowercase letters, digits and '-', at most 40 characters")
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_name(value)


def check_name(value: str) -> str:
    """A manifest (or project) name: ID-safe, at most NAME_MAX characters."""
    if len(value) > NAME_MAX:
        raise ValueError(f"name '{value}' is {len(value)} characters long; at most {NAME_MAX}")
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"invalid name '{value}': use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


class DatasetSpec(StrictModel):
    path: str = Field(
        min_length=1,
        description="a .jsonl file or a folder of top-level .jsonl shards, relative to the "
        "manifest file's folder",
    )
    format: Literal["CHAT", "COMPLETION"] | None = Field(
        default=None, description="detected from the rows when absent"
    )


class InferenceParameters(StrictModel):
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    n: int | None = Field(default=None, ge=1, le=128)
    extra_body: dict[str, Any] | None = Field(
        default=None, description="a mapping; sent to the API as a JSON string"
    )


class OutputSpec(StrictModel):
    path: str | None = Field(
        default=None, min_length=1, description="relative to the root; default results/<name>.jsonl"
    )


class JobSpec(StrictModel):
    provider: str | None = Field(
        default=None, description="a provider the project file declares (default: fireworks)"
    )
    model: str = Field(
        min_length=1, pattern=r"^\S+$", description="e.g. accounts/fireworks/models/x"
    )
    input_dataset: str | None = Field(default=None, description="a Dataset declared in manifests")
    input_dataset_id: str | None = Field(
        default=None, min_length=1, description="an existing remote dataset (ID or resource name)"
    )
    display_name: str | None = None
    inference_parameters: InferenceParameters = Field(default_factory=InferenceParameters)
    precision: Annotated[str, Field(json_schema_extra={"enum": list(PRECISIONS)})] | None = None
    output: OutputSpec = Field(default_factory=OutputSpec)
    on_expired: Literal["resume", "stop"] = "resume"
    max_resumes: int = Field(default=3, ge=0, le=100)
    max_failed_rows: Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=PERCENT_RE)] = (
        Field(
            default=0,
            description="failed rows allowed before apply exits 3: a count, or a share of the "
            "input rows such as '2%'",
        )
    )
    max_retries: int = Field(
        default=1, ge=0, le=100, description="--retry-failed attempts per spec (transient only)"
    )

    @field_validator("max_failed_rows", mode="wrap")
    @classmethod
    def _check_failed_rows(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> int | str:
        """One clear message instead of one per member of the union."""
        try:
            checked: int | str = handler(value)
        except ValidationError:
            raise ValueError(
                f"maxFailedRows must be a count of rows (an integer >= 0) or a share of the "
                f"input rows such as '2%', not {value!r}"
            ) from None
        if isinstance(checked, str) and float(checked[:-1]) > 100:
            raise ValueError(f"maxFailedRows '{checked}' is over 100%")
        return checked

    @field_validator("precision")
    @classmethod
    def _check_precision(cls, value: str | None) -> str | None:
        if value is not None and value not in PRECISIONS:
            raise ValueError(f"unknown precision '{value}'; one of {', '.join(PRECISIONS)}")
        return value

    @model_validator(mode="after")
    def _one_input(self) -> JobSpec:
        if (self.input_dataset is None) == (self.input_dataset_id is None):
            raise ValueError("set exactly one of inputDataset and inputDatasetId")
        return self


class DatasetManifest(StrictModel):
    api_version: Literal["batchops/v1"]
    kind: Literal["Dataset"]
    metadata: Metadata
    spec: DatasetSpec


class BatchInferenceJobManifest(StrictModel):
    api_version: Literal["batchops/v1"]
    kind: Literal["BatchInferenceJob"]
    metadata: Metadata
    spec: JobSpec


class MovedSpec(StrictModel):
    """``{from: old-name, to: new-name}``: a rename that adopts the old name's remote resources."""

    from_: str = Field(alias="from", description="the name the dataset or job had")
    to: str = Field(description="its name now, as declared in a manifest")
    kind: Literal["Dataset", "BatchInferenceJob"] | None = Field(
        default=None, description="only this kind (default: whichever is declared as 'to')"
    )

    @field_validator("from_", "to")
    @classmethod
    def _check_names(cls, value: str) -> str:
        return check_name(value)


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ProviderLimits(StrictModel):
    """A provider's caps and quotas: a dataset beyond them is sent in parts and waves."""

    max_requests_per_batch: int | None = Field(default=None, ge=1, description="rows per batch")
    max_bytes_per_batch: int | None = Field(default=None, ge=1, description="bytes per input file")
    enqueued_tokens: int | None = Field(
        default=None, ge=1, description="input tokens that may wait at once (per model)"
    )


class ProviderSpec(StrictModel):
    """One provider in ``spec.providers``: keys come only from the environment (``apiKeyEnv``)."""

    kind: Literal["fireworks", "openai"]
    base_url: str | None = Field(
        default=None, pattern=r"^https?://\S+$", description="e.g. https://api.openai.com/v1"
    )
    api_key_env: str | None = Field(
        default=None, pattern=ENV_NAME, description="the environment variable holding the key"
    )
    account_id: str | None = Field(default=None, min_length=1, description="Fireworks only")
    limits: ProviderLimits = Field(default_factory=ProviderLimits)

    @model_validator(mode="before")
    @classmethod
    def _no_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and {"apiKey", "api_key"} & data.keys():
            raise ValueError(
                "a key never goes in a file: name the environment variable holding it with "
                "apiKeyEnv"
            )
        return data


class ProjectSpec(StrictModel):
    """Defaults that flags and environment variables override (DESIGN.md section 7). Later
    sections (providers, prices, budget) are added here as optional fields."""

    backend: Literal["fireworks", "local"] | None = Field(
        default=None,
        description="fireworks (needs FIREWORKS_API_KEY) or local (the embedded backend); "
        "default: fireworks with a key, else local outside CI",
    )
    paths: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["jobs"], min_length=1, description="manifest files or folders"
    )
    output_dir: str = Field(
        default="results", min_length=1, description="default folder of results/<job>.jsonl"
    )
    poll_interval: float | None = Field(
        default=None, gt=0, le=86400, description="seconds between passes of apply --wait"
    )
    parallelism: int | None = Field(default=None, ge=1, le=64, description="concurrent actions")
    moved: list[MovedSpec] = Field(default_factory=list, description="renames (see docs)")
    providers: dict[str, ProviderSpec] = Field(
        default_factory=dict, description="batch providers by name (fireworks is built in)"
    )

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, value: dict[str, ProviderSpec]) -> dict[str, ProviderSpec]:
        for name in value:
            check_name(name)
            if name == "fireworks":
                raise ValueError(
                    "'fireworks' is built in (FIREWORKS_API_KEY, FIREWORKS_ACCOUNT_ID, "
                    "FIREWORKS_BASE_URL); declare another Fireworks account under another name"
                )
        return value

    @field_validator("paths", "output_dir")
    @classmethod
    def _relative(cls, value: str | list[str]) -> str | list[str]:
        for path in [value] if isinstance(value, str) else value:
            windows = PureWindowsPath(path)
            if PurePosixPath(path).is_absolute() or windows.is_absolute() or ".." in windows.parts:
                raise ValueError(f"'{path}' must be a relative path inside the root, without '..'")
        return value


class ProjectManifest(StrictModel):
    """``batchops.yaml`` at the repository root; ``metadata.name`` is the project's name."""

    api_version: Literal["batchops/v1"]
    kind: Literal["Project"]
    metadata: Metadata
    spec: ProjectSpec = Field(default_factory=ProjectSpec)


Manifest = DatasetManifest | BatchInferenceJobManifest | ProjectManifest
KINDS: dict[str, type[DatasetManifest] | type[BatchInferenceJobManifest]] = {
    "Dataset": DatasetManifest,
    "BatchInferenceJob": BatchInferenceJobManifest,
}
PROJECT_KIND = "Project"  # only in batchops.yaml at the root (batchops.manifest.project)


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of one manifest document: a oneOf over ``kind``, for editors."""
    adapter: TypeAdapter[Manifest] = TypeAdapter(
        Annotated[Manifest, Field(discriminator="kind")]
    )
    schema = adapter.json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "batchops manifest"
    return schema
