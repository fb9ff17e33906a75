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
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from batchops.config import parse_duration
from batchops.jsonvalues import INT32_MAX, params_problem, value_problem
from batchops.providers.catalog import PRECISIONS

NAME_MAX = 40  # room for the ID hash and suffixes; longer IDs are shortened (identity.job_key)
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PERCENT_RE = r"^[0-9]+(\.[0-9]+)?%$"
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
        alias_generator=to_camel,
        populate_by_name=False,
        extra="forbid",
        strict=True,
        frozen=True,
        defer_build=True,  # validators built at first use: start-up pays only for what it uses
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


class SourceSpec(StrictModel):
    path: str | None = Field(
        default=None,
        min_length=1,
        description="a table (.csv, .tsv, .jsonl records, .parquet) or a folder of such shards, "
        "relative to the manifest file's folder",
    )
    job: str | None = Field(
        default=None,
        min_length=1,
        description="a job declared in the manifests: its verified results, joined to its input "
        "rows, are the table (a pipeline stage; docs/pipelines.md)",
    )
    combine: Literal["each", "all"] = Field(
        default="each",
        description="with a matrix job upstream: each (one dataset, and one downstream job, per "
        "combination) or all (one dataset whose rows carry every combination's answer)",
    )
    format: Literal["csv", "tsv", "jsonl", "parquet"] | None = Field(
        default=None, description="detected from the file suffix when absent"
    )
    id_column: str | None = Field(
        default=None,
        min_length=1,
        description="the column whose value is each row's custom_id; default: a stable hash of "
        "the row",
    )
    where: str | None = Field(
        default=None,
        min_length=1,
        description="a Jinja2 expression; rows where it is false "
        "are skipped, e.g. \"lang == 'en'\"",
    )
    limit: int | None = Field(default=None, ge=1, description="render at most this many rows")

    @model_validator(mode="after")
    def _path_or_job(self) -> SourceSpec:
        if (self.path is None) == (self.job is None):
            raise ValueError("set exactly one of path (a table) and job (a job's results)")
        if self.job is not None and (self.format is not None or self.id_column is not None):
            raise ValueError(
                "format and idColumn belong to a table; a job's results keep the "
                "upstream custom_ids"
            )
        if self.job is None and "combine" in self.model_fields_set:
            raise ValueError("combine applies to a job's results (source.job)")
        return self


class TemplateMessage(StrictModel):
    role: Literal["system", "user", "assistant"]
    content: str | None = Field(default=None, description="a Jinja2 template")
    content_file: str | None = Field(
        default=None, min_length=1, description="a Jinja2 template file beside the manifest"
    )

    @model_validator(mode="after")
    def _one_content(self) -> TemplateMessage:
        if (self.content is None) == (self.content_file is None):
            raise ValueError("set exactly one of content and contentFile")
        return self


class TemplateSpec(StrictModel):
    messages: list[TemplateMessage] | None = Field(default=None, min_length=1)
    prompt: str | None = Field(default=None, description="a completion prompt template")
    prompt_file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> TemplateSpec:
        given = [x is not None for x in (self.messages, self.prompt, self.prompt_file)]
        if sum(given) != 1:
            raise ValueError("set exactly one of messages, prompt and promptFile")
        return self


def _details(error: ErrorDetails) -> InitErrorDetails:
    details: InitErrorDetails = {
        "type": error["type"],
        "loc": error["loc"],
        "input": error["input"],
    }
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


class DatasetSpec(StrictModel):
    path: str | None = Field(
        default=None,
        min_length=1,
        description="a .jsonl file or a folder of top-level .jsonl shards, relative to the "
        "manifest file's folder",
    )
    format: Literal["CHAT", "COMPLETION"] | None = Field(
        default=None, description="detected from the rows when absent"
    )
    source: SourceSpec | None = Field(
        default=None, description="a table to render through spec.template (instead of path)"
    )
    template: TemplateSpec | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _path_required(
        cls, data: Any, handler: ModelWrapValidatorHandler[DatasetSpec]
    ) -> DatasetSpec:
        """Neither path nor source: "missing required field 'path'", beside any other error."""
        if not isinstance(data, dict) or "path" in data or "source" in data:
            return handler(data)
        missing: InitErrorDetails = {"type": "missing", "loc": ("path",), "input": data}
        errors = [missing]
        try:
            handler(data)
        except ValidationError as exc:
            errors += [_details(e) for e in exc.errors()]
        raise ValidationError.from_exception_data(cls.__name__, errors)

    @model_validator(mode="after")
    def _path_or_source(self) -> DatasetSpec:
        if self.path is not None and self.source is not None:
            raise ValueError("set either path or source, not both")
        if (self.source is None) != (self.template is None):
            raise ValueError("source and template go together")
        return self


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


