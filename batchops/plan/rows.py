"""Rows, not jobs: which rows of a declared job are new requests and which are reused. Pure.

``split_rows`` takes a job's rows as (custom_id, request hash) and the answers the reuse index
knows for them (``batchops.reuse``), and returns a ``RowSplit``: the rows to send and, per job
that answered them, the rows reused. ``batchops.reconcile`` computes one per declared job before
planning; ``batchops.plan.jobs`` shows it ("120 new rows, 9,880 reused from reviews-v1") and puts
``rowsToSend`` in the job action's details, so cost counts only the rows sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from batchops.identity import canonical_json, parse_job_id
from batchops.manifest.desired import JobDecl
from batchops.plan.rowerrors import FailureSummary
from batchops.rowid import request_prefix


class AnswerLike(Protocol):
    """What the split needs of ``batchops.reuse.Answer``."""

    @property
    def job(self) -> str: ...


@dataclass(frozen=True)
class RowSplit:
    """A declared job's rows: those to send (a new request each) and those already answered.

    ``derived`` is the input holding only the rows to send (written by the reconciler, content
    addressed like any dataset): None when every row is sent (the declared dataset is read as
    it is) or none is (no job is needed)."""

    total: int
    send: tuple[str, ...]  # custom_ids of the rows to send, in dataset order
    reused_from: tuple[tuple[str, int], ...]  # (job that answered, rows), most rows first
    derived: DerivedInput | None = None
    canary: CanarySample | None = None  # `spec.canary`: the sample that runs first

    @property
    def reused(self) -> int:
        return self.total - len(self.send)

    def describe(self) -> str:
        """``120 new rows, 9,880 reused from reviews-v1``; ``all 9,880 rows reused from
        reviews-v1`` when nothing is sent. Jobs are named as declared, each once."""
        labels = list(dict.fromkeys(_job_label(job) for job, _ in self.reused_from))
        more = f" and {len(labels) - 3} more" if len(labels) > 3 else ""
        sources = ", ".join(labels[:3]) + more
        if self.reused and not self.send:
            return f"all {self.reused:,} row{'' if self.reused == 1 else 's'} reused from {sources}"
        text = f"{len(self.send):,} new row{'' if len(self.send) == 1 else 's'}"
        return text + (f", {self.reused:,} reused from {sources}" if self.reused else "")

    @property
    def sources(self) -> frozenset[str]:
        """The jobs whose answers this job reuses (``--prune`` keeps them)."""
        return frozenset(job for job, _ in self.reused_from)


@dataclass(frozen=True)
class DerivedInput:
    """The rows to send of one job, as a file under ``.batchops/derived/``."""

    dataset: str  # the declared dataset they come from
    path: Path
    sha256: str
    rows: int
    size: int


@dataclass(frozen=True)
class CanarySample:
    """A job's canary: a deterministic sample (the rows to send with the lowest request hashes,
    so it does not depend on row order) of the rows the full job would send without it."""

    input: DerivedInput
    of: int  # rows the full job would send without the canary
    answers: tuple[tuple[str, str], ...] = ()  # (custom_id, answer text) of a few, once answered
    # rows of the sample whose answers break the job's responseFormat (failed rows of the canary,
    # though its provider called them done), with the first reason
    nonconforming: int = 0
    violation: str | None = None


@dataclass(frozen=True)
class FailedRows:
    """A job's failed rows after its results were merged, classified (``plan.rowerrors``).

    ``job`` is the lineage's last job the merge went up to; ``retry`` the transiently failed rows
    as a dataset under ``.batchops/derived/`` (None: none, or the input is not a declared
    dataset)."""

    job: str
    transient: tuple[str, ...]
    permanent: tuple[tuple[str, str], ...]  # (custom_id, error)
    retry: DerivedInput | None = None
    summary: FailureSummary | None = None  # by class and reason, for status and describe


def job_prefix(decl: JobDecl) -> bytes:
    """What every request of ``decl`` shares: provider, model, parameters (precision too)."""
    params = dict(decl.inference_parameters)
    if isinstance(params.get("extraBody"), Mapping):  # as jobs carry it (RemoteJob.parameters)
        params["extraBody"] = canonical_json(params["extraBody"])
    if decl.precision:
        params["precision"] = decl.precision
    return request_prefix(decl.provider, decl.model, params)


def split_rows(
    rows: Sequence[tuple[str, bytes]],
    known: Mapping[bytes, AnswerLike],
    *,
    exclude_jobs: frozenset[str] = frozenset(),
) -> RowSplit:
    """Rows whose request has a known answer (from a job not in ``exclude_jobs``) are reused;
    the others are sent. A request asked twice in one dataset is sent twice (each row its own)."""
    send: list[str] = []
    sources: Counter[str] = Counter()
    for custom_id, digest in rows:
        answer = known.get(digest)
        if answer is None or answer.job in exclude_jobs:
            send.append(custom_id)
        else:
            sources[answer.job] += 1
    reused = tuple(sorted(sources.items(), key=lambda item: (-item[1], item[0])))
    return RowSplit(total=len(rows), send=tuple(send), reused_from=reused)


def _job_label(job_key: str) -> str:
    """A job key without its hash and attempt suffixes (``reviews-v1-1a2b...`` -> reviews-v1)."""
    parts = parse_job_id(job_key)
    return parts.name if parts is not None else job_key
