"""Each declared job's rows split into reused and to send, before planning (issue 14).

``batchops.reconcile`` calls ``row_splits`` once per pass: it hashes every row of each job that
reuses answers (``spec.reuse``, on by default) into its request identity (``batchops.rowid``),
looks them up in the reuse index (``batchops.reuse``) and, when some rows are new and some are
not, writes the rows to send to ``.batchops/derived/<sha256>.jsonl``: a derived dataset,
content-addressed like any other, that the job reads instead of the declared one. Its answers
are recorded by ``batchops.apply`` when their results are merged, and a job's own answers never
count as reused for itself, so the split (and the job ID) stays the same from pass to pass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import orjson

from batchops.config import STATE_DIR, ensure_state_dir
from batchops.datasets import iter_custom_ids
from batchops.errors import NotFoundError
from batchops.identity import HASH_LEN, dataset_id, name_matches, parse_job_id
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl
from batchops.outputcache import OutputCache
from batchops.plan import DatasetFacts, Observed
from batchops.plan.canary import canary_name
from batchops.plan.rows import CanarySample, DerivedInput, RowSplit, job_prefix, split_rows
from batchops.plan.views import base_job_id
from batchops.private import private_dir, private_file
from batchops.providers import OUTPUT_FILE, JobState, Provider, RemoteJob
from batchops.reuse import Answer, ReuseIndex
from batchops.rowid import DIGEST_SIZE, file_requests, request_prefix
from batchops.scratch import Scratch
from batchops.stamps import file_sha256

DERIVED_DIR = "derived"
ROWS_DIR = "rows"  # request hashes of each dataset and job prefix (``_Requests``)


def reusing(decl: JobDecl, infos: Mapping[str, DatasetFacts]) -> bool:
    """A job whose rows are split: reuse on and a declared, validated input dataset."""
    return decl.reuse and decl.input_dataset is not None and decl.input_dataset in infos


def row_splits(
    desired: Desired, infos: Mapping[str, DatasetFacts], *, root: Path, project: str
) -> dict[str, RowSplit]:
    """Each reusing job's ``RowSplit`` by job name (the others are sent whole)."""
    jobs = [decl for decl in desired.jobs if reusing(decl, infos)]
    if not jobs:
        return {}
    requests = _Requests(private_dir(ensure_state_dir(root) / ROWS_DIR, root=root))
    with ReuseIndex.open(root) as index:
        return {
            decl.name: _split(decl, desired, infos, index, requests, root, project) for decl in jobs
        }


def _split(
    decl: JobDecl,
    desired: Desired,
    infos: Mapping[str, DatasetFacts],
    index: ReuseIndex,
    requests: _Requests,
    root: Path,
    project: str,
) -> RowSplit:
    ds = desired.dataset(decl.input_dataset or "")
    assert ds is not None  # reusing() checked it
    rows = requests.of(job_prefix(decl), ds.files, infos[ds.name].sha256)
    known = index.lookup([digest for _, digest in rows])
    full_id = dataset_id(project, ds.name, infos[ds.name].sha256)
    split, own = _stable(decl, ds, rows, known, full_id, project)
    if 0 < len(split.send) < split.total:
        split = _with_derived(split, ds, rows, root)
    if decl.canary is not None:
        sample = _canary_sample(decl, ds, rows, known, own, index, root)
        split = dataclasses.replace(split, canary=sample)
    return split


