"""Security checks of issue 6, end to end (see SECURITY.md for the threat model and the list).

One real ``batchops serve`` subprocess with a distinctive API key serves a whole session of the CLI
(validate, plan, apply --wait, status, a failing call with a wrong key, a short ``watch`` run with
/metrics); every byte any of them printed or wrote is then searched for the key. Server-supplied
names and URLs are checked against a malicious server played by ``httpx.MockTransport``; the
server's own defences (loopback bind, bearer auth, signed URLs) are checked over its socket.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from batchops.cli import build_parser
from batchops.cli.serve import build_config
from batchops.config import Secret, load_settings
from batchops.errors import ApiError
from batchops.providers.fireworks.client import FireworksClient

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CANARY = "fw-SECRET-canary-7f3a9c2e51d04b86"
WRONG = "fw-SECRET-wrongkey-0d9e8c7b6a5f4e3d"
SECRETS = (CANARY.encode(), WRONG.encode())
CLEARED = (
    "FIREWORKS_API_KEY",
    "FIREWORKS_ACCOUNT_ID",
    "FIREWORKS_BASE_URL",
    "GITHUB_ACTIONS",
    "GITHUB_STEP_SUMMARY",
    "BATCHOPS_PROJECT",
    "NO_COLOR",
)


# -- the recorded session --------------------------------------------------------------------------


@dataclass
class Session:
    """Everything one CLI session printed and wrote, plus the facts that prove the key mattered."""

    root: Path
    project: Path
    data_dir: Path
    url: str
    outputs: dict[str, bytes] = field(default_factory=dict)  # label -> stdout/stderr/body bytes
    codes: dict[str, int] = field(default_factory=dict)  # command label -> exit status

    def cli(self, label: str, *args: str, key: str = CANARY) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [sys.executable, "-m", "batchops", *args],
            cwd=self.project,
            env=self.env(key),
            capture_output=True,
            timeout=90,
            check=False,
        )
        self.outputs[f"{label}: stdout"] = done.stdout
        self.outputs[f"{label}: stderr"] = done.stderr
        self.codes[label] = done.returncode
        return done

    def env(self, key: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        return {
            **env,
            "FIREWORKS_API_KEY": key,
            "FIREWORKS_ACCOUNT_ID": "local",
            "FIREWORKS_BASE_URL": self.url,
            "GITHUB_ACTIONS": "true",
            "NO_COLOR": "1",
            "GITHUB_STEP_SUMMARY": str(self.root / "step-summary.md"),
        }

    def api(self, method: str, path: str, *, key: str | None = CANARY) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.request(method, f"{self.url}/v1/accounts/local/{path}", headers=headers)


def _start_serve(root: Path, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    with (root / "serve.stderr").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchops", "serve", "--port", "0", "--data-dir", str(data_dir)],
            env={**env, "FIREWORKS_API_KEY": CANARY},
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.search(rb"(http://\S+)", first)
    if match is None:
        proc.kill()
        raise AssertionError(f"serve did not start: {first!r}")
    (root / "serve.stdout").write_bytes(first)
    return proc, match.group(1).decode()


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll the world until ``check`` holds; processes take their time, assertions do not."""
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def _run_cli_session(s: Session) -> None:
    s.cli("validate", "validate")
    s.cli("plan -v", "plan", "-v")
    s.cli("plan --out", "plan", "--out", str(s.root / "plan.json"))
    s.cli("plan json", "plan", "--output", "json")
    s.cli("apply", "apply", "--wait", "--timeout", "60", "-v")
    s.cli("status", "status")
    s.cli("status json", "status", "--output", "json")
    s.cli("wrong key", "plan", key=WRONG)
    s.cli("wrong key json", "status", "--output", "json", key=WRONG)


