"""Benchmark and measurement for money (issue 15): token counts, plan overhead, estimate vs actual.

Run: ``.venv/bin/python bench/cost.py [--part tokenize|plan|accuracy|all] [--mb 100] [--rounds 5]``.

- ``tokenize``: a ``--mb`` MB JSONL dataset of real text (the Python standard library's docstrings,
  repeated) counted once with the tokenizer in this process (one batch call per 8 MiB block) and
  shared by helper processes (``tokencache.count_shared``, as ``validate`` and ``plan`` count a
  big dataset), against the simple script (``json.loads`` per line and bpe-openai's public
  ``encode_ordinary`` per text), and with the estimator, in ``--rounds`` paired rounds (the order
  rotating): the median MB/s of each and the median of its per-round ratios to the baseline
  (the vocabulary is loaded before the clock starts). Then the end-to-end figure:
  ``batchops validate`` of the dataset and a job reading it, with cold caches (validation, the
  first token count and, on an OpenAI-compatible provider, its row rules) and then again (all of
  it remembered), for a Llama model (counted with cl100k_base), an unknown one (estimated) and
  ``gpt-4o-mini`` on an OpenAI-compatible provider (o200k_base, and the provider's row rules).
- ``plan``: the 1,000-job bench of ``bench/plan.py`` (1,000 jobs over 50 datasets, all to create,
  against ``batchops serve``): ``load_and_plan`` with costs against the same with the cost step
  replaced by nothing, in ``--repeat`` paired rounds (each round runs both, the order alternating);
  prints the medians and the median of the per-round ratios, which a shared, noisy machine moves
  far less than either time. A first round warms the token cache (as every pass but the first
  finds it) and is not counted. Then the cost step alone, and the end-to-end figure: ``batchops
  plan`` in a fresh process (manifest load, observe, plan, rendering), with costs and with the
  cost step replaced by nothing, in ``--cli-repeat`` paired rounds. Load averages are printed
  with each figure.
- ``accuracy``: the example jobs and a generated 10,000-row real-text corpus, planned and applied on
  the embedded local backend: planned input tokens against the usage the engine reported; the
  estimator against the real tokenizer on the corpus; the expected cost of a changed spec (from the
  first run's history) against what the second run cost.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import load, rotated

from batchops.identity import project_from_root
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider
from batchops.reconcile import PassOptions, load_and_plan, load_inputs
from batchops.tokencache import count_file, count_shared
from batchops.tokens import ESTIMATOR, Counter, counter_for

REPO = Path(__file__).resolve().parents[1]
MODEL = "accounts/fireworks/models/llama-v3p1-8b-instruct"


def real_text() -> list[str]:
    """Paragraphs of the standard library's docstrings: real English technical prose."""
    paragraphs: list[str] = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in {"antigravity", "this", "idlelib", "turtledemo"}:
            continue
        try:
            module = importlib.import_module(name)
        except Exception:  # platform modules that do not import here
            continue
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) if callable(obj) or inspect.ismodule(obj) else None
            paragraphs += [p for p in (doc or "").split("\n\n") if len(p) > 60]
    return list(dict.fromkeys(paragraphs))


def rows_of(texts: list[str], count: int) -> list[str]:
    system = "You are a careful technical editor. Summarise the passage in one sentence."
    return [
        json.dumps(
            {
                "custom_id": f"r{i}",
                "body": {
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": texts[i % len(texts)]},
                    ]
                },
            }
        )
        for i in range(count)
    ]


# -- tokenize ------------------------------------------------------------------------------------


def tokenize(tmp: Path, mb: int, rounds: int) -> None:
    texts = real_text()
    path = tmp / "big.jsonl"
    lines = rows_of(texts, len(texts))
    block = ("\n".join(lines) + "\n").encode()
    with path.open("wb") as f:
        while f.tell() < mb * 2**20:
            f.write(block)
    size = path.stat().st_size / 2**20
    counter = counter_for(MODEL)
    counter.count("warm")  # the vocabulary loads once per process: not part of any figure
    sides: dict[str, tuple[Callable[[], int], str]] = {
        "one batch call per 8 MiB block": (lambda: count_file(path, counter).tokens, counter.name),
        "shared by helper processes": (lambda: _shared(path, counter), counter.name),
        BASELINE: (lambda: _baseline(path), "cl100k_base"),
        "estimator, in process": (lambda: count_file(path, ESTIMATOR).tokens, "estimate"),
        "estimator, shared by helpers": (lambda: _shared(path, ESTIMATOR), "estimate"),
    }
    took: dict[str, list[float]] = {label: [] for label in sides}
    tokens: dict[str, int] = {}
    for r in range(rounds):
        for label in rotated(list(sides), r):
            start = time.perf_counter()
            tokens[label] = sides[label][0]()
            took[label].append(time.perf_counter() - start)
    print(f"tokenize {size:.0f} MB, median of {rounds} paired rounds; {load()}")
    for label, (_, name) in sides.items():
        ratios = [b / o for o, b in zip(took[label], took[BASELINE], strict=True)]
        print(
            f"  {label} [{name}]: {tokens[label]:,} tokens, "
            f"{size / statistics.median(took[label]):.1f} MB/s; "
            f"{statistics.median(ratios):.2f}x the baseline "
            f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
        )
    _validate_with_a_job(tmp, path, size)