class _Requests:
    """(custom_id, request hash) of each row, per job prefix and dataset. Cached on disk under
    ``.batchops/rows/`` by the dataset's content hash and the request prefix, so it can never be
    stale: an unchanged dataset costs a read of 16 bytes a row and of its custom_ids (kept by
    its content hash too), not a parse and a hash of every row. Within one pass, jobs that share
    a dataset read its custom_ids once, and jobs that also share a prefix (model and parameters)
    share the whole list."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._ids: dict[str, list[str]] = {}
        self._rows: dict[str, list[tuple[str, bytes]]] = {}

    def of(
        self, prefix: bytes, files: Sequence[Path], content_sha256: str
    ) -> list[tuple[str, bytes]]:
        key = hashlib.sha256(prefix + b"\0" + content_sha256.encode()).hexdigest()
        rows = self._rows.get(key)
        if rows is None:
            rows = self._rows[key] = self._read(key, prefix, files, content_sha256)
        return rows

    def _read(
        self, key: str, prefix: bytes, files: Sequence[Path], content_sha256: str
    ) -> list[tuple[str, bytes]]:
        path = self._folder / f"{key}.bin"
        try:
            digests = path.read_bytes()
        except OSError:
            digests = b""
        if digests:
            ids = self._custom_ids(files, content_sha256)
            if len(digests) == DIGEST_SIZE * len(ids):
                return [
                    (cid, digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE])
                    for i, cid in enumerate(ids)
                ]
        rows = list(file_requests(prefix, files))
        write_derived(path, iter([b"".join(digest for _, digest in rows)]))
        self._remember_ids(content_sha256, [cid for cid, _ in rows])
        return rows

    def _custom_ids(self, files: Sequence[Path], content_sha256: str) -> list[str]:
        """The dataset's custom_ids: from this pass, or its IDs file (a JSON array: 1 GB of
        rows has ~30 MB of IDs, read in ~0.1 s where the rows took ~2 s), or its rows."""
        ids = self._ids.get(content_sha256)
        if ids is None:
            try:
                found = orjson.loads((self._folder / f"{content_sha256}.ids.json").read_bytes())
            except (OSError, orjson.JSONDecodeError):
                found = None
            if isinstance(found, list) and all(type(cid) is str for cid in found):
                ids = self._ids[content_sha256] = found
            else:  # none yet, or damaged
                ids = list(iter_custom_ids(list(files)))
                self._remember_ids(content_sha256, ids, again=True)
        return ids

    def _remember_ids(self, content_sha256: str, ids: list[str], *, again: bool = False) -> None:
        self._ids[content_sha256] = ids
        path = self._folder / f"{content_sha256}.ids.json"
        if again or not path.exists():
            write_derived(path, iter([orjson.dumps(ids)]))


def _stable(
    decl: JobDecl,
    ds: DatasetDecl,
    rows: Sequence[tuple[str, bytes]],
    known: Mapping[bytes, Answer],
    full_id: str,
    project: str,
) -> tuple[RowSplit, frozenset[str]]:
    """The split whose job is not one of the jobs it reuses from: once this declaration's job
    has answered its rows, they are still its own rows to send (the job is the same), not rows
    reused from itself. Returns the jobs left out, too."""
    split = split_rows(rows, known)
    families: dict[str, set[str]] = {}  # base hash -> its jobs (attempts, continuations)
    for job, _ in split.reused_from:
        parts = parse_job_id(job)
        if parts is not None and name_matches(parts.name, decl.name):  # shortened IDs too
            families.setdefault(parts.digest, set()).add(job)
    for digest, jobs in sorted(families.items()):
        trial = split_rows(rows, known, exclude_jobs=frozenset(jobs))
        if _base_of(trial, decl, ds, rows, full_id, project)[-HASH_LEN:] == digest:
            return trial, frozenset(jobs)
    return split, frozenset()


def _canary_sample(
    decl: JobDecl,
    ds: DatasetDecl,
    rows: Sequence[tuple[str, bytes]],
    known: Mapping[bytes, Answer],
    own: frozenset[str],
    index: ReuseIndex,
    root: Path,
) -> CanarySample | None:
    """The canary's rows: of the rows the full job would send had no canary run (its own
    answers and its canary's left out), those with the lowest request hashes."""
    assert decl.canary is not None
    name = canary_name(decl.name)
    canaries = {
        a.job for a in known.values() if (p := parse_job_id(a.job)) and name_matches(p.name, name)
    }
    basis = split_rows(rows, known, exclude_jobs=own | canaries)
    if not basis.send:
        return None
    send = frozenset(basis.send)
    digests = {cid: digest for cid, digest in rows if cid in send}
    chosen = sorted(send, key=digests.__getitem__)[: decl.canary.rows]
    derived = _with_derived(RowSplit(len(rows), tuple(chosen), ()), ds, rows, root).derived
    assert derived is not None
    hashes = [digests[cid] for cid in chosen]
    answered = {digest: line for digest, _, line in index.lines(hashes)}  # once it has run
    lines = (orjson.loads(answered[h]) for h in hashes[:3] if h in answered)
    answers = tuple((str(row.get("custom_id")), str(row.get("text") or "")) for row in lines)
    sample = CanarySample(input=derived, of=len(send), answers=answers)
    if decl.response_schema is None or not answered:
        return sample
    return _conformance(sample, decl.response_schema, list(answered.values()))