def _run_watch(s: Session) -> None:
    log, out = s.root / "watch.stderr", s.root / "watch.stdout"
    with log.open("wb") as err, out.open("wb") as std:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchops",
                "watch",
                "--interval",
                "1s",
                "--health-port",
                "0",
                "--log-format",
                "json",
            ],
            cwd=s.project,
            env=s.env(CANARY),
            stdout=std,
            stderr=err,
        )
    try:
        port = _eventually(lambda: _health_port(log))
        assert port, f"watch did not serve /metrics: {log.read_text()}"
        body = _eventually(lambda: _metrics_after_a_pass(port))
        assert body, f"no successful watch pass: {log.read_text()}"
        s.outputs["/metrics"] = body
    finally:
        s.codes["watch"] = _stop(proc)
    s.outputs["watch: stderr"], s.outputs["watch: stdout"] = log.read_bytes(), out.read_bytes()


def _health_port(log: Path) -> int | None:
    match = re.search(r"health and metrics on http://[^:]+:(\d+)/", log.read_text())
    return int(match.group(1)) if match else None


def _metrics_after_a_pass(port: int) -> bytes | None:
    body = httpx.get(f"http://127.0.0.1:{port}/metrics").content
    return body if re.search(rb'batchops_passes_total\{outcome="ok"\} [1-9]', body) else None


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    root = tmp_path_factory.mktemp("security")
    shutil.copytree(
        REPO / "jobs",
        root / "project" / "jobs",
        ignore=shutil.ignore_patterns("capitals-openai.yaml"),
    )
    proc, url = _start_serve(root, root / "server-data")
    s = Session(root=root, project=root / "project", data_dir=root / "server-data", url=url)
    try:
        _run_cli_session(s)
        _run_watch(s)
        s.outputs["wrong key: direct"] = s.api("GET", "datasets", key=WRONG).content
        yield s
    finally:
        s.codes["serve"] = _stop(proc)
        assert proc.stdout is not None
        with proc.stdout:  # everything serve printed after its first line, too
            s.outputs["serve: stdout"] = (root / "serve.stdout").read_bytes() + proc.stdout.read()
        s.outputs["serve: stderr"] = (root / "serve.stderr").read_bytes()


def _hits(blobs: dict[str, bytes]) -> list[str]:
    return [label for label, blob in blobs.items() if any(secret in blob for secret in SECRETS)]


