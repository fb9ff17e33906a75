"""Stages of a pipeline: which declared jobs wait on which, and where each stage stands. Pure.

``batchops.plan.make`` asks ``gates`` which jobs may not run yet: a job runs only once every job
it depends on (its chained input's upstream, ``spec.dependsOn``) has current, verified results;
until then it is shown as waiting (``… waits on generate``) and nothing of it is sent. Results
with rows still to be sent again (``spec.rowRetries``) are not final: their stage still runs.
``status`` and ``describe`` read the same gates and ``stage_rows``. One walk over the jobs and
their edges: O(jobs + edges).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from batchops.manifest.desired import JobDecl
from batchops.plan.jobs import row_retry_input
from batchops.plan.model import Action, Kind, Resource, StageInfo
from batchops.plan.rows import FailedRows
from batchops.plan.views import JobView
from batchops.providers import JobState

_BLOCKING = frozenset({JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class Gate:
    """Why a job waits: the declared names of the stages it waits on; blocked when one of them
    failed (then waiting is over until someone acts)."""

    waits_on: tuple[str, ...]
    blocked: bool = False


def order(decls: Iterable[JobDecl]) -> list[JobDecl]:
    """Jobs upstream first (an iterative depth-first walk; edges to unknown names ignored)."""
    by_name = {d.name: d for d in decls}
    done: set[str] = set()
    out: list[JobDecl] = []
    for start in by_name.values():
        if start.name in done:
            continue
        stack = [(start, 0)]
        done.add(start.name)
        while stack:
            decl, i = stack[-1]
            if i < len(decl.depends_on):
                stack[-1] = (decl, i + 1)
                dep = by_name.get(decl.depends_on[i])
                if dep is not None and dep.name not in done:
                    done.add(dep.name)
                    stack.append((dep, 0))
                continue
            stack.pop()
            out.append(decl)
    return out


def gates(
    views: Sequence[JobView],
    waiting: Iterable[str] = (),
    failed: Mapping[str, FailedRows] | None = None,
) -> dict[str, Gate]:
    """The jobs that wait, by name. ``waiting``: datasets not rendered yet (their upstream has
    no verified results), whose readers wait whatever the views say. ``failed``: each job's
    classified failed rows (``batchops.row_retries``): an upstream about to send some again is
    not settled."""
    failed = failed or {}
    by_name = {v.decl.name: v for v in views}
    unready = set(waiting)
    found: dict[str, Gate] = {}
    for decl in order(v.decl for v in views):
        names: list[str] = []
        blocked = False
        for dep in decl.depends_on:
            up = by_name.get(dep)
            if up is None:
                continue  # outside the selection: its rendered results (or none) decide
            gate = found.get(dep)
            if gate is not None or not _settled(up, failed):
                names.append(up.decl.declared_name)
                blocked = blocked or (gate is not None and gate.blocked) or _failed(up)
        if not names and decl.input_dataset in unready:
            ups = [by_name[d].decl.declared_name if d in by_name else d for d in decl.depends_on]
            names = ups or [decl.input_dataset or ""]
        if names:
            found[decl.name] = Gate(tuple(dict.fromkeys(names)), blocked)
    return found


def _settled(view: JobView, failed: Mapping[str, FailedRows]) -> bool:
    """Its results are final: merged up to its latest job, and no row retry to come."""
    return view.results_current and row_retry_input(view, failed) is None


def _failed(view: JobView | None) -> bool:
    latest = view.latest if view is not None else None
    return latest is not None and latest[1].state in _BLOCKING


def wait_actions(views: Sequence[JobView], found: Mapping[str, Gate]) -> list[Action]:
    actions = []
    for view in views:
        gate = found.get(view.decl.name)
        if gate is None:
            continue
        on = ", ".join(gate.waits_on)
        reason = f"blocked: {on} failed" if gate.blocked else f"waits on {on}"
        details = {"waitsOn": list(gate.waits_on), "blocked": gate.blocked}
        if view.decl.group:
            details["matrix"] = view.decl.group
        resource = Resource("job", view.decl.name, "")
        actions.append(Action(Kind.WAITS, resource, reason, details))
    return actions


def stage_rows(
    views: Sequence[JobView],
    found: Mapping[str, Gate],
    failed: Mapping[str, FailedRows] | None = None,
) -> tuple[StageInfo, ...]:
    """One row per declared job of a pipeline or a matrix (a matrix is one row): its stage
    number (1 + the deepest stage it depends on), its jobs, what it waits on, and its state.
    Empty without any edge or matrix."""
    if not any(v.decl.depends_on or v.decl.group for v in views):
        return ()
    depth: dict[str, int] = {}
    for decl in order(v.decl for v in views):
        deps = [depth[d] for d in decl.depends_on if d in depth]
        depth[decl.name] = 1 + max(deps, default=0)
    linked = {d for v in views for d in v.decl.depends_on}
    groups: dict[str, list[JobView]] = {}
    for view in views:
        if not (view.decl.depends_on or view.decl.group) and view.decl.name not in linked:
            continue  # neither a pipeline's stage nor a matrix
        groups.setdefault(view.decl.declared_name, []).append(view)
    rows = []
    for name, members in groups.items():
        waits = sorted({w for v in members if (g := found.get(v.decl.name)) for w in g.waits_on})
        stage = max(depth[v.decl.name] for v in members)
        rows.append(
            StageInfo(
                stage,
                name,
                tuple(v.decl.name for v in members),
                tuple(waits),
                _state(members, found, failed or {}),
            )
        )
    return tuple(sorted(rows, key=lambda r: (r.stage, r.name)))


def _state(
    members: Sequence[JobView], found: Mapping[str, Gate], failed: Mapping[str, FailedRows]
) -> str:
    gated = [found[v.decl.name] for v in members if v.decl.name in found]
    if any(g.blocked for g in gated):
        return "blocked"
    if gated:
        return "waiting"
    if all(_settled(v, failed) for v in members):
        return "done"
    if any(_failed(v) for v in members):
        return "failed"
    if all(_settled(v, failed) or (_finished(v) and not v.results_current) for v in members):
        return "completed"  # every job finished; results not merged yet (apply downloads them)
    return "running" if any(v.latest is not None for v in members) else "ready"


def _finished(view: JobView) -> bool:
    latest = view.latest
    return latest is not None and latest[1].state is JobState.FINISHED