class TableSpec(StrictModel):
    format: Literal["csv", "parquet", "jsonl"] = "csv"
    columns: list[str] | None = Field(
        default=None, description="the input columns to carry (default: all)"
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        description="relative to the root; default beside the results: <stem>.table.<format>",
    )


class OutputSpec(StrictModel):
    path: str | None = Field(
        default=None, min_length=1, description="relative to the root; default results/<name>.jsonl"
    )
    table: TableSpec | None = Field(
        default=None, description="also write answers joined to their inputs, on every merge"
    )


class ResponseFormatSpec(StrictModel):
    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description="a JSON Schema every answer must conform to"
    )
    schema_file: str | None = Field(
        default=None, min_length=1, description="a JSON or YAML file holding the JSON Schema"
    )

    @model_validator(mode="after")
    def _one_schema(self) -> ResponseFormatSpec:
        if (self.schema_ is None) == (self.schema_file is None):
            raise ValueError("set exactly one of schema and schemaFile")
        return self


class CanarySpec(StrictModel):
    """A small job of a deterministic sample of the rows to send, run before the full job."""

    rows: int = Field(default=50, ge=1, le=100_000, description="rows in the sample")
    max_failed_rows: int = Field(
        default=0,
        ge=0,
        description="failed rows (responseFormat violations included) the "
        "canary may have and still let the full job run",
    )


class JobBudget(StrictModel):
    max_cost: float = Field(
        gt=0,
        description="US dollars this job may cost per plan; apply refuses a plan over it (exit 4)",
    )


MAX_COMBINATIONS = 64  # one manifest, at most this many jobs: a sweep, not a grid search


def _model_name(value: str) -> str:
    if not MODEL_RE.fullmatch(value):
        hint = "; manifests expand no variables" if "$" in value else ""
        raise ValueError(
            f"'{value}' is not a model name: use accounts/<account>/models/<model> or a "
            f"model ID such as llama-v3p1-8b-instruct or org/model{hint}"
        )
    return value


ModelName = Annotated[str, AfterValidator(_model_name)]
_Values = Field(default=None, min_length=1)


class MatrixSpec(StrictModel):
    """``spec.matrix``: lists of values; one job per combination (docs/pipelines.md)."""

    model: list[ModelName] | None = _Values
    provider: list[Annotated[str, Field(min_length=1)]] | None = _Values
    max_tokens: list[Annotated[int, Field(ge=1, le=INT32_MAX)]] | None = _Values
    temperature: list[Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)]] | None = _Values
    top_p: list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] | None = _Values
    top_k: list[Annotated[int, Field(ge=0, le=INT32_MAX)]] | None = _Values
    n: list[Annotated[int, Field(ge=1, le=128)]] | None = _Values

    @model_validator(mode="after")
    def _combinations(self) -> MatrixSpec:
        lists = self.axes()
        if not lists:
            raise ValueError("an empty matrix: give at least one key a list of values")
        for key, values in lists:
            if len(set(values)) != len(values):
                raise ValueError(f"matrix.{key} lists a value twice")
        count = 1
        for _, values in lists:
            count *= len(values)
        if count > MAX_COMBINATIONS:
            raise ValueError(
                f"the matrix makes {count} combinations; at most {MAX_COMBINATIONS} per job"
            )
        return self

    def axes(self) -> list[tuple[str, list[Any]]]:
        """(camelCase key, values) in a fixed order: model, provider, then the parameters."""
        return [
            (to_camel(name), values)
            for name in type(self).model_fields
            if (values := getattr(self, name)) is not None
        ]


