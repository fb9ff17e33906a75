"""Names and constants of the Fireworks REST API: job and dataset states, google.rpc codes,
resource names. No pydantic here: the client's observe path (``pages``) and the error mapping
(``responses``) need these without the wire models; ``wire`` re-exports every one of them.
"""

from __future__ import annotations

__all__ = [  # ``wire`` re-exports them all
    "DATASET_STATE_READY",
    "DATASET_STATE_UPLOADING",
    "DIRECT_UPLOAD_LIMIT",
    "ERRORS_FILE",
    "GONE_JOB_STATES",
    "JOB_STATE_ARCHIVED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_COMPLETED",
    "JOB_STATE_CREATING",
    "JOB_STATE_DELETED",
    "JOB_STATE_DELETING",
    "JOB_STATE_DELETING_CLEANING_UP",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_FAILED",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_VALIDATING",
    "JOB_STATE_WRITING_RESULTS",
    "RESULTS_FILE",
    "RPC_CODES",
    "RPC_NAMES",
    "TERMINAL_JOB_STATES",
    "dataset_resource",
    "job_resource",
    "resource_id",
]

# Job states the reference lists. Anything else a server sends is accepted and means "in progress".
JOB_STATE_VALIDATING = "JOB_STATE_VALIDATING"
JOB_STATE_PENDING = "JOB_STATE_PENDING"
JOB_STATE_CREATING = "JOB_STATE_CREATING"
JOB_STATE_RUNNING = "JOB_STATE_RUNNING"
JOB_STATE_WRITING_RESULTS = "JOB_STATE_WRITING_RESULTS"
JOB_STATE_COMPLETED = "JOB_STATE_COMPLETED"
JOB_STATE_FAILED = "JOB_STATE_FAILED"
JOB_STATE_CANCELLED = "JOB_STATE_CANCELLED"
JOB_STATE_EXPIRED = "JOB_STATE_EXPIRED"
JOB_STATE_DELETING = "JOB_STATE_DELETING"
JOB_STATE_DELETING_CLEANING_UP = "JOB_STATE_DELETING_CLEANING_UP"
JOB_STATE_DELETED = "JOB_STATE_DELETED"
JOB_STATE_ARCHIVED = "JOB_STATE_ARCHIVED"

# States after which a job changes no more. Deleting/deleted ones count as gone.
TERMINAL_JOB_STATES = frozenset(
    {JOB_STATE_COMPLETED, JOB_STATE_FAILED, JOB_STATE_CANCELLED, JOB_STATE_EXPIRED}
)
GONE_JOB_STATES = frozenset(
    {JOB_STATE_DELETING, JOB_STATE_DELETING_CLEANING_UP, JOB_STATE_DELETED, JOB_STATE_ARCHIVED}
)

DATASET_STATE_UPLOADING = "UPLOADING"
DATASET_STATE_READY = "READY"

RESULTS_FILE = "BIJOutputSet.jsonl"
ERRORS_FILE = "error-data"
DIRECT_UPLOAD_LIMIT = 150 * 1024 * 1024  # :upload takes files up to 150 MB; beyond, signed URLs

# google.rpc code numbers, for error bodies ({"code": 5, "message": ...}).
RPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
RPC_NAMES = {number: name for name, number in RPC_CODES.items()}


def job_resource(account: str, job_id: str) -> str:
    return f"accounts/{account}/batchInferenceJobs/{job_id}"


def dataset_resource(account: str, dataset_id: str) -> str:
    return f"accounts/{account}/datasets/{dataset_id}"


def resource_id(name: str) -> str:
    """The last path segment of a resource name (a bare ID is returned unchanged)."""
    return name.rsplit("/", 1)[-1]
