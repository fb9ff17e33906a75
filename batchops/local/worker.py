"""The background worker: claims runnable jobs (a lease in SQLite) and drives them through
VALIDATING -> PENDING -> RUNNING -> WRITING_RESULTS -> COMPLETED, running rows in batches through an
engine. Output lines are appended, then the cursor, byte offsets and progress are committed in one
SQLite update, so a restart truncates the files back to the committed offsets and repeats nothing.

Started and stopped by ``server.EmbeddedServer``; stops promptly on its ``threading.Event`` and
releases every lease it holds, so a restarted server resumes its jobs at once (only a killed
process leaves its leases to lapse).
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson

from batchops.local import datasets, jobs, openai_rows, openai_worker, outputs, rows
from batchops.local.backend import Backend
from batchops.local.engines import Engine, Outcome, job_params, make_engine
from batchops.local.jobs import JobKey
from batchops.local.problems import ApiProblem
from batchops.local.timeutil import now, rfc3339
from batchops.providers.fireworks.wire import (
    DATASET_STATE_READY,
    JOB_STATE_CANCELLED,
    JOB_STATE_COMPLETED,
    JOB_STATE_DELETING_CLEANING_UP,
    JOB_STATE_EXPIRED,
    JOB_STATE_FAILED,
    JOB_STATE_PENDING,
    JOB_STATE_RUNNING,
    JOB_STATE_VALIDATING,
    JOB_STATE_WRITING_RESULTS,
    TERMINAL_JOB_STATES,
    resource_id,
)

BATCH_SIZE = 256
log = logging.getLogger(__name__)


IDLE_POLL_MAX = 1.0  # seconds between looks for work while idle


class Worker:
    def __init__(self, backend: Backend, *, engine: Engine | None = None) -> None:
        self.backend = backend
        self.engine = engine or make_engine(backend.config)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        # Held while a batch's rows are appended and committed: once ``stop`` holds it with
        # ``stopping`` set, this worker writes nothing more, so its leases can be handed back.
        self.writing = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="batchops-worker", daemon=True)
        self._steps: dict[str, Callable[[Any], bool]] = {
            JOB_STATE_VALIDATING: self._validate,
            JOB_STATE_PENDING: self._start,
            JOB_STATE_RUNNING: self._run,
            JOB_STATE_WRITING_RESULTS: self._complete,
            JOB_STATE_DELETING_CLEANING_UP: self._delete,
            jobs.JOB_STATE_CANCELLING: self._cancel,
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop, and release our leases even if a slow engine call outlives ``timeout``."""
        self.stopping.set()
        self.backend.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.engine.close()
        with self.writing:
            jobs.release_all(self.backend, self.owner)

    def _loop(self) -> None:
        """Poll for work, backing off to IDLE_POLL_MAX while there is none (work made in this
        process wakes us at once; another process's is seen within a second)."""
        idle = self.backend.config.poll_interval
        while not self.stopping.is_set():
            if self._run_once_guarded():
                idle = self.backend.config.poll_interval
                continue
            if self.backend.wake.wait(idle):
                self.backend.wake.clear()
                idle = self.backend.config.poll_interval
            else:
                idle = min(idle * 2, max(IDLE_POLL_MAX, self.backend.config.poll_interval))

    def _run_once_guarded(self) -> bool:
        """``run_once``, but nothing it raises ends the thread every account's jobs depend on
        (a locked database, a full disk): logged, and the loop sleeps as when idle."""
        try:
            return self.run_once()
        except Exception:
            log.exception("local backend worker: a pass failed; trying again")
            return False

    def run_once(self) -> bool:
        """Claim and advance one job; False when there was nothing to do."""
        for key in jobs.runnable(self.backend, self.owner):
            if self._claim(key):
                try:
                    return self._drive_or_fail(key)
                finally:
                    jobs.release(self.backend, key, self.owner)
        return False

    def _drive_or_fail(self, key: JobKey) -> bool:
        """A job whose processing raises fails, with the reason, instead of stopping the worker
        (or being claimed and crashing again forever, after every restart)."""
        try:
            return self._drive(key)
        except (sqlite3.Error, OSError):
            raise  # the machine's trouble (a locked database, a full disk), not the job's: retried
        except Exception as exc:
            log.exception("local backend worker: job %s/%s failed", key.account, key.id)
            row = jobs.find_row(self.backend, key.account, key.id)
            if row is None or row["state"] in TERMINAL_JOB_STATES:
                return True
            return self._fail(row, "INTERNAL", f"the job could not be processed: {exc}")

    def _claim(self, key: JobKey) -> bool:
        with self.writing:  # no new lease once stop() has handed ours back
            return not self.stopping.is_set() and jobs.claim(self.backend, key, self.owner)

    def _drive(self, key: JobKey) -> bool:
        """Advance the job step by step; False when it must wait (input not ready, stopping)."""
        while not self.stopping.is_set():
            row = jobs.find_row(self.backend, key.account, key.id)
            step = self._steps.get(row["state"]) if row else None
            if row is None or step is None:
                return True
            ending = (JOB_STATE_DELETING_CLEANING_UP, jobs.JOB_STATE_CANCELLING)
            if row["state"] not in ending and now() > row["expire_time"]:
                return self._expire(row)
            if not step(row):
                return False
        return False

    def _commit(self, row: Any, **columns: Any) -> bool:
        return jobs.commit(self.backend, JobKey(row["account"], row["id"]), self.owner, **columns)

    def _pause(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the sleep ran its course."""
        return seconds <= 0 or not self.stopping.wait(seconds)

    # --- steps ---------------------------------------------------------------------------------

    def _validate(self, row: Any) -> bool:
        if not self._pause(self.backend.config.stage_delay):
            return False
        doc = orjson.loads(row["doc"])
        account, input_id = row["account"], resource_id(doc["inputDatasetId"])
        try:
            dataset = datasets.get_row(self.backend, account, input_id)
        except ApiProblem as exc:
            return self._fail(row, "NOT_FOUND", f"input dataset: {exc.message}")
        if dataset["state"] != DATASET_STATE_READY:
            return False  # waits in VALIDATING until the upload is validated
        if "openai" in doc:  # an OpenAI batch: its own line rules, every error in its errors
            files = self._inputs(account, input_id)
            return openai_worker.validate(self.backend, self.owner, row, files, COUNTERS)
        try:
            total = rows.scan(self._inputs(account, input_id), self._done(row))
        except rows.RowError as exc:
            return self._fail(row, "INVALID_ARGUMENT", str(exc))
        progress = {"percent": 0, "totalInputRequests": total, **dict.fromkeys(COUNTERS, 0)}
        return self._commit(
            row,
            state=JOB_STATE_PENDING,
            progress=progress,
            lifecycle={"validatedTime": rfc3339(now())},
        )

    def _start(self, row: Any) -> bool:
        if not self._pause(self.backend.config.stage_delay):
            return False
        outputs.ensure(self.backend, row)
        lifecycle = {**orjson.loads(row["lifecycle"] or b"{}"), "runStartTime": rfc3339(now())}
        return self._commit(row, state=JOB_STATE_RUNNING, lifecycle=lifecycle)

    def _run(self, row: Any) -> bool:
        outputs.ensure(self.backend, row)
        outputs.truncate(self.backend, row)
        return _Run(self, row).go()

    def _complete(self, row: Any) -> bool:
        if not self._pause(self.backend.config.stage_delay):
            return False
        progress = orjson.loads(row["progress"])
        outputs.finalise(self.backend, row, progress["outputRows"])
        self._finish_batch(row, None)
        return self._end(row, JOB_STATE_COMPLETED, {"code": "OK", "message": ""})

    def _expire(self, row: Any) -> bool:
        progress = orjson.loads(row["progress"] or b"{}")
        outputs.finalise(self.backend, row, progress.get("outputRows", 0))
        self._finish_batch(row, "batch_expired")
        message = "job exceeded its maximum duration; finished rows are in the output dataset"
        return self._end(row, JOB_STATE_EXPIRED, {"code": "DEADLINE_EXCEEDED", "message": message})

    def _fail(self, row: Any, code: str, message: str) -> bool:
        lifecycle = {"validatedTime": None, "runStartTime": None, "endTime": rfc3339(now())}
        return self._commit(
            row,
            state=JOB_STATE_FAILED,
            status={"code": code, "message": message},
            lifecycle=lifecycle,
        )

    def _end(self, row: Any, state: str, status: dict[str, str]) -> bool:
        lifecycle = {**orjson.loads(row["lifecycle"] or b"{}"), "endTime": rfc3339(now())}
        return self._commit(row, state=state, status=status, lifecycle=lifecycle)

    def _cancel(self, row: Any) -> bool:
        """A cancelled OpenAI batch: keep the committed partial output, list the rest as
        batch_cancelled, end as cancelled. Rows in flight when the cancel arrived were not
        committed (the cancel stops the commit), so they are listed as cancelled too."""
        progress = orjson.loads(row["progress"] or b"{}")
        outputs.finalise(self.backend, row, progress.get("outputRows", 0))
        self._finish_batch(row, "batch_cancelled")
        lifecycle = {**orjson.loads(row["lifecycle"] or b"{}"), "endTime": rfc3339(now())}
        return jobs.commit(
            self.backend,
            JobKey(row["account"], row["id"]),
            self.owner,
            cancelling=True,
            state=JOB_STATE_CANCELLED,
            status={"code": "CANCELLED", "message": "the batch was cancelled"},
            lifecycle=lifecycle,
        )

    def _finish_batch(self, row: Any, code: str | None) -> None:
        doc = orjson.loads(row["doc"])
        if "openai" in doc:
            files = self._inputs(row["account"], resource_id(doc["inputDatasetId"]))
            openai_worker.finish(self.backend, row, files, code)

    def _delete(self, row: Any) -> bool:
        """DELETE of a running job: keep the committed partial output, then remove the job."""
        if row["progress"]:
            outputs.finalise(self.backend, row, orjson.loads(row["progress"])["outputRows"])
        jobs.finish_delete(self.backend, JobKey(row["account"], row["id"]))
        return True

    # --- helpers -------------------------------------------------------------------------------

    def _inputs(self, account: str, dataset_id: str) -> list[tuple[str, Any]]:
        names = [
            f["filename"]
            for f in datasets.files(self.backend, account, dataset_id)
            if f["uploaded_size"] is not None
        ]
        return [(name, self.backend.file_path(account, dataset_id, name)) for name in names]

    def _done(self, row: Any) -> set[str]:
        """custom_ids answered successfully anywhere in the chain this job continues."""
        done: set[str] = set()
        continued = orjson.loads(row["doc"]).get("continuedFromJobName", "")
        for link in outputs.chain(self.backend, row["account"], continued):
            done |= outputs.successful_ids(self.backend, link["account"], outputs.output_id(link))
        return done


COUNTERS = (
    "totalProcessedRequests",
    "successfullyProcessedRequests",
    "failedRequests",
    "outputRows",
    "inputTokens",
    "outputTokens",
    "cachedInputTokenCount",
)


class _Run:
    """One RUNNING stretch of a job: batches until done, stopped, deleted or expired."""

    def __init__(self, worker: Worker, row: Any) -> None:
        self.worker, self.row = worker, row
        self.doc = orjson.loads(row["doc"])
        self.progress: dict[str, int] = orjson.loads(row["progress"])
        self.params = job_params(self.doc.get("inferenceParameters"))
        self.batch_id: str | None = row["id"] if "openai" in self.doc else None  # OpenAI lines
        delay = worker.backend.config.row_delay
        self.batch_size = BATCH_SIZE if delay <= 0 else max(1, min(BATCH_SIZE, int(0.2 / delay)))

    def go(self) -> bool:
        account = self.row["account"]
        inputs = self.worker._inputs(account, resource_id(self.doc["inputDatasetId"]))
        parser = openai_rows.parse if self.batch_id else rows.parse
        done = self.worker._done(self.row)
        pending = rows.pending(inputs, done, self.row["cursor"], parser=parser)
        out_path, err_path = outputs.paths(self.worker.backend, self.row)
        with out_path.open("ab") as out, err_path.open("ab") as err:
            while batch := list(itertools.islice(pending, self.batch_size)):
                if not self._batch(batch, out, err):
                    return False
                if now() > self.row["expire_time"]:
                    return True  # _drive sees the expiry and ends the job
        self.progress["percent"] = 100
        return self.worker._commit(
            self.row, state=JOB_STATE_WRITING_RESULTS, progress=self.progress
        )

    def _batch(self, batch: list[tuple[int, dict[str, Any]]], out: BinaryIO, err: BinaryIO) -> bool:
        if not self.worker._pause(self.worker.backend.config.row_delay * len(batch)):
            return False
        outcomes = self._outcomes([r for _, r in batch])
        with self.worker.writing:
            if self.worker.stopping.is_set():
                return False  # stop() may have released the lease: these rows are someone else's
            return self._save(batch, outcomes, out, err)

    def _outcomes(self, batch: list[dict[str, Any]]) -> list[Outcome]:
        """The engine's answers; when it raises on a batch, each row is tried alone, and a row
        it raises on becomes an error row, so one bad row never fails (or stalls) the job."""
        engine, model = self.worker.engine, self.doc["model"]
        try:
            return engine.run(model, self.params, batch)
        except Exception:  # noqa: BLE001 - any engine failure: find the row(s) it comes from
            return [self._one(row) for row in batch]

    def _one(self, row: dict[str, Any]) -> Outcome:
        try:
            return self.worker.engine.run(self.doc["model"], self.params, [row])[0]
        except Exception as exc:  # noqa: BLE001 - the row's error line says what happened
            error = {"message": f"the row could not be processed: {exc}", "code": "INTERNAL"}
            return Outcome(row["custom_id"], error=error)

    def _save(
        self,
        batch: list[tuple[int, dict[str, Any]]],
        outcomes: list[Outcome],
        out: BinaryIO,
        err: BinaryIO,
    ) -> bool:
        for outcome in outcomes:
            self._write(outcome, out, err)
        out.flush()
        err.flush()
        self._count_progress()
        return self.worker._commit(
            self.row,
            cursor=batch[-1][0] + 1,
            out_offset=out.tell(),
            err_offset=err.tell(),
            progress=self.progress,
        )

    def _write(self, outcome: Outcome, out: BinaryIO, err: BinaryIO) -> None:
        p = self.progress
        p["totalProcessedRequests"] += 1
        if outcome.response is None:
            p["failedRequests"] += 1
            if self.batch_id:
                err.write(openai_rows.result_line(self.batch_id, outcome))
                return
            err.write(
                orjson.dumps({"custom_id": outcome.custom_id, "error": outcome.error}) + b"\n"
            )
            return
        usage = outcome.response.get("usage") or {}
        p["successfullyProcessedRequests"] += 1
        p["outputRows"] += 1
        p["inputTokens"] += int(usage.get("prompt_tokens") or 0)
        p["outputTokens"] += int(usage.get("completion_tokens") or 0)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        p["cachedInputTokenCount"] += int(cached)
        if self.batch_id:
            out.write(openai_rows.result_line(self.batch_id, outcome))
            return
        line = {"custom_id": outcome.custom_id, "response": outcome.response}
        out.write(orjson.dumps(line) + b"\n")

    def _count_progress(self) -> None:
        total = self.progress["totalInputRequests"] or 1
        done = self.progress["totalProcessedRequests"]
        self.progress["percent"] = min(100, done * 100 // total)
