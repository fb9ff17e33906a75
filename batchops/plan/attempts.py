"""How a job's attempts share the ``-t<k>`` numbers: row retries and ``--retry-failed``. Pure.

A declared job's family is its attempts (``<base>``, ``<base>-t1``, ``<base>-t2``, ...), each
with its continuations (``-r<j>``). Two things start a new attempt:

- a **row retry** (``spec.rowRetries``): the attempt before it finished (or expired with its
  resumes used up) and its merged results hold rows that failed for a passing reason; the new
  attempt sends just those rows;
- a **retry** (``apply --retry-failed``, ``spec.maxRetries``): the attempt before it failed or
  was cancelled as a whole; the new attempt sends again what that one was given.

Both take the next number of one sequence: one above every attempt the account holds, so no two
attempts share an ID and no finished attempt's ID is used again. Each is bounded by its own limit,
counted from the family itself (what the attempt before each one ended as), so a row retry never
uses up a ``--retry-failed`` and the other way round: a family has at most
``1 + rowRetries + maxRetries`` attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batchops.identity import JobIdParts
from batchops.providers import JobState, RemoteJob

_JOB_FAILED = frozenset({JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class Attempts:
    row_retries: int  # attempts made to send failed rows again
    retries: int  # attempts made after the attempt before failed or was cancelled
    next: int  # the number a new attempt takes


def attempts(family: Sequence[tuple[JobIdParts, RemoteJob]]) -> Attempts:
    """What a family (in attempt, resume order) has used of its two limits so far."""
    ended: dict[int, JobState] = {}  # attempt -> the state of its last job
    for parts, job in family:
        ended[parts.attempt] = job.state
    rows = retries = 0
    numbers = sorted(ended)
    for before in numbers[:-1]:  # each attempt after it was started by how it ended
        if ended[before] in _JOB_FAILED:
            retries += 1
        else:
            rows += 1
    return Attempts(rows, retries, (numbers[-1] + 1) if numbers else 0)


def attempt_input(family: Sequence[tuple[JobIdParts, RemoteJob]], number: int) -> str | None:
    """The input an attempt was given (its first job's; continuations name none of their own)."""
    first = next((job for parts, job in family if parts.attempt == number), None)
    return first.input_id or None if first is not None else None
