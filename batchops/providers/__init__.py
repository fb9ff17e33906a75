"""Batch providers behind one protocol, and the provider-neutral model the planner works on.

Everything outside this package imports only from here (``batchops.providers``): the protocol
(``Provider``), the neutral model and the registry. Each provider's wire models and client stay in
its own module (``batchops.providers.fireworks``, ``batchops.providers.openai``); an import-linter
contract in pyproject keeps it so. See docs/providers.md.
"""

from batchops.providers.base import ProgressFn, Provider, Stopped
from batchops.providers.model import (
    DEFAULT_PROVIDER,
    DONE_STATES,
    ERRORS_FILE,
    OUTPUT_FILE,
    DatasetSpec,
    JobSpec,
    JobState,
    RemoteInput,
    RemoteJob,
    ResultRow,
    Rows,
    Tokens,
    result_row,
)

__all__ = [
    "DEFAULT_PROVIDER",
    "DONE_STATES",
    "ERRORS_FILE",
    "OUTPUT_FILE",
    "DatasetSpec",
    "JobSpec",
    "JobState",
    "ProgressFn",
    "Provider",
    "RemoteInput",
    "RemoteJob",
    "ResultRow",
    "Rows",
    "Stopped",
    "Tokens",
    "result_row",
]
