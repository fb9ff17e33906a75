"""The error tree and Diagnostic. Imports nothing of ours; everything else raises these.

Foreign errors (httpx, YAML, pydantic) are translated at the boundary that meets them and chained
with ``from exc``; only ``cli`` turns an error into an exit code, using ``exit_code``.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2  # plan --detailed-exitcode: remote changes pending
EXIT_JOB_FAILED = 3  # a declared job failed, or expired with no resumes left
EXIT_REFUSED = 4  # refused by a budget or policy; nothing was sent
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # SIGTERM (128 + 15); watch and serve stop gracefully instead, exit 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so cleanup runs as for Ctrl-C (the CLI installs it)."""


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in one input file, located as precisely as we can (1-based line and column)."""

    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class BatchopsError(Exception):
    """Base of every error batchops raises on purpose."""

    exit_code: int = EXIT_ERROR
    retryable: bool = False


class ConfigError(BatchopsError):
    """Bad flags or environment (a missing account ID, a malformed URL)."""


class InvalidInputError(BatchopsError):
    """Manifests or datasets are invalid; carries every problem found, not just the first."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics)
        count = len(self.diagnostics)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the input")


class ApiError(BatchopsError):
    """An HTTP call failed. Never carries the API key: only method, path, status and message."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int = 0,
        code: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.code = code
        self.server_message = message
        self.retry_after = retry_after
        where = f"{method} {path}: " if method else ""
        status_text = f"HTTP {status}" if status else "connection error"
        super().__init__(f"{where}{status_text}{f' {code}' if code else ''}: {message}")


class TransportError(ApiError):
    """No HTTP response at all (refused, reset, timed out)."""

    retryable = True


class DeadlineExceededError(ApiError):
    """The command's deadline (``--timeout``) passed during a call; a retry would pass it too."""


class AuthError(ApiError):
    """401/403: the key is missing, invalid or lacks permission."""


class NotFoundError(ApiError):
    """404."""


class ConflictError(ApiError):
    """409 ALREADY_EXISTS / ABORTED."""


class RateLimitedError(ApiError):
    """429 after the client's retries ran out."""

    retryable = True


class ServerError(ApiError):
    """5xx after the client's retries ran out."""

    retryable = True


class OwnershipError(BatchopsError):
    """A resource with our deterministic ID exists but is not ours, or differs from what we want."""


class StalePlanError(BatchopsError):
    """A saved plan no longer matches what the API reports; plan again."""


class BudgetError(BatchopsError):
    """The plan is over a budget (or its cost cannot be checked against one): nothing is sent."""

    exit_code = EXIT_REFUSED

    def __init__(self, refusals: tuple[str, ...]) -> None:
        self.refusals = refusals
        super().__init__("refused, nothing was sent: " + "; ".join(refusals))


class AlreadyRunningError(BatchopsError):
    """Another daemon holds this project's lock."""
