"""The README cannot rot: its commands parse with the real CLI, and its quick start really works.

CI (.ci/run) runs the two quick-start commands literally, installs included; this test checks every
`batchops` command the README shows against the real parser, and runs the quick start's `batchops`
part in a fresh copy of the project, the way a new user would, then once more to see "No changes.".
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchops.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def console_commands() -> list[str]:
    """Every `$ ...` line inside the README's fenced code blocks."""
    commands: list[str] = []
    for block in re.findall(r"```(?:console|bash|sh|shell)\n(.*?)```", README, flags=re.S):
        commands += [line[2:].strip() for line in block.splitlines() if line.startswith("$ ")]
    return commands


def batchops_invocations() -> list[list[str]]:
    found = []
    for command in console_commands():
        for part in command.split("&&"):
            words = shlex.split(part, comments=True)
            shell = next((i for i, w in enumerate(words) if w in {">", ">>", "|", "<"}), None)
            words = words[:shell]  # the shell's redirections are not batchops arguments
            if words and words[0] == "batchops":
                found.append(words[1:])
    return found


def quick_start() -> tuple[str, str]:
    """The two commands .ci/run extracts (its sed pattern: `$ python3 -m venv ... pip install`)."""
    commands = [
        c for c in console_commands() if c.startswith("python3 -m venv ") and "pip install" in c
    ]
    run = next(c for c in commands if "batchops apply" in c)
    test = next(c for c in commands if "pytest" in c)
    return run, test


def test_quick_start_is_two_commands() -> None:
    run, test = quick_start()
    venv = "python3 -m venv .venv && . .venv/bin/activate"
    assert run == f"{venv} && pip install -e . && batchops apply --local --wait jobs/"
    assert test == f"{venv} && pip install -e '.[test]' && pytest"


@pytest.mark.parametrize("argv", batchops_invocations(), ids=lambda argv: " ".join(argv))
def test_readme_commands_parse(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.func)


def test_readme_shows_every_command() -> None:
    shown = {argv[0] for argv in batchops_invocations() if argv}
    assert shown >= {"init", "validate", "schema", "plan", "apply", "status", "watch", "serve"}


def test_readme_selectors_name_the_repos_own_jobs_and_labels() -> None:
    """`--job NAME` and `-l key=value` examples select something in the repository's jobs/."""
    from batchops.manifest.loader import load_desired
    from batchops.manifest.project import load_project

    desired = load_desired([ROOT / "jobs"], root=ROOT, project=load_project(ROOT))
    names = {j.name for j in desired.jobs}
    labels = {f"{k}={v}" for j in desired.jobs for k, v in j.labels.items()}
    jobs = re.findall(r"`batchops [^`]*--job ([^\s`]+)", README)
    selectors = re.findall(r"`batchops [^`]*(?:-l|--selector) ([^\s`]+)", README)
    assert jobs and selectors
    assert set(jobs) <= names and set(selectors) <= labels


def fresh_project(tmp_path: Path) -> Path:
    """A copy of what a clone holds: the project file and the tracked example jobs, no results
    and no caches."""
    tracked = subprocess.run(
        ["git", "ls-files", "batchops.yaml", "jobs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    project = tmp_path / "batchops"
    for name in tracked:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    return project


def batchops(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Under CI=true, as .ci/run runs the quick start: the command itself must ask for --local."""
    return subprocess.run(
        [sys.executable, "-m", "batchops", *argv],
        env={**os.environ, "CI": "true"},
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_quick_start_runs_and_converges(tmp_path: Path) -> None:
    project = fresh_project(tmp_path)
    run, _ = quick_start()
    argv = shlex.split(run.split("&&")[-1])[1:]

    first = batchops(project, *argv)
    assert first.returncode == 0, first.stderr
    assert "embedded local backend" in first.stderr

    status = json.loads(batchops(project, "status", "--local", "--output", "json").stdout)
    jobs = status["jobs"]
    assert len(jobs) >= 3
    for job in jobs:
        results = project / job["results"]
        assert results.is_file(), job
        ids = [json.loads(line)["custom_id"] for line in results.read_text().splitlines()]
        assert len(ids) == len(set(ids)) > 0

    # The capitals eval on Fireworks and on the OpenAI provider, lined up by `batchops results`
    # from the neutral fields both providers write: every row has both answers and their tokens.
    joined = batchops(project, "results", "capitals-llama8b", "capitals-gpt4o-mini", "-o", "json")
    assert joined.returncode == 0, joined.stderr
    rows = json.loads(joined.stdout)
    assert len(rows) == 20
    for row in rows:
        for job in ("capitals-llama8b", "capitals-gpt4o-mini"):
            assert isinstance(row[f"{job}.answer"], str) and row[f"{job}.answer"], row
            assert row[f"{job}.finish_reason"] in {"stop", "length"}, row
            assert row[f"{job}.prompt_tokens"] > 0 and row[f"{job}.error"] is None, row

    # The two-stage example: a matrix over two models, then a judge over both answers (issue 16).
    assert "Apply complete: 8 completed (8 job(s) submitted)." in first.stdout
    sweep = json.loads(batchops(project, "results", "capitals-sweep", "-o", "json").stdout)
    assert len(sweep) == 20 and all(
        r["capitals-sweep-llama-v3p1-8b-instruct.answer"]
        and r["capitals-sweep-llama-v3p1-70b-instruct.answer"]
        for r in sweep
    )
    verdicts = [
        json.loads(json.loads(line)["text"])
        for line in (project / "results/capitals-judge.jsonl").read_text().splitlines()
    ]
    assert len(verdicts) == 20 and all(v["agree"] is True for v in verdicts)

    second = batchops(project, *argv)
    assert second.returncode == 0, second.stderr
    assert "No changes." in second.stdout