def _conformance(
    sample: CanarySample, schema: Mapping[str, Any], answered: list[bytes]
) -> CanarySample:
    """The sample with its answered rows checked against the job's ``responseFormat``, as the
    merge checks them: an answer that breaks it is a failed row of the canary."""
    from batchops.sources.conform import answer_check  # jsonschema: only when there is a check

    check = answer_check(dict(schema))
    bad = [why for line in answered if (why := check(line)) is not None]
    if not bad:
        return sample
    return dataclasses.replace(sample, nonconforming=len(bad), violation=bad[0])


def _base_of(
    split: RowSplit,
    decl: JobDecl,
    ds: DatasetDecl,
    rows: Sequence[tuple[str, bytes]],
    full_id: str,
    project: str,
) -> str:
    """The base job ID the split's job would have ("" when nothing is sent)."""
    if not split.send:
        return ""
    if len(split.send) == split.total:
        return base_job_id(decl, full_id, project)
    sha, _, _ = derived_digest(ds.files, _positions(split, rows))
    return base_job_id(decl, dataset_id(project, ds.name, sha), project)


def _positions(split: RowSplit, rows: Sequence[tuple[str, bytes]]) -> frozenset[int]:
    """The row numbers (non-blank lines, across files) of the rows to send."""
    send = frozenset(split.send)
    return frozenset(pos for pos, (cid, _) in enumerate(rows) if cid in send)


def _with_derived(
    split: RowSplit, ds: DatasetDecl, rows: Sequence[tuple[str, bytes]], root: Path
) -> RowSplit:
    wanted = _positions(split, rows)
    sha, count, size = derived_digest(ds.files, wanted)
    folder = private_dir(ensure_state_dir(root) / DERIVED_DIR, root=root)
    path = folder / f"{sha}.jsonl"
    if not path.is_file() or path.stat().st_size != size:
        write_derived(path, derived_lines(ds.files, wanted))
    derived = DerivedInput(dataset=ds.name, path=path, sha256=sha, rows=count, size=size)
    return RowSplit(split.total, split.send, split.reused_from, derived)


def derived_lines(files: Sequence[Path], wanted: frozenset[int]) -> Iterator[bytes]:
    """The rows at the wanted row numbers, as they are in the dataset (newline-terminated)."""
    pos = 0
    for path in files:
        with path.open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                if pos in wanted:
                    yield line if line.endswith(b"\n") else line + b"\n"
                pos += 1


def derived_digest(files: Sequence[Path], wanted: frozenset[int]) -> tuple[str, int, int]:
    digest, rows, size = hashlib.sha256(), 0, 0
    for line in derived_lines(files, wanted):
        digest.update(line)
        rows, size = rows + 1, size + len(line)
    return digest.hexdigest(), rows, size