BASELINE = "baseline: json.loads + encode_ordinary per text"


def _shared(path: Path, counter: Counter) -> int:
    counted = count_shared([path], counter)
    assert counted is not None, "too small for helpers: raise --mb"
    return counted[path].tokens


def _baseline(path: Path) -> int:
    """What a script would do: each line parsed, each text encoded by the package's public
    tiktoken-style API (its vocabulary loaded before the clock starts, as ours is)."""
    import bpe_openai

    encode = bpe_openai.get_encoding("cl100k_base").encode_ordinary
    total = 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            for message in json.loads(line)["body"]["messages"]:
                total += len(encode(message["content"]))
    return total


PROJECT = """apiVersion: batchops/v1
kind: Project
metadata: {name: bench}
spec:
  providers:
    openai: {kind: openai, baseUrl: "http://127.0.0.1:9/v1"}
"""


def _validate_with_a_job(tmp: Path, path: Path, size: float) -> None:
    """The end-to-end figure: ``batchops validate`` of the dataset and a job reading it, with
    cold caches (the rows validated, their tokens counted and, on an OpenAI-compatible provider,
    checked against its rules: the first run on new data), then again (every later run)."""
    root = tmp / "validate"
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "batchops.yaml").write_text(PROJECT)
    with path.open(encoding="utf-8") as src, (root / "jobs" / "big.jsonl").open("w") as out:
        for n, line in enumerate(src):  # the same rows, each with a custom_id of its own
            rest = line[line.index('", "body"') :]
            out.write(f'{{"custom_id": "n{n}{rest}')
    jobs = [
        ("fireworks", MODEL),
        ("fireworks", "accounts/fireworks/models/unknown-model"),
        ("openai", "gpt-4o-mini"),
    ]
    for provider, model in jobs:
        (root / "jobs" / "w.yaml").write_text(
            "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: big}\n"
            "spec: {path: big.jsonl}\n---\napiVersion: batchops/v1\nkind: BatchInferenceJob\n"
            f"metadata: {{name: j}}\nspec: {{provider: {provider}, model: {model}, "
            "inputDataset: big}\n"
        )
        shutil.rmtree(root / ".batchops", ignore_errors=True)
        took = [_validate(root) for _ in range(2)]
        print(
            f"batchops validate, {size:.0f} MB and a job reading it ({provider}, "
            f"{model.rsplit('/', 1)[-1]}; CLI, end to end): cold caches {took[0][0]:.2f} s "
            f"({size / took[0][0]:.1f} MB/s), then {took[1][0]:.2f} s; {load()}; {took[0][1]}"
        )


def _validate(root: Path) -> tuple[float, str]:
    argv = [sys.executable, "-m", "batchops", "validate", "--max-dataset-bytes", "2G"]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"validate failed: {done.stdout}{done.stderr}")
    return took, done.stdout.strip()


# -- plan overhead -------------------------------------------------------------------------------


