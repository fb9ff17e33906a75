"""Health, readiness and Prometheus metrics of the daemon, served on a loopback port.

``batchops.watch.service`` feeds ``Metrics`` from each ``PassRecord`` (via ``Daemon(on_pass=)``)
and from the client's ``on_response`` hook; ``HealthServer`` serves ``/healthz`` (alive),
``/readyz`` (the last pass succeeded, so the API answered) and ``/metrics`` from one private
``CollectorRegistry``, so nothing global leaks between daemons or tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from batchops.watch.loop import Outcome, PassRecord

# A pass running longer than this is reported as stuck by /readyz. Every network read has a
# deadline (batchops/deadline.py), so only a hostile server or a bug gets a pass near it.
STUCK_AFTER = 600.0
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Metrics:
    def __init__(
        self, *, stuck_after: float = STUCK_AFTER, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stuck_after, self._clock = stuck_after, clock
        self._pass_started: float | None = None
        self.registry = r = CollectorRegistry()
        self.pass_duration = Histogram(
            "batchops_pass_duration_seconds",
            "Duration of reconcile passes",
            buckets=PASS_BUCKETS,
            registry=r,
        )
        self.passes = Counter(
            "batchops_passes", "Reconcile passes by outcome", ["outcome"], registry=r
        )
        self.jobs = Gauge(
            "batchops_jobs", "Declared jobs by the state of their latest job", ["state"], registry=r
        )
        self.api_requests = Counter(
            "batchops_api_requests",
            "Fireworks API responses by HTTP status (0: no response)",
            ["method", "code"],
            registry=r,
        )
        self.rows = Counter(
            "batchops_result_rows",
            "Result rows downloaded and merged, by outcome",
            ["outcome"],
            registry=r,
        )
        self.spend = Counter(
            "batchops_spend_dollars",
            "US dollars the results merged by this daemon cost, from their "
            "usage and the price table",
            registry=r,
        )
        self.last_success = Gauge(
            "batchops_last_success_timestamp_seconds",
            "Unix time of the last successful pass",
            registry=r,
        )
        for outcome in Outcome:  # every series is exported from the start, at zero
            self.passes.labels(outcome=str(outcome))
        for rows in ("succeeded", "failed"):
            self.rows.labels(outcome=rows)
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready and self.stuck_for() is None

    def stuck_for(self) -> float | None:
        """Seconds the running pass has taken, once past ``stuck_after``; else None."""
        started = self._pass_started
        running = None if started is None else self._clock() - started
        return running if running is not None and running > self._stuck_after else None

    def pass_started(self) -> None:
        self._pass_started = self._clock()

    def observe_pass(self, record: PassRecord) -> None:
        self._pass_started = None
        self.pass_duration.observe(record.duration)
        self.passes.labels(outcome=str(record.outcome)).inc()
        self._ready = record.outcome is Outcome.OK
        if record.outcome is Outcome.OK:
            self.last_success.set(record.finished_at)
        if record.result is not None:
            self._set_job_states(record.result.job_states)

    def observe_response(self, method: str, status: int) -> None:
        self.api_requests.labels(method=method, code=str(status)).inc()

    def observe_rows(self, *, succeeded: int, failed: int) -> None:
        self.rows.labels(outcome="succeeded").inc(succeeded)
        self.rows.labels(outcome="failed").inc(failed)

    def observe_spend(self, dollars: float) -> None:
        self.spend.inc(dollars)

    def _set_job_states(self, states: Mapping[str, int]) -> None:
        self.jobs.clear()  # a state no job is in any more must not keep its old count
        for state, count in states.items():
            self.jobs.labels(state=state).set(count)


def health_app(metrics: Metrics) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app: two probes, and prometheus-client's own exposition for ``/metrics``."""
    prometheus = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            if metrics.ready:
                return _text(start_response, "200 OK", b"ready\n")
            stuck = metrics.stuck_for()
            why = b"not ready\n" if stuck is None else b"stuck: a pass has run for %d s\n" % stuck
            return _text(start_response, "503 Service Unavailable", why)
        if path == "/metrics":
            return prometheus(environ, start_response)  # type: ignore[no-any-return]
        return _text(start_response, "404 Not Found", b"not found\n")

    return app


def _text(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds must not flood the daemon's log."""


class HealthServer:
    """Serves ``health_app`` from a background thread; ``port=0`` picks a free port."""

    def __init__(self, metrics: Metrics, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = make_server(
            host,
            port,
            health_app(metrics),
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="batchops-health",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
