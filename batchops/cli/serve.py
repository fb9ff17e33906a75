"""`batchops serve`: the local Fireworks-compatible backend as a real server on 127.0.0.1.

Builds a BackendConfig from flags (the API key, if any, from FIREWORKS_API_KEY via load_settings)
and runs ``batchops.local.server.serve`` until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from batchops.cli.common import delay, duration, positive_int
from batchops.config import STATE_DIR, ensure_state_dir_above, load_settings
from batchops.errors import ConfigError
from batchops.private import private_dir

DEFAULT_DATA_DIR = Path(STATE_DIR) / "local"


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        parents=parents,
        help="run the local Fireworks-compatible backend",
        description="Serve the Fireworks batch-inference REST API locally (datasets, batch "
        "inference jobs, signed-URL transfers) and the OpenAI Files + Batches API (/v1/files, "
        "/v1/batches). Point FIREWORKS_BASE_URL at the printed URL, or an OpenAI client's "
        "base_url at the printed URL + /v1. "
        "When FIREWORKS_API_KEY is set, /v1 requests must carry it as a bearer token.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=8808, help="port (default: %(default)s; 0 = any)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="SQLite database and files (default: %(default)s)",
    )
    _engine_flags(p)
    _test_flags(p)
    p.set_defaults(func=run)


def _engine_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument(
        "--engine",
        choices=("echo", "openai"),
        default="echo",
        help="echo: instant, deterministic; openai: forward rows to an "
        "OpenAI-compatible server (default: %(default)s)",
    )
    g.add_argument(
        "--openai-base-url",
        metavar="URL",
        help="base URL of the OpenAI-compatible server, e.g. http://127.0.0.1:8000",
    )
    g.add_argument(
        "--openai-concurrency",
        type=positive_int,
        default=8,
        metavar="N",
        help="concurrent requests to it (default: %(default)s)",
    )
    g.add_argument(
        "--model-map",
        action="append",
        default=[],
        metavar="FROM=TO",
        help="serve Fireworks model FROM as TO (repeatable; default: same name)",
    )


def _test_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("testing knobs")
    g.add_argument("--row-delay", type=delay, default=0.0, metavar="S", help="seconds per row")
    g.add_argument(
        "--stage-delay",
        type=delay,
        default=0.0,
        metavar="S",
        help="seconds spent in each job stage",
    )
    g.add_argument(
        "--max-job-duration",
        type=duration,
        default=86400.0,
        metavar="S",
        help="jobs expire after this many seconds (default: %(default)s)",
    )
    g.add_argument(
        "--lease-seconds",
        type=duration,
        default=15.0,
        metavar="S",
        help="a worker's claim on a job, renewed every batch; a killed server's jobs wait this "
        "long before another takes them (a stopped one hands them back at once) "
        "(default: %(default)s)",
    )
    for name in ("429", "500", "503", "drop"):
        g.add_argument(
            f"--fault-{name}",
            type=float,
            default=0.0,
            metavar="P",
            help=f"probability of a {name} answer on /v1 routes",
        )
    g.add_argument(
        "--latency", type=delay, default=0.0, metavar="S", help="seconds added to every /v1 request"
    )
    g.add_argument("--fault-seed", type=int, default=None, metavar="N", help="seed of the faults")
    g.add_argument(
        "--openai-enqueued-token-limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="OpenAI batches: input tokens that the in-flight batches of one model may enqueue; "
        "a batch past it fails with token_limit_exceeded, as on OpenAI (default: no limit)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _model_map(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source or not target:
            raise ConfigError(f"--model-map expects FROM=TO, got {pair!r}")
        mapping[source] = target
    return mapping


def build_config(args: argparse.Namespace) -> Any:
    from batchops.local.config import BackendConfig, FaultConfig

    if args.engine == "openai" and not args.openai_base_url:
        raise ConfigError("--engine openai needs --openai-base-url")
    settings = load_settings()
    ensure_state_dir_above(args.data_dir)  # .batchops/ ignores itself before the key lands there
    faults = FaultConfig(
        rate_429=args.fault_429,
        rate_500=args.fault_500,
        rate_503=args.fault_503,
        rate_drop=args.fault_drop,
        latency=args.latency,
        seed=args.fault_seed,
    )
    return BackendConfig(
        data_dir=args.data_dir,
        api_key=settings.api_key.reveal() if settings.api_key else None,
        engine=args.engine,
        openai_base_url=args.openai_base_url,
        model_map=_model_map(args.model_map),
        openai_concurrency=args.openai_concurrency,
        row_delay=args.row_delay,
        stage_delay=args.stage_delay,
        max_job_duration=args.max_job_duration,
        lease_seconds=args.lease_seconds,
        faults=faults,
        openai_enqueued_token_limit=args.openai_enqueued_token_limit,
    )


def run(args: argparse.Namespace) -> int:
    from batchops.local.middleware import is_loopback
    from batchops.local.server import serve

    config = build_config(args)
    if args.data_dir == DEFAULT_DATA_DIR:  # .batchops/ private too, not only its local/ folder
        private_dir(Path.cwd() / DEFAULT_DATA_DIR, root=Path.cwd())
    if not config.api_key and not is_loopback(args.host):
        print(
            f"warning: serving on {args.host} without FIREWORKS_API_KEY: anyone who can reach "
            "this address can read and change every dataset and job",
            file=sys.stderr,
        )

    def ready(url: str) -> None:
        auth = "bearer auth on" if config.api_key else "no auth"
        print(
            f"batchops local backend listening on {url} (data: {config.data_dir}, "
            f"engine: {config.engine}, {auth})",
            flush=True,
        )

    try:
        serve(config, host=args.host, port=args.port, on_ready=ready)
    except OSError as exc:
        raise ConfigError(f"cannot serve on {args.host}:{args.port}: {exc.strerror}") from exc
    print("stopped", file=sys.stderr)
    return 0