def plan_overhead(tmp: Path, repeat: int, cli_repeat: int) -> None:
    sys.path.insert(0, str(REPO))
    import batchops.reconcile as reconcile
    from bench.plan import generate, serve, stop

    root = tmp / "bench-repo"
    generate(root, jobs=1000, datasets=50)
    proc, url = serve(tmp / "backend")
    real = reconcile.plan_cost
    try:
        inputs = load_inputs([root / "jobs"], root=root)
        project = project_from_root(root)
        times: dict[str, list[float]] = {"with costs": [], "without": []}
        ratios: list[float] = []
        cpu_ratios: list[float] = []  # this process's CPU time: the server's and others' left out
        labels = list(times)
        for round_ in range(repeat + 1):  # round 0 warms the token cache and is not counted
            took: dict[str, float] = {}
            for label in labels if round_ % 2 else labels[::-1]:  # paired, order alternated
                reconcile.plan_cost = real if label == "with costs" else _no_cost  # type: ignore[assignment]
                with FireworksClient(base_url=url, account_id="local", api_key=None) as client:
                    start, cpu = time.perf_counter(), time.process_time()
                    plan = load_and_plan(
                        [root / "jobs"],
                        root=root,
                        provider=FireworksProvider(client),
                        project=project,
                        options=PassOptions(),
                        inputs=inputs,
                    )
                    took[label] = time.perf_counter() - start
                    took[f"{label} cpu"] = time.process_time() - cpu
            if round_:
                for label in labels:
                    times[label].append(took[label])
                ratios.append(took["with costs"] / took["without"])
                cpu_ratios.append(took["with costs cpu"] / max(took["without cpu"], 1e-9))
        reconcile.plan_cost = real
        median = {k: statistics.median(v) for k, v in times.items()}
        costed = sum(1 for a in plan.actions if a.job is not None)
        print(
            f"plan of 1,000 jobs to create ({costed} costed), {repeat} paired rounds: median with "
            f"costs {median['with costs'] * 1000:.1f} ms, without {median['without'] * 1000:.1f} "
            f"ms; median of the per-round ratios {(statistics.median(ratios) - 1) * 100:+.1f}% "
            f"(rounds from {(min(ratios) - 1) * 100:+.1f}% to {(max(ratios) - 1) * 100:+.1f}%); "
            f"of the CPU time of this process {(statistics.median(cpu_ratios) - 1) * 100:+.1f}%; "
            f"{load()}"
        )
        cost_only = min(
            timeit.repeat(lambda: real(plan, *cost_args(root, inputs)), number=1, repeat=repeat)
        )
        print(
            f"the cost step alone (batchops.pricing.plan_cost): {cost_only * 1000:.2f} ms "
            f"(best of {repeat}); {load()}"
        )
        plan_cli_overhead(root, url, cli_repeat)
    finally:
        reconcile.plan_cost = real
        stop(proc)


# ``batchops plan`` as a user runs it, in a fresh process, the cost step replaced by nothing in
# the "without" runs (the same wrapper in both, so start-up is the same); rendering included.
_CLI = (
    "import sys, batchops.reconcile as r\n"
    "if sys.argv[1] == 'without': r.plan_cost = lambda *a, **k: None\n"
    "from batchops.cli import main\n"
    "sys.exit(main(['plan']))\n"
)


