"""The pull-based git source (as in Argo CD and Flux): keep a clone at ``origin/<ref>``.

``batchops.watch.service`` calls ``GitSource.sync`` once at start and then from a poller thread
every ``--git-interval``; a sync that moved HEAD fires a pass. Only the ``git`` command-line tool
is used. Credentials embedded in the URL (``https://user:token@host/...``) never reach the disk:
the clone's config holds the URL without them, and git gets them from a credential helper that
reads two environment variables of the git process, configured through ``GIT_CONFIG_*`` variables
(so no config file holds the helper either) and scoped to the URL's origin. Other helpers are
switched off for these commands, so none of them can store the token (``credential.helper=store``
would write it to ``~/.git-credentials``). Git runs with umask 077. The credentials are also
redacted from every message we produce, including git's own stderr.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from batchops.errors import BatchopsError
from batchops.private import private_dir

log = logging.getLogger("batchops.watch.git")

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
GIT_TIMEOUT = 300.0  # seconds for one git command; a hung fetch must not hang the daemon
USER_VAR, PASSWORD_VAR = "BATCHOPS_GIT_USERNAME", "BATCHOPS_GIT_PASSWORD"
# Run by git through sh with the operation as $1; answers only "get", from the environment.
HELPER = (
    f'!f() {{ test "$1" = get || return 0; printf "username=%s\\npassword=%s\\n" '
    f'"${USER_VAR}" "${PASSWORD_VAR}"; }}; f'
)


class GitSyncError(BatchopsError):
    """A git command failed; retried on the next interval.

    Local to the watch package until errors.py grows a GitError (requested in the report).
    """

    retryable = True


def redact(text: str) -> str:
    """Hide ``user:password@`` in any URL inside ``text``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without ``user:password@``, (user, password) or None); percent-decoded.

    Only for http(s): in ``ssh://git@host/...`` the user is a login name, not a secret."""
    parts = urlsplit(url)
    if "@" not in parts.netloc or parts.scheme.lower() not in ("http", "https"):
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    credentials = (unquote(user), unquote(password))
    if any(c in value for value in credentials for c in "\n\r\0"):
        raise GitSyncError("the credentials in --git-url contain a line break or NUL")
    return urlunsplit(parts._replace(netloc=hostport)), credentials


def credential_env(
    url: str, credentials: tuple[str, str], base: Mapping[str, str]
) -> dict[str, str]:
    """Environment variables that hand ``credentials`` to git for ``url``'s origin only."""
    parts = urlsplit(url)
    count = int(base.get("GIT_CONFIG_COUNT", "0") or "0")  # keep the caller's own entries
    entries = [
        ("credential.helper", ""),  # an empty value drops every helper configured so far
        (f"credential.{parts.scheme}://{parts.netloc}.helper", HELPER),
    ]
    env = {
        USER_VAR: credentials[0],
        PASSWORD_VAR: credentials[1],
        "GIT_CONFIG_COUNT": str(count + len(entries)),
    }
    for index, (key, value) in enumerate(entries, start=count):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    return env


class GitSource:
    def __init__(self, url: str, ref: str, dest: Path) -> None:
        self.url, self.ref, self.dest = url, ref, dest
        self._clean_url, self._credentials = split_credentials(url)
        # Held while syncing, and by the pass while it reads the clone: no reset mid-pass.
        self.lock = threading.Lock()

    def sync(self) -> bool:
        """Clone if needed, fetch, hard-reset to ``origin/<ref>``; True when HEAD moved."""
        with self.lock:
            cloned = (self.dest / ".git").is_dir() and not self._holds_credentials()
            before = self._head() if cloned else None
            if not cloned:
                private_dir(self.dest.parent, root=self.dest.parent.parent)
                shutil.rmtree(self.dest, ignore_errors=True)
                self._git(
                    "clone",
                    "--quiet",
                    "--no-checkout",
                    self._clean_url,
                    str(self.dest),
                    in_dest=False,
                )
            else:
                self._git("remote", "set-url", "origin", self._clean_url)
            self._git("fetch", "--quiet", "--prune", "origin")
            self._git("reset", "--quiet", "--hard", f"origin/{self.ref}")
            after = self._head()
        if after != before:
            log.info(
                "git: %s at %s",
                redact(self.url),
                (after or "")[:12],
                extra={"event": "git_sync", "commit": after},
            )
        return after != before

    def _holds_credentials(self) -> bool:
        """True for a clone an older version made with the token in its config and reflog; it
        is cloned again (the clone is a cache)."""
        try:
            stored = self._git("config", "--get", "remote.origin.url").strip()
        except GitSyncError:
            return False
        return split_credentials(stored)[1] is not None

    def _head(self) -> str | None:
        try:
            return self._git("rev-parse", "--verify", "--quiet", "HEAD").strip() or None
        except GitSyncError:
            return None  # an empty clone, or a broken one that the next clone replaces

    def _git(self, *args: str, in_dest: bool = True) -> str:
        where = self.dest if in_dest else None
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never block on a password prompt
        if self._credentials is not None:
            env.update(credential_env(self._clean_url, self._credentials, env))
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=where,
                env=env,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                check=False,
                umask=0o077,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GitSyncError(redact(f"git {args[0]}: {exc}")) from None
        if done.returncode != 0:
            message = done.stderr.strip() or f"exit status {done.returncode}"
            raise GitSyncError(redact(f"git {args[0]} failed: {message}"))
        return done.stdout


def poll(
    source: GitSource,
    *,
    interval: float,
    stop: threading.Event,
    on_change: Callable[[], None],
    first_done: threading.Event | None = None,
) -> None:
    """Sync now, then every ``interval`` seconds until ``stop``; the poller thread's body.

    ``first_done`` is set after the first attempt, so the first pass can wait for the clone.
    """
    delay = 0.0
    while not stop.wait(delay):
        delay = interval
        try:
            changed = source.sync()
        except GitSyncError as exc:
            log.warning("%s; retrying in %.0fs", exc, interval, extra={"event": "git_error"})
            changed = False
        if first_done is not None:
            first_done.set()
        if changed:
            on_change()
