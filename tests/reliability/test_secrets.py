"""Secrets stay secret (issue 11, section 4; SECURITY.md sections 1 and 5).

- The token in ``watch --git-url https://user:TOKEN@host/...`` is never written to disk: a real
  ``git http-backend`` behind a small Basic-auth HTTP server on 127.0.0.1 demands it, and every
  file under the test's folder (the project, ``.batchops/``, and a ``$HOME`` whose git config
  has ``credential.helper = store``) is then searched for it.
- What batchops writes under ``.batchops/`` is private: the folder 0700, secret-holding files 0600.
- A key a server echoes back, percent-encoded, JSON-escaped or base64-encoded, is redacted.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from batchops.cli import main
from batchops.config import Secret
from batchops.errors import ApiError
from batchops.providers.fireworks.client import FireworksClient
from batchops.watch.git import GitSource
from batchops.watch.lock import ProjectLock

pytestmark = [pytest.mark.e2e]

USER, TOKEN = "x-access-token", "ghp_T0KEN-canary-5d1f0a9b7c3e2d4f"
KEY = "fw_KEY-canary-8e2b1c9d7f6a5e4d3c2b"


# -- a git smart-HTTP server that demands the token ---------------------------------------------


class _GitHandler(BaseHTTPRequestHandler):
    """CGI glue for ``git http-backend``; 401 unless Basic auth carries USER:TOKEN."""

    project_root = ""
    authorizations: list[str] = []

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        given = self.headers.get("Authorization", "")
        self.authorizations.append(given)
        if given != "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": self.project_root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "REMOTE_USER": USER,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def git_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A $HOME whose git config stores every credential it sees in ~/.git-credentials."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = t\n\temail = t@example.test\n[credential]\n\thelper = store\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


@pytest.fixture
def git_server(tmp_path: Path, git_home: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT/repo.git`` with one commit holding jobs/a.yaml."""
    served = tmp_path / "served"
    work = tmp_path / "work"
    _git("init", "--quiet", "--bare", str(served / "repo.git"))
    _git("init", "--quiet", str(work))
    (work / "jobs").mkdir()
    (work / "jobs" / "a.yaml").write_text("a\n")
    _git("add", "-A", cwd=work)
    _git("commit", "--quiet", "-m", "a", cwd=work)
    _git("push", "--quiet", str(served / "repo.git"), "HEAD:main", cwd=work)
    _GitHandler.project_root = str(served)
    _GitHandler.authorizations = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GitHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/repo.git"
    server.shutdown()
    server.server_close()
    thread.join(10)


