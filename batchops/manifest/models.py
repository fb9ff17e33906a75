"""The pydantic models of the manifest kinds: what a YAML document may say, field by field.

Pure: no I/O and no httpx/watchfiles imports (an import-linter contract enforces it). The loader
(``batchops.manifest.loader``) validates each YAML document against one of these; ``batchops
schema`` prints their JSON Schema (``manifest_json_schema``). YAML keys are camelCase aliases of the
snake_case fields, and unknown keys are rejected (``extra="forbid"``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator
from pydantic.alias_generators import to_camel

from batchops.jsonvalues import INT32_MAX, params_problem, value_problem
from batchops.wire import PRECISIONS

NAME_MAX = 40  # the reconciler appends up to 22 characters of ID suffixes; Fireworks IDs max 63
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A model is a resource name, optionally on a deployment, or a model ID as OpenAI-compatible
# servers name them ("gpt-4o-mini", "meta-llama/Llama-3.1-8B", "llama3.1:8b"); docs/manifests.md.
_ID = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?"
_TAGGED = r"[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,126}[A-Za-z0-9])?"
MODEL_RE = re.compile(
    rf"accounts/{_ID}/models/{_ID}(?:#accounts/{_ID}/deployments/{_ID})?"
    rf"|(?!accounts/){_ID}/{_TAGGED}|{_TAGGED}"
)


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
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    top_k: int | None = Field(default=None, ge=0, le=INT32_MAX)
    n: int | None = Field(default=None, ge=1, le=128)
    extra_body: dict[str, Any] | None = Field(
        default=None, description="a mapping; sent to the API as a JSON string"
    )

    @field_validator("extra_body")
    @classmethod
    def _check_extra_body(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Only what JSON can carry (no .nan, .inf, dates, binary), and integer parameters
        (max_tokens, top_k, seed, ...) as integers in their range."""
        if value is None:
            return None
        problems = [p for p in (value_problem(value), params_problem(value)) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return value


class OutputSpec(StrictModel):
    path: str | None = Field(
        default=None, min_length=1, description="relative to the root; default results/<name>.jsonl"
    )


class JobSpec(StrictModel):
    model: str = Field(
        min_length=1,
        description="accounts/<account>/models/<model> (optionally "
        "#accounts/<account>/deployments/<deployment>) or a model ID ([org/]model[:tag])",
        json_schema_extra={"pattern": f"^(?:{MODEL_RE.pattern})$"},
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

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if not MODEL_RE.fullmatch(value):
            hint = "; manifests expand no variables" if "$" in value else ""
            raise ValueError(
                f"'{value}' is not a model name: use accounts/<account>/models/<model> or a "
                f"model ID such as llama-v3p1-8b-instruct or org/model{hint}"
            )
        return value

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


Manifest = DatasetManifest | BatchInferenceJobManifest
KINDS: dict[str, type[DatasetManifest] | type[BatchInferenceJobManifest]] = {
    "Dataset": DatasetManifest,
    "BatchInferenceJob": BatchInferenceJobManifest,
}


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of one manifest document: a oneOf over ``kind``, for editors."""
    adapter: TypeAdapter[Manifest] = TypeAdapter(
        Annotated[Manifest, Field(discriminator="kind")]
    )
    schema = adapter.json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "batchops manifest"
    return schema
