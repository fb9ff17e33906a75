"""Fireworks' rules for a job, checked at ``validate`` time (``batchops.providers.rules``).

Fireworks reads the neutral dataset rows as they are, so its rules are today's: the row checks of
``batchops.datasets`` (custom_id, chat or completion body) and the manifest's (known precisions,
parameter ranges). What is left to check here is what only a job knows: a precision the service
does not list. Rows are never read again.
"""

from __future__ import annotations

from batchops.errors import Diagnostic
from batchops.providers.catalog import PRECISIONS
from batchops.providers.rules import JobCheck, RowsFn


def check_job(job: JobCheck, rows: RowsFn) -> list[Diagnostic]:
    if job.precision is not None and job.precision not in PRECISIONS:
        return [job.at(f"precision {job.precision} is not one Fireworks offers", field="precision")]
    return []