def write_derived(path: Path, lines: Iterator[bytes]) -> None:
    """Write beside and rename: a reader never sees half a derived file."""
    tmp = private_file(path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"))
    with tmp.open("wb") as handle:
        handle.writelines(lines)
    tmp.replace(path)


# -- rebuilding the index from the provider (a fresh checkout: an empty .batchops/) -------------

_ANSWERING = frozenset({JobState.FINISHED, JobState.EXPIRED})  # states that kept their answers


def rebuild(
    provider: Provider,
    observed: Observed,
    desired: Desired,
    infos: Mapping[str, DatasetFacts],
    *,
    root: Path,
    project: str,
    outputs: OutputCache | None = None,
) -> int:
    """Record the answers of our finished (or expired) jobs the index does not know yet, from
    their inputs and outputs: downloads, no inference. Only jobs that could answer a declared
    job's rows (same provider and model) are read. An input whose bytes are on disk (a declared
    dataset, a derived one) is read there, not downloaded; ``outputs`` keeps each output for the
    merge of the same pass, which then downloads nothing again. Returns the count of jobs read."""
    wanted = {(d.provider, d.model) for d in desired.jobs if reusing(d, infos)}
    if not wanted:
        return 0
    with ReuseIndex.open(root) as index:
        known = index.indexed_jobs()
        todo = [
            job
            for job in observed.jobs
            if job.owner == project
            and job.key not in known
            and job.state in _ANSWERING
            and (job.provider, job.model) in wanted
        ]
        local = _LocalInputs(desired, infos, root, project)
        for job in sorted(todo, key=lambda j: j.key):
            index.record([job.key], _answers_of(provider, job, root, local, outputs))
    return len(todo)


class _LocalInputs:
    """Remote input IDs whose bytes are on disk: the declared datasets (validated this pass) and
    the derived ones under ``.batchops/derived/`` (named by their sha256, checked before use).
    IDs are content-addressed, so the same ID is the same bytes."""

    def __init__(
        self, desired: Desired, infos: Mapping[str, DatasetFacts], root: Path, project: str
    ) -> None:
        self._declared = {
            dataset_id(project, d.name, infos[d.name].sha256): d.files
            for d in desired.datasets
            if d.name in infos
        }
        self._names = [d.name for d in desired.datasets]
        self._folder = root / STATE_DIR / DERIVED_DIR
        self._project = project

    def files(self, input_id: str) -> tuple[Path, ...] | None:
        if input_id in self._declared:
            return tuple(self._declared[input_id])
        if not input_id or not self._folder.is_dir():
            return None
        for path in sorted(self._folder.glob("*.jsonl")):
            sha = path.stem
            if any(dataset_id(self._project, n, sha) == input_id for n in self._names):
                return (path,) if file_sha256(path) == sha else None
        return None


def _answers_of(
    provider: Provider,
    job: RemoteJob,
    root: Path,
    local: _LocalInputs,
    outputs: OutputCache | None,
) -> list[tuple[bytes, str, str, bytes]]:
    """(hash, job, custom_id, line) of each answered row of one job, read from the provider."""
    # What the provider echoes for parameters never set is left out, as a declaration leaves it
    # out; a default echoed otherwise makes a different hash: a missed reuse, never a stale one.
    params = {k: v for k, v in job.parameters.items() if not (k == "extraBody" and v == "{}")}
    if job.precision and job.precision != "PRECISION_UNSPECIFIED":
        params["precision"] = job.precision
    prefix = request_prefix(job.provider, job.model, params)
    on_disk = local.files(job.input_id)
    with Scratch(root) if on_disk is None or outputs is None else nullcontext() as scratch:
        try:
            inputs = on_disk or provider.download_input(job.input_id, _folder(scratch, "input"))
            if outputs is not None:
                folders = outputs.job(provider, job.key)
            else:
                folders = provider.download_outputs([job.key], _folder(scratch, "output"))
        except NotFoundError:  # its input or output is gone: nothing to reuse from it
            return []
        requests = dict(file_requests(prefix, inputs))
        found = []
        for folder in folders:
            for cid, line in _output_lines(folder / OUTPUT_FILE):
                if cid in requests:
                    found.append((requests[cid], job.key, cid, line))
        return found


def _folder(scratch: Scratch | None, name: str) -> Path:
    assert scratch is not None  # made whenever something is downloaded here
    return scratch.path / name


def _output_lines(path: Path) -> Iterator[tuple[str, bytes]]:
    if not path.is_file():
        return
    with path.open("rb") as handle:
        for raw in handle:
            line = raw.rstrip(b"\r\n")
            try:
                row = orjson.loads(line) if line.strip() else None
            except orjson.JSONDecodeError:
                continue  # a torn line answers nothing we can attribute
            cid = row.get("custom_id") if isinstance(row, dict) else None
            if isinstance(cid, str):
                yield cid, line