def plan_cli_overhead(root: Path, url: str, repeat: int) -> None:
    """End to end: ``batchops plan`` of the same 1,000 jobs with costs vs without, paired."""
    env = {**os.environ, "FIREWORKS_BASE_URL": url, "FIREWORKS_ACCOUNT_ID": "local"}
    env.pop("FIREWORKS_API_KEY", None)
    env.pop("CI", None)

    def once(label: str) -> tuple[float, float]:
        """Wall time, and the CPU time (user + system) of the child process."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _CLI, label],
            cwd=root,
            env=env,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode not in (0, 2):
            raise SystemExit(f"plan failed ({done.returncode}): {done.stderr[-2000:]}")
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return wall, cpu

    times: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
    for round_ in range(repeat + 1):
        took = {
            label: once(label)
            for label in (("with", "without") if round_ % 2 else ("without", "with"))
        }
        if round_:  # round 0 warms the caches and is not counted
            for label, figures in took.items():
                times[label].append(figures)
    pairs = list(zip(times["with"], times["without"], strict=True))
    wall = statistics.median(w[0] / wo[0] for w, wo in pairs) - 1
    cpu = statistics.median(w[1] / wo[1] for w, wo in pairs) - 1
    print(
        f"end to end, `batchops plan` of the 1,000 jobs in a fresh process, {repeat} paired "
        f"rounds: median with costs {statistics.median(w for w, _ in times['with']) * 1000:.0f} "
        f"ms, without {statistics.median(w for w, _ in times['without']) * 1000:.0f} ms; median "
        f"of the per-round ratios {wall * 100:+.1f}% wall, {cpu * 100:+.1f}% CPU time of the "
        f"plan process; {load()}"
    )


def cost_args(root: Path, inputs: Any) -> tuple[Any, ...]:
    desired, infos = inputs
    return desired, infos, {}, PassOptions(), root


def _no_cost(*_: object, **__: object) -> None:
    return None


# -- accuracy ------------------------------------------------------------------------------------


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREWORKS_")}
    env.pop("CI", None)
    return subprocess.run(
        [sys.executable, "-m", "batchops", *args, "--local"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def plan_cost(root: Path) -> dict[str, Any]:
    done = cli(root, "plan", "--output", "json")
    return {a["job"]: a for a in json.loads(done.stdout)["cost"]["actions"]}


def spent(root: Path) -> dict[str, tuple[int, float]]:
    """job -> (prompt tokens the engine reported, dollars spent) from status --output json and
    the result files."""
    status = json.loads(cli(root, "status", "--output", "json").stdout)["jobs"]
    out = {}
    for job in status:
        prompt = 0
        with (root / job["results"]).open() as f:
            for line in f:
                prompt += json.loads(line)["usage"]["input_tokens"]  # the neutral results shape
        out[job["name"]] = (prompt, job["spent"])
    return out


def accuracy_run(root: Path, label: str, bump: tuple[str, str] | None) -> None:
    planned = plan_cost(root)
    assert cli(root, "apply", "--wait", "--timeout", "1500").returncode == 0
    actual = spent(root)
    for job, a in sorted(planned.items()):
        prompt, dollars = actual[job]
        err_in = (a["inputTokens"] - prompt) / prompt * 100
        print(
            f"{label} {job}: input tokens planned {a['inputTokens']:,} vs reported "
            f"{prompt:,} ({err_in:+.2f}%); cost expected ({a['expectedFrom']}) "
            f"${a['costExpected']:.6f}, worst ${a['costWorstCase']:.6f}, actual ${dollars:.6f}"
        )
    if bump is None:
        return
    for manifest in (root / "jobs").glob("*.yaml"):
        manifest.write_text(manifest.read_text().replace(*bump))
    planned = plan_cost(root)
    assert cli(root, "apply", "--wait", "--timeout", "1500").returncode == 0
    actual = spent(root)
    for job, a in sorted(planned.items()):
        dollars = actual[job][1]
        err = (a["costExpected"] - dollars) / dollars * 100
        print(
            f"{label} {job} after {bump[0]!r} -> {bump[1]!r}: expected "
            f"({a['expectedFrom']}) ${a['costExpected']:.6f} vs actual ${dollars:.6f} "
            f"({err:+.1f}%); worst case ${a['costWorstCase']:.6f}"
        )


def accuracy(tmp: Path) -> None:
    examples = tmp / "examples"
    shutil.copytree(REPO / "jobs", examples / "jobs")
    shutil.copy(REPO / "batchops.yaml", examples)
    accuracy_run(examples, "examples", ("maxTokens: 16", "maxTokens: 24"))
    texts = real_text()[:10_000]
    guesses = ESTIMATOR.count_batch(texts)
    for name, model in (("cl100k_base", "gpt-4"), ("o200k_base", "gpt-4o")):
        real = counter_for(model).count_batch(texts)
        total = (sum(guesses) - sum(real)) / sum(real) * 100
        per_row = sum(abs(g - r) / r for g, r in zip(guesses, real, strict=True) if r) / len(real)
        print(
            f"estimator vs {name} on {len(texts):,} real paragraphs: {sum(guesses):,} vs "
            f"{sum(real):,} tokens, total {total:+.1f}%, mean per-row error {per_row * 100:.1f}%"
        )
    corpus = tmp / "corpus"
    (corpus / "jobs" / "data").mkdir(parents=True)
    (corpus / "jobs" / "data" / "docs.jsonl").write_text(
        "\n".join(rows_of(real_text(), 10_000)) + "\n"
    )
    (corpus / "jobs" / "work.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: docs}\n"
        "spec: {path: data/docs.jsonl}\n---\n"
        "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: summaries}\n"
        f"spec: {{model: {MODEL}, inputDataset: docs, inferenceParameters: {{maxTokens: 64}}}}\n"
    )
    accuracy_run(corpus, "corpus", ("maxTokens: 64", "maxTokens: 96"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["tokenize", "plan", "accuracy", "all"], default="all")
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds of tokenize")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--cli-repeat", type=int, default=11, help="paired rounds of the CLI")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchops-cost-") as tmp:
        if args.part in ("tokenize", "all"):
            tokenize(Path(tmp), args.mb, args.rounds)
        if args.part in ("plan", "all"):
            plan_overhead(Path(tmp), args.repeat, args.cli_repeat)
        if args.part in ("accuracy", "all"):
            accuracy(Path(tmp))


if __name__ == "__main__":
    main()
