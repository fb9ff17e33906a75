"""The provider-neutral model: what the planner, the reconciler and the renderers see of a provider.

Each provider (``batchops.providers.fireworks``, ``batchops.providers.openai``, ...) maps its wire
types to these at its edge, so nothing above ``batchops.providers`` ever reads a provider's shape.
Observed values are frozen msgspec Structs (built in C, untracked by the cyclic collector): a
1,000-job plan makes thousands of them per pass.

- ``RemoteJob``: one batch job on a provider, under our content-addressed key, with its state
  mapped to ``JobState`` (the raw provider state string and status message kept beside it).
- ``RemoteInput``: one input (a Fireworks dataset, an OpenAI file) under our key.
- ``DatasetSpec`` / ``JobSpec``: what the planner asks a provider to create.
- ``ResultRow`` and ``result_row``: one merged result line, the same fields for every provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_PROVIDER = "fireworks"  # the provider a job without `spec.provider` runs on

# The layout a provider's download leaves in each lineage member's folder: its answers in
# OUTPUT_FILE, its failed rows in ERRORS_FILE (Fireworks' own names; other providers write theirs
# under these names), both JSONL keyed by custom_id. ``batchops.results`` merges them.
OUTPUT_FILE = "BIJOutputSet.jsonl"
ERRORS_FILE = "error-data"


class JobState(StrEnum):
    """A job's state as the reconciler reads it (DESIGN.md section 3).

    ``waiting`` (queued, validating), ``running`` (processing, writing results), ``finished``
    (completed), ``failed``, ``expired`` (its window ran out; finished rows are kept), ``cancelled``
    ``deleting`` (being deleted or gone: counts as neither running nor ours to touch) and
    ``incomplete`` (a job sent in parts, some never submitted and none running: the process
    submitting them stopped; the plan submits the rest). A provider maps a state it does not
    know to ``running``: never an error (section 3)."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DELETING = "deleting"
    INCOMPLETE = "incomplete"


# States after which a job changes no more (``deleting`` included: it will not run again).
DONE_STATES = frozenset(
    {JobState.FINISHED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED, JobState.DELETING}
)


class Rows(msgspec.Struct, frozen=True, gc=False):
    """Row counts of a job, as far as the provider reports them (0 when it does not)."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    percent: int = 0
    processed: int = 0  # rows run so far, succeeded or failed


class Tokens(msgspec.Struct, frozen=True, gc=False):
    """Token usage of a job or a row: input (prompt), output (completion), cached input."""

    input: int = 0
    output: int = 0
    cached: int = 0


class RemoteJob(msgspec.Struct, frozen=True, gc=False):
    """One batch job on a provider, in the reconciler's terms.

    ``key`` is our content-addressed job ID (``batchops.identity.job_id`` and its attempt and
    continuation forms); on Fireworks it is the job's own ID, on a provider that assigns IDs it is
    read from the job's metadata and ``remote_id`` is the server's ID. ``owner`` is the project
    whose mark the job carries (None: not made by batchops). ``parameters`` are the inference
    parameters in manifest form (camelCase; ``extraBody`` as canonical JSON text), for the plan's
    spec diff.
    """

    key: str
    remote_id: str
    owner: str | None
    state: JobState
    raw_state: str  # the provider's own state string, shown to people
    provider: str = DEFAULT_PROVIDER
    message: str = ""  # the provider's status message (why it failed, ...)
    code: str = ""  # the provider's error code for that message ("" none)
    model: str = ""
    input_id: str = ""  # our key of the input it reads
    parameters: Mapping[str, Any] = msgspec.field(default_factory=dict)
    precision: str | None = None
    rows: Rows | None = None  # None: the provider reported no progress
    tokens: Tokens = Tokens()
    created: str = ""  # RFC 3339 times, as the provider reports them ("" unknown)
    updated: str = ""
    expires: str = ""
    continued_from: str | None = None  # key of the job this one continues (lineage)
    output_id: str | None = None  # where its answers are (a dataset, a file)
    error_output_id: str | None = None  # where its failed rows are, when separate
    display_name: str = ""
    # Live duplicates of this job a concurrent apply created (providers that assign IDs): the
    # next pass cancels them through ``Provider.cancel_duplicates``.
    duplicates: tuple[str, ...] = ()

    def is_ours(self, project: str) -> bool:
        return self.owner == project


class RemoteInput(msgspec.Struct, frozen=True, gc=False):
    """One uploaded input (a Fireworks dataset, an OpenAI file) under our content-addressed key.

    ``ready`` is True once jobs may read it; ``raw_state`` says what it is otherwise.
    ``source_job`` is set on inputs a job wrote (a Fireworks output dataset)."""

    key: str
    remote_id: str
    owner: str | None
    ready: bool
    raw_state: str = ""
    provider: str = DEFAULT_PROVIDER
    rows: int | None = None
    source_job: str | None = None
    created: str = ""
    updated: str = ""

    def is_ours(self, project: str) -> bool:
        return self.owner == project


@dataclass(frozen=True)
class DatasetSpec:
    """An input the plan creates: the declared dataset's files under our key."""

    dataset_id: str
    name: str
    files: tuple[Path, ...]
    rows: int
    size: int
    display_name: str
    format: str | None
    providers: tuple[str, ...] = (DEFAULT_PROVIDER,)  # where it is missing: jobs there read it


@dataclass(frozen=True)
class JobSpec:
    """A job the plan creates (a first attempt, a retry, a replacement or a continuation)."""

    job_id: str
    name: str
    model: str
    input_dataset_id: str  # our key of the input
    inference_parameters: dict[str, Any]  # manifest form (camelCase; extraBody as JSON text)
    precision: str | None
    output_dataset_id: str  # our key of its output
    display_name: str
    continued_from: str | None  # key of the job it continues
    provider: str = DEFAULT_PROVIDER
    # The input's local files, when declared here: a provider whose request lines carry the
    # model (OpenAI-compatible) renders and uploads them per job, not per dataset.
    input_files: tuple[Path, ...] = ()


class ResultRow(msgspec.Struct, frozen=True, gc=False):
    """One merged result line, the same fields whatever the provider (docs/reconciler.md).

    ``response`` is the provider's raw answer, kept as it came; the other fields are read from it
    by the provider's mapping so that ``results``, budgets and pipelines never look at its shape."""

    custom_id: str
    text: str | None = None
    finish_reason: str | None = None
    usage: Tokens = Tokens()
    error: str | None = None  # the provider's message for a failed row
    error_code: str | None = None  # ... and its code, when it gave one
    job: str | None = None  # the key of the job that answered it
    response: Any = None


def result_row(line: Mapping[str, Any]) -> ResultRow:
    """A merged results line (``batchops.results`` writes them) as a ``ResultRow``."""
    usage = line.get("usage") or {}
    return ResultRow(
        custom_id=str(line.get("custom_id", "")),
        text=line.get("text"),
        finish_reason=line.get("finish_reason"),
        usage=Tokens(
            int(usage.get("input_tokens") or 0),
            int(usage.get("output_tokens") or 0),
            int(usage.get("cached_tokens") or 0),
        ),
        error=line.get("error"),
        error_code=line.get("error_code"),
        job=line.get("job"),
        response=line.get("response"),
    )