def _files_holding(folder: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {n!r}" for n in needles if n in data]
    return hits


def _token_forms() -> list[bytes]:
    basic = base64.b64encode(f"{USER}:{TOKEN}".encode())
    return [TOKEN.encode(), quote(TOKEN, safe="").encode(), basic]


def test_the_git_token_is_never_written_to_disk(tmp_path: Path, git_server: str) -> None:
    root = tmp_path / "project"
    url = git_server.replace("http://", f"http://{USER}:{TOKEN}@")
    source = GitSource(url, "main", root / ".batchops" / "git")
    assert source.sync() is True
    assert source.sync() is False  # a fetch through the stored (clean) remote works too
    assert (source.dest / "jobs" / "a.yaml").read_text() == "a\n"
    # The token was needed and was sent, by git, over the wire only:
    assert any(a.startswith("Basic ") for a in _GitHandler.authorizations)
    assert _files_holding(tmp_path, _token_forms()) == []
    config = (source.dest / ".git" / "config").read_text()
    assert git_server in config and "@" not in config


def test_a_clone_that_holds_the_token_is_replaced(tmp_path: Path, git_server: str) -> None:
    """Older versions cloned with the token in the URL (config, reflog, FETCH_HEAD)."""
    root = tmp_path / "project"
    url = git_server.replace("http://", f"http://{USER}:{TOKEN}@")
    dest = root / ".batchops" / "git"
    _git("-c", "credential.helper=", "clone", "--quiet", "--no-checkout", url, str(dest))
    assert _files_holding(dest, [TOKEN.encode()])  # the old way: the token on disk
    GitSource(url, "main", dest).sync()
    assert (dest / "jobs" / "a.yaml").read_text() == "a\n"
    assert _files_holding(tmp_path, _token_forms()) == []


def test_git_without_the_token_is_refused(tmp_path: Path, git_server: str) -> None:
    """The server really demands it, so the tests above prove the helper delivered it."""
    from batchops.watch.git import GitSyncError

    with pytest.raises(GitSyncError):
        GitSource(git_server, "main", tmp_path / "p" / ".batchops" / "git").sync()


# -- file modes ---------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _reachable_by_others(state: Path) -> list[str]:
    """Paths under ``state`` that another user could reach: every folder on the way from
    ``state`` down to them lets group or others in."""
    exposed = []
    for path in [state, *state.rglob("*")]:
        chain = [path, *path.parents][: len(path.relative_to(state).parts) + 1]
        if all(_mode(p) & 0o077 for p in chain if p.is_dir() and not p.is_symlink()):
            exposed.append(str(path.relative_to(state)))
    return exposed


def test_everything_under_batchops_is_private(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    git_server: str,
) -> None:
    root = tmp_path / "project"
    (root / "jobs" / "data").mkdir(parents=True)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    (root / "jobs/data/p.jsonl").write_text(json.dumps({"custom_id": "r1", "body": body}) + "\n")
    (root / "jobs/w.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: data/p.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        "spec: {model: accounts/fireworks/models/m, inputDataset: p}\n"
    )
    state = root / ".batchops"
    state.mkdir(mode=0o755)  # as an older version left it
    state.chmod(0o755)
    (state / "watch.lock").write_text("1\n")
    (state / "watch.lock").chmod(0o644)
    args = ["apply", "--root", str(root), "--wait", "--timeout", "60", "--poll-interval", "0.1"]
    assert main(args) == 0, capsys.readouterr()  # the embedded backend: .batchops/local
    lock = ProjectLock(root)
    lock.acquire()
    lock.release()
    url = git_server.replace("http://", f"http://{USER}:{TOKEN}@")
    GitSource(url, "main", state / "git").sync()

    assert (root / "results" / "j.jsonl").is_file()  # the results themselves are the user's
    assert _mode(state) == 0o700
    for name in ("local", "git", "cache", "tmp"):
        assert _mode(state / name) == 0o700, name
    for file in ("watch.lock", "results.db", "cache/datasets.json", "local/signing.key"):
        assert _mode(state / file) == 0o600, file
    git_files = [p for p in (state / "git").rglob("*") if not p.is_symlink()]
    assert git_files and all(_mode(p) & 0o077 == 0 for p in git_files)  # git ran with umask 077
    assert _reachable_by_others(state) == []


# -- keys echoed back by a server ----------------------------------------------------------------


def _echoes() -> dict[str, str]:
    basic = base64.b64encode(f"user:{KEY}".encode()).decode()
    return {
        "plain": KEY,
        "percent": quote(KEY, safe=""),
        "percent-lowercase-hex": "".join(f"%{b:02x}" for b in KEY.encode()),
        "percent-every-byte": "".join(f"%{b:02X}" for b in KEY.encode()),
        "double-percent": quote(quote(KEY, safe=""), safe=""),
        "form": quote(f"Bearer {KEY}").replace("%20", "+"),
        "json-escaped": "".join(f"\\u{ord(c):04x}" for c in KEY),
        "html-references": "".join(f"&#{ord(c)};" for c in KEY),
        "base64": base64.b64encode(KEY.encode()).decode(),
        "basic-auth": basic,
        "bearer-base64url": base64.urlsafe_b64encode(f"Bearer {KEY}".encode()).decode(),
    }


def _leaks(text: str) -> list[str]:
    return [name for name, form in _echoes().items() if form in text] + (
        ["core"] if "KEY-canary" in text else []
    )


@pytest.mark.parametrize("form", sorted(_echoes()))
@pytest.mark.parametrize("shape", ["grpc", "openai", "text", "malformed-200"])
def test_a_key_echoed_by_the_server_is_redacted(form: str, shape: str) -> None:
    echoed = _echoes()[form]

    def server(request: httpx.Request) -> httpx.Response:
        message = f"invalid token {echoed} for {request.url.path}"
        if shape == "grpc":
            return httpx.Response(400, json={"code": 3, "message": message})
        if shape == "openai":
            return httpx.Response(401, json={"error": {"message": message, "code": echoed}})
        if shape == "text":
            return httpx.Response(502, text=f"<html>{message}</html>")
        return httpx.Response(200, text=json.dumps({"name": [echoed]}))  # quoted by pydantic

    client = FireworksClient(
        base_url="https://api.fireworks.test",
        account_id="acme",
        api_key=Secret(KEY),
        transport=httpx.MockTransport(server),
        max_retries=0,
    )
    with client, pytest.raises(ApiError) as caught:
        client.get_job("j")
    error = caught.value
    assert _leaks(f"{error} {error.server_message} {error.code} {error!r}") == []


def test_a_key_echoed_in_a_job_status_message_is_redacted() -> None:
    echoed = _echoes()

    def server(request: httpx.Request) -> httpx.Response:
        jobs = [
            {
                "name": f"accounts/acme/batchInferenceJobs/j{i}",
                "state": "JOB_STATE_FAILED",
                "status": {"code": "INTERNAL", "message": f"bad key {form}"},
            }
            for i, form in enumerate(echoed.values())
        ]
        return httpx.Response(200, json={"batchInferenceJobs": jobs})

    client = FireworksClient(
        base_url="https://api.fireworks.test",
        account_id="acme",
        api_key=Secret(KEY),
        transport=httpx.MockTransport(server),
        max_retries=0,
    )
    with client:
        jobs = client.list_jobs()
    messages = " ".join(job.status.message for job in jobs if job.status)
    assert messages.count("**********") == len(echoed)
    assert _leaks(messages) == []


def test_the_cli_prints_no_echoed_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: a server answering every call with the key, encoded, in its error body."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo(request: Request) -> JSONResponse:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ")
        percent = "".join(f"%{b:02X}" for b in token.encode())
        escaped = "".join(f"\\u{ord(c):04x}" for c in token)
        message = f"key {percent} / {escaped} is not allowed"
        return JSONResponse({"code": 7, "message": message}, status_code=403)

    app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        (tmp_path / "jobs").mkdir()
        (tmp_path / "jobs/w.yaml").write_text(
            "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
            "spec: {model: accounts/fireworks/models/m, inputDataset: p}\n---\n"
            "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: p.jsonl}\n"
        )
        row = {"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}
        (tmp_path / "jobs/p.jsonl").write_text(json.dumps(row) + "\n")
        monkeypatch.setenv("FIREWORKS_API_KEY", KEY)
        monkeypatch.setenv("FIREWORKS_ACCOUNT_ID", "acme")
        monkeypatch.setenv("FIREWORKS_BASE_URL", f"http://127.0.0.1:{port}")
        for output in ("text", "json"):
            capsys.readouterr()
            assert main(["plan", "--root", str(tmp_path), "--output", output]) == 1
            out, err = capsys.readouterr()
            assert "HTTP 403" in out + err
            assert _leaks(out + err) == []
    finally:
        server.should_exit = True
        thread.join(10)


def test_credentials_are_split_from_http_urls_only() -> None:
    from batchops.watch.git import credential_env, split_credentials

    assert split_credentials("https://u:p%40ss@host:8443/r.git") == (
        "https://host:8443/r.git",
        ("u", "p@ss"),
    )
    assert split_credentials("https://TOKEN@host/r.git") == ("https://host/r.git", ("TOKEN", ""))
    for url in ("ssh://git@host/r.git", "git@host:r.git", "https://host/r.git", "/srv/r.git"):
        assert split_credentials(url) == (url, None)
    creds = ("user-canary", "pass-canary")
    env = credential_env("https://host:8443/r.git", creds, {"GIT_CONFIG_COUNT": "1"})
    assert env["GIT_CONFIG_COUNT"] == "3"  # the caller's own entry 0 is kept
    assert env["GIT_CONFIG_KEY_1"] == "credential.helper" and env["GIT_CONFIG_VALUE_1"] == ""
    assert env["GIT_CONFIG_KEY_2"] == "credential.https://host:8443.helper"
    config = [v for k, v in env.items() if k.startswith("GIT_CONFIG_")]
    assert not [v for v in config if any(c in v for c in creds)]  # only in the helper's variables