def _files_under(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- the key was really in use, so the searches below can fail ------------------------------------


def test_the_canary_key_was_used_and_required(session):
    assert session.api("GET", "datasets", key=WRONG).status_code == 403
    assert session.api("GET", "datasets").status_code == 200
    ok = ("validate", "plan -v", "plan --out", "plan json", "apply", "status", "status json")
    assert {label: session.codes[label] for label in ok} == dict.fromkeys(ok, 0), session.outputs
    assert session.codes["wrong key"] != 0 and session.codes["wrong key json"] != 0
    assert b"API key you provided is invalid" in session.outputs["wrong key: stderr"]
    listed = FireworksClient(base_url=session.url, account_id="local", api_key=Secret(CANARY))
    with listed as client:  # the right-key session changed the world: jobs and results exist
        assert len(client.list_jobs()) >= 3
    assert list((session.project / "results").rglob("*.jsonl"))
    assert session.codes["watch"] == 0 and session.codes.get("serve") in (None, 0)


# -- ...and it is nowhere ------------------------------------------------------------------------


def test_no_key_in_any_output_or_metrics(session):
    assert _hits(session.outputs) == []
    signed = [label for label, blob in session.outputs.items() if b"sig=" in blob]
    assert signed == []  # nor a signed URL, a bearer token for the data until it expires
    assert b"batchops_api_requests_total" in session.outputs["/metrics"]


def test_no_key_in_the_plan_file_or_step_summary(session):
    plan, summary = session.root / "plan.json", session.root / "step-summary.md"
    assert json.loads(plan.read_text())["fingerprint"]
    assert summary.stat().st_size > 0
    assert _hits({"plan": plan.read_bytes(), "summary": summary.read_bytes()}) == []


def test_no_key_in_any_file_of_the_project(session):
    files = _files_under(session.project)
    assert any("/results/" in name for name in files)
    assert any("/.batchops/" in name for name in files)
    assert _hits(files) == []
    assert [name for name, blob in files.items() if b"sig=" in blob] == []


def test_the_server_stores_no_key(session):
    files = _files_under(session.data_dir)  # sqlite, its WAL, dataset and output files
    assert any(name.endswith("backend.sqlite3") for name in files)
    assert _hits(files) == []


def test_key_free_reprs():
    env = {"FIREWORKS_API_KEY": CANARY, "FIREWORKS_ACCOUNT_ID": "a"}
    settings = load_settings(env)
    args = build_parser().parse_args(["serve", "--data-dir", "/nonexistent"])
    os.environ["FIREWORKS_API_KEY"] = CANARY  # build_config reads the environment itself
    try:
        config = build_config(args)
    finally:
        del os.environ["FIREWORKS_API_KEY"]
    client = FireworksClient(base_url="https://x.test", account_id="a", api_key=settings.api_key)
    with client:
        texts = [repr(settings), str(settings), repr(config), repr(client), repr(vars(args))]
    assert config.api_key == CANARY and all(CANARY not in text for text in texts)


# -- batchops serve --------------------------------------------------------------------------------


def test_serve_binds_loopback_by_default(session):
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    port = urlsplit(session.url).port
    listening = _listening_addresses(port)
    assert listening == {"127.0.0.1"}, listening


def _listening_addresses(port: int | None) -> set[str]:
    """Local addresses of the TCP sockets in LISTEN state on ``port`` (Linux /proc/net)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(_address(address))
    if not found:
        pytest.skip("no /proc/net/tcp: cannot list listening sockets")
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


@pytest.mark.parametrize(
    "auth",
    [
        None,
        f"Bearer {WRONG}",
        CANARY,
        f"Bearer {CANARY[:-1]}",
        f"Basic {CANARY}",
        f"Bearer {CANARY}x",
    ],
    ids=["none", "wrong", "no-scheme", "prefix", "basic", "suffix"],
)
def test_serve_refuses_requests_without_the_key(session, auth):
    headers = {} if auth is None else {"Authorization": auth}
    for method, path in (
        ("GET", "datasets"),
        ("GET", "batchInferenceJobs"),
        ("DELETE", "batchInferenceJobs/capitals-anything"),
    ):
        url = f"{session.url}/v1/accounts/local/{path}"
        answer = httpx.request(method, url, headers=headers)
        assert answer.status_code == 403
        body = answer.json()
        assert body["error"]["code"] == "UNAUTHORIZED" and set(body) == {"error", "request_id"}
    assert session.api("GET", "datasets").json()["datasets"]  # nothing was deleted either


def test_signed_urls_work_without_the_key_and_refuse_tampering(session):
    dataset = session.api("GET", "datasets").json()["datasets"][0]["name"].rsplit("/", 1)[-1]
    urls = session.api("GET", f"datasets/{dataset}:getDownloadEndpoint").json()
    url = next(iter(urls["filenameToSignedUrls"].values()))
    good = httpx.get(url)
    assert good.status_code == 200 and good.content
    for bad in _tampered(url):
        refused = httpx.get(bad)
        assert refused.status_code in (403, 404) and good.content not in refused.content, bad
    assert httpx.put(url, content=b"x").status_code == 403  # a GET signature is not a PUT one


def _tampered(url: str) -> list[str]:
    parts = urlsplit(url)
    sig = re.search(r"sig=([0-9a-f]+)", parts.query)
    assert sig is not None
    flipped = sig.group(1)[:-1] + ("0" if sig.group(1)[-1] != "0" else "1")
    expires = re.sub(r"expires=(\d+)", lambda m: f"expires={int(m.group(1)) + 3600}", parts.query)
    return [
        urlunsplit(parts._replace(query=parts.query.replace(sig.group(1), flipped))),
        urlunsplit(parts._replace(query=expires)),
        urlunsplit(parts._replace(path=parts.path.rsplit("/", 1)[0] + "/error-data")),
        urlunsplit(parts._replace(query=re.sub(r"&?sig=[0-9a-f]+", "", parts.query))),
    ]


def test_serve_refuses_browser_and_rebound_requests(session):
    """A web page can reach 127.0.0.1 too: a cross-site POST carries Origin, a DNS-rebound one
    an attacker's Host. Both are refused even with the key, which a page could not know anyway."""
    auth = {"Authorization": f"Bearer {CANARY}"}
    datasets = f"{session.url}/v1/accounts/local/datasets"
    body = {"datasetId": "from-a-web-page", "dataset": {"exampleCount": "1"}}
    posted = httpx.post(datasets, json=body, headers={**auth, "Origin": "https://evil.example"})
    rebound = httpx.get(datasets, headers={**auth, "Host": "evil.example:8808"})
    assert posted.status_code == 403 and rebound.status_code == 403
    assert b"from-a-web-page" not in session.api("GET", "datasets").content
    named = httpx.get(datasets, headers={**auth, "Host": f"localhost:{urlsplit(session.url).port}"})
    assert named.status_code == 200 and named.json()["datasets"]


def test_the_server_data_dir_is_private(session):
    mode = stat.S_IMODE(session.data_dir.stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)
    assert stat.S_IMODE((session.data_dir / "signing.key").stat().st_mode) == 0o600


# -- a malicious server: names and URLs it supplies ----------------------------------------------

API = "https://api.fireworks.test"
ELSEWHERE = "storage.elsewhere.test"


class Malicious:
    """Answers getDownloadEndpoint with chosen keys and URLs; records every request it sees."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path.endswith(":getDownloadEndpoint"):
            return httpx.Response(200, json={"filenameToSignedUrls": self.urls})
        return httpx.Response(200, content=b'{"custom_id": "r1"}\n')


def _client(server: Malicious, base_url: str = API) -> FireworksClient:
    return FireworksClient(
        base_url=base_url,
        account_id="acme",
        api_key=Secret(CANARY),
        transport=httpx.MockTransport(server),
        max_retries=0,
    )


def _snapshot(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.parametrize(
    "key",
    [
        "dataset/x/../../../evil",
        "/etc/passwd",
        "dataset/x/..\\..\\evil",
        "../evil",
        "dataset/../x",
        "dataset/x/./evil",
        "dataset//evil",
        "dataset/x/evil\x00.jsonl",
        "..",
        "C:\\evil",
    ],
)
def test_server_file_names_cannot_leave_the_results_folder(tmp_path, key):
    dest, outside = tmp_path / "dest", _snapshot(tmp_path)
    dest.mkdir()
    server = Malicious(
        {
            "dataset/x/good.jsonl": f"https://{ELSEWHERE}/good?sig=1",
            key: f"https://{ELSEWHERE}/evil?sig=2",
        }
    )
    with _client(server) as client, pytest.raises(ApiError, match="refusing") as caught:
        client.download_dataset("x", dest)
    assert _snapshot(tmp_path) == outside | {dest}  # nothing written, not even the good file
    assert [r.url.host for r in server.seen] == ["api.fireworks.test"]
    assert CANARY not in str(caught.value)


def test_a_symlinked_dataset_folder_cannot_redirect_a_download(tmp_path):
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    (dest / "x").symlink_to(elsewhere)
    server = Malicious({"dataset/x/out.jsonl": f"https://{ELSEWHERE}/out?sig=1"})
    with _client(server) as client, pytest.raises(ApiError, match="leaves the destination"):
        client.download_dataset("x", dest)
    assert list(elsewhere.iterdir()) == []


def test_signed_urls_on_other_hosts_never_receive_the_key(tmp_path):
    server = Malicious(
        {
            "dataset/x/out.jsonl": f"https://{ELSEWHERE}/out?sig=1",
            "dataset/x/error-data": "https://evil.example/steal?sig=2",
        }
    )
    with _client(server) as client:
        written = client.download_dataset("x", tmp_path)
    assert sorted(p.name for p in written) == ["error-data", "out.jsonl"]
    foreign = [r for r in server.seen if r.url.host != "api.fireworks.test"]
    assert {r.url.host for r in foreign} == {ELSEWHERE, "evil.example"}
    assert all("authorization" not in r.headers for r in foreign)
    assert all(CANARY not in str(r.url) + str(dict(r.headers)) for r in foreign)
    api_calls = [r for r in server.seen if r.url.host == "api.fireworks.test"]
    assert api_calls and all(r.headers["authorization"] == f"Bearer {CANARY}" for r in api_calls)


@pytest.mark.parametrize(
    "url",
    [
        "http://storage.elsewhere.test/out?sig=1",
        "http://127.0.0.1:9/out?sig=1",
        "file:///etc/passwd",
        "ftp://storage.elsewhere.test/out",
    ],
)
def test_insecure_signed_urls_are_refused_for_a_remote_api(tmp_path, url):
    server = Malicious({"dataset/x/out.jsonl": url})
    with _client(server) as client, pytest.raises(ApiError, match="signed URL") as caught:
        client.download_dataset("x", tmp_path / "dest")
    assert [r.url.host for r in server.seen] == ["api.fireworks.test"]
    assert not (tmp_path / "dest").exists() or not list((tmp_path / "dest").rglob("*.jsonl"))
    assert "sig=" not in str(caught.value)


def test_plain_http_signed_urls_are_accepted_only_from_a_loopback_backend(tmp_path):
    server = Malicious({"dataset/x/out.jsonl": "http://127.0.0.1:8808/signed/out?sig=1"})
    with _client(server, base_url="http://127.0.0.1:8808") as client:
        assert [p.name for p in client.download_dataset("x", tmp_path)] == ["out.jsonl"]
    with pytest.raises(Exception, match="plain http"):
        _client(server, base_url="http://api.fireworks.test")


def test_serve_warns_when_exposed_without_a_key(tmp_path, capsys):
    from batchops.cli import main

    # 192.0.2.1 (TEST-NET-1) is on no interface: the bind fails after the warning is printed.
    code = main(["serve", "--host", "192.0.2.1", "--port", "0", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "cannot serve on 192.0.2.1" in err
    assert "warning: serving on 192.0.2.1 without FIREWORKS_API_KEY" in err


def test_client_file_names_cannot_leave_the_server_data_dir(session):
    auth = {"Authorization": f"Bearer {CANARY}"}
    base = f"{session.url}/v1/accounts/local/datasets"
    created = httpx.post(
        base, headers=auth, json={"datasetId": "zz-traversal", "dataset": {"exampleCount": "1"}}
    )
    assert created.status_code == 200, created.text
    for name in ("../../evil.jsonl", "..", "a/b.jsonl", "..\\evil.jsonl"):
        answer = httpx.post(
            f"{base}/zz-traversal:getUploadEndpoint",
            headers=auth,
            json={"filenameToSize": {name: "2"}},
        )
        assert answer.status_code == 400, name
    files = {"file": ("../../../evil.jsonl", b'{"custom_id": "a"}\n')}
    uploaded = httpx.post(f"{base}/zz-traversal:upload", headers=auth, files=files)
    assert uploaded.status_code == 200 and uploaded.json()["filename"] == "evil.jsonl"
    stored = list(session.root.rglob("evil.jsonl"))
    assert stored and all(p.is_relative_to(session.data_dir / "files") for p in stored)