class JobSpec(StrictModel):
    provider: str | None = Field(
        default=None, description="a provider the project file declares (default: fireworks)"
    )
    model: str | None = Field(
        default=None,
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
    reuse: bool = Field(
        default=True,
        description="reuse answers already paid for (same provider, model, parameters and row); "
        "false when fresh samples are the point (temperature > 0)",
    )
    canary: CanarySpec | None = Field(
        default=None, description="run a sample first; the full job only if it passes"
    )
    row_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="follow-up jobs of the rows that failed for a passing reason (rate limits, "
        "5xx, timeouts, expiry); rows that failed for good are never sent again",
    )
    response_format: ResponseFormatSpec | None = Field(
        default=None, description="structured output: sent as response_format, checked at merge"
    )
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

    budget: JobBudget | None = Field(default=None, description="a spending limit (docs/cost.md)")
    matrix: MatrixSpec | None = Field(
        default=None,
        description="lists of values (model, provider, inference parameters): one "
        "job per combination, named <name>-<combination>",
    )
    depends_on: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="jobs whose results must be verified before this job "
        "runs (ordering without data)",
    )

    @field_validator("model", mode="before")
    @classmethod
    def _model_given(cls, value: Any) -> Any:
        """``model:`` left empty is a mistake, not "no model" (a matrix gives it, or nothing)."""
        if value is None:
            raise PydanticCustomError("string_type", "Input should be a valid string")
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        return None if value is None else _model_name(value)

    @model_validator(mode="wrap")
    @classmethod
    def _model_required(cls, data: Any, handler: ModelWrapValidatorHandler[JobSpec]) -> JobSpec:
        """No model and no matrix.model: "missing required field 'model'", beside any other
        error."""
        matrix = data.get("matrix") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or "model" in data
            or (isinstance(matrix, dict) and "model" in matrix)
        ):
            return handler(data)
        missing: InitErrorDetails = {"type": "missing", "loc": ("model",), "input": data}
        errors = [missing]
        try:
            handler(data)
        except ValidationError as exc:
            errors += [_details(e) for e in exc.errors()]
        raise ValidationError.from_exception_data(cls.__name__, errors)

    @model_validator(mode="after")
    def _model_once(self) -> JobSpec:
        swept = dict(self.matrix.axes()) if self.matrix is not None else {}
        params = self.inference_parameters.model_dump(by_alias=True, exclude_none=True)
        given = {"model": self.model, "provider": self.provider, **params}
        both = sorted(k for k in swept if given.get(k) is not None)
        if both:
            raise ValueError(f"{', '.join(both)}: set in spec and in spec.matrix; keep one")
        return self

    @field_validator("precision")
    @classmethod
    def _check_precision(cls, value: str | None) -> str | None:
        if value is not None and value not in PRECISIONS:
            raise ValueError(f"unknown precision '{value}'; one of {', '.join(PRECISIONS)}")
        return value

    @model_validator(mode="after")
    def _canary_reuses(self) -> JobSpec:
        if self.canary is not None and not (self.reuse and self.input_dataset):
            raise ValueError(
                "canary needs reuse (its answers are reused by the full job) and "
                "an inputDataset declared in the manifests"
            )
        return self

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


def _duration(value: object) -> float:
    """A duration in a file is read by the flags' one parser (``config.parse_duration``): the
    same spellings (``30``, ``30s``, ``500ms``, ``2m``, ``1h``), zero and negative refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"not a duration: {value!r} (e.g. 30, 30s, 500ms, 2m, 1h)")
    return parse_duration(str(value))


Duration = Annotated[
    float,
    BeforeValidator(_duration, json_schema_input_type=float | str),
    Field(json_schema_extra={"examples": [30, "30s", "2m"]}),
]


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


class PriceEntry(StrictModel):
    """One model's batch price, US dollars per million tokens; overrides the shipped table."""

    model: str = Field(min_length=1, description="the model name as jobs write it")
    provider: str = Field(default="fireworks", min_length=1)
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0, description="default: the input price")
    as_of: str | None = Field(default=None, description="when the figure was true")
    source: str | None = Field(default=None, description="where the figure comes from")


class TokenizerEntry(StrictModel):
    """A model's own ``tokenizer.json`` (Hugging Face format), for exact input token counts."""

    model: str = Field(min_length=1, description="the model name as jobs write it")
    path: str = Field(min_length=1, description="relative to the root")


class ProjectBudget(StrictModel):
    max_cost: float | None = Field(
        default=None, gt=0, description="US dollars one plan may cost; apply refuses more (exit 4)"
    )
    compare: Literal["expected", "worstCase"] = Field(
        default="worstCase", description="the figure held against every budget"
    )


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
    poll_interval: Duration | None = Field(
        default=None, description="time between passes of apply --wait: 30 (seconds), 30s, 2m"
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

    prices: list[PriceEntry] = Field(default_factory=list, description="batch prices, per 1M")
    budget: ProjectBudget = Field(default_factory=ProjectBudget)
    tokenizers: list[TokenizerEntry] = Field(
        default_factory=list, description="exact token counts (needs the tokenizers package)"
    )

    @field_validator("tokenizers")
    @classmethod
    def _relative_tokenizers(cls, value: list[TokenizerEntry]) -> list[TokenizerEntry]:
        cls._relative([t.path for t in value])
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
    adapter: TypeAdapter[Manifest] = TypeAdapter(Annotated[Manifest, Field(discriminator="kind")])
    schema = adapter.json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "batchops manifest"
    return schema
