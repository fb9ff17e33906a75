"""A plan's cost as text, JSON and Markdown. Pure; ``batchops.render.plan`` calls these.

One line per action that sends rows (rows, input tokens, expected and worst-case output tokens
and cost, and a budget it breaks), one per job waiting on an upstream stage (not priced until it
is planned: upper bounds where known), then the totals. Unknown figures read "unknown", never $0.
"""

from __future__ import annotations

from typing import Any

from batchops.money import (
    ActionCost,
    CostReport,
    Price,
    WaitingCost,
    money_text,
    on_provider,
    tokens_text,
)
from batchops.textsafe import inert, md_code, md_text


def _tokens_in(c: ActionCost) -> str:
    text = tokens_text(c.input_tokens)
    return text if c.input_exact or c.input_tokens is None else f"~{text}"


def cost_line(c: ActionCost) -> str:
    rows = "unknown" if c.rows is None else f"{c.rows:,}"
    line = (
        f"  $ {inert(c.job)} [{inert(c.remote_id)}]: {rows} rows, {_tokens_in(c)} input "
        f"tokens, output {tokens_text(c.output_expected)} expected ({c.expected_from}) / "
        f"{tokens_text(c.output_worst)} worst case; cost {money_text(c.cost_expected)} "
        f"expected / {money_text(c.cost_worst)} worst case"
    )
    if c.price is None:
        line += f"; no price for {inert(c.model)}{inert(on_provider(c.provider))}"
    return line + (f"  OVER BUDGET: {inert(c.over_budget)}" if c.over_budget else "")


def _bounds(w: WaitingCost) -> str:
    if w.rows_at_most is None:
        return "its rows are not known yet"
    rows = f"at most {w.rows_at_most:,} rows"
    if w.output_worst_at_most is None:
        return rows
    return f"{rows}, at most {tokens_text(w.output_worst_at_most)} output tokens"


def _waits(w: WaitingCost) -> str:
    on = ", ".join(w.waits_on)
    return f"blocked: {on} failed" if w.blocked else f"waits on {on}"


def waiting_line(w: WaitingCost) -> str:
    return (
        f"  … {inert(w.job)}: {inert(_waits(w))}; cost not known until it is planned "
        f"({_bounds(w)}); its budgets are checked then"
    )


def total_line(report: CostReport) -> str:
    exact = all(a.input_exact for a in report.actions) or report.input_tokens is None
    count = len(report.waiting)
    left_out = (
        f" Not counted: {count} job{'s' if count != 1 else ''} waiting on an upstream stage, "
        "priced when planned."
        if count
        else ""
    )
    return (
        f"Cost: {money_text(report.cost_expected)} expected, "
        f"{money_text(report.cost_worst)} worst case "
        f"({'' if exact else '~'}{tokens_text(report.input_tokens)} input tokens, "
        f"{tokens_text(report.output_expected)} to {tokens_text(report.output_worst)} "
        f"output tokens; batch prices, US dollars).{left_out}"
    )


def cost_text_lines(report: CostReport | None) -> list[str]:
    if report is None or not (report.actions or report.waiting):
        return []
    lines = ["Cost:", *(cost_line(a) for a in report.actions)]
    lines += [waiting_line(w) for w in report.waiting]
    lines.append(total_line(report))
    lines += [f"Refused by a budget: {inert(r)}" for r in report.refusals]
    return lines


def _price_json(price: Price | None) -> dict[str, Any] | None:
    if price is None:
        return None
    return {
        "input": price.input,
        "cachedInput": price.cached_input,
        "output": price.output,
        "asOf": price.as_of,
        "source": price.source,
    }


def action_cost_json(c: ActionCost) -> dict[str, Any]:
    return {
        "job": c.job,
        "remoteId": c.remote_id,
        "provider": c.provider,
        "model": c.model,
        "rows": c.rows,
        "inputTokens": c.input_tokens,
        "inputTokensExact": c.input_exact,
        "outputTokensExpected": c.output_expected,
        "outputTokensWorstCase": c.output_worst,
        "expectedFrom": c.expected_from,
        "costExpected": c.cost_expected,
        "costWorstCase": c.cost_worst,
        "price": _price_json(c.price),
        "overBudget": c.over_budget,
    }


def waiting_cost_json(w: WaitingCost) -> dict[str, Any]:
    return {
        "job": w.job,
        "provider": w.provider,
        "model": w.model,
        "waitsOn": list(w.waits_on),
        "blocked": w.blocked,
        "rowsAtMost": w.rows_at_most,
        "outputTokensWorstCaseAtMost": w.output_worst_at_most,
        "inputTokens": None,
        "costExpected": None,
        "costWorstCase": None,
    }


def cost_json(report: CostReport | None) -> dict[str, Any] | None:
    """``cost`` in the plan's JSON: per action, totals (null when a part is unknown), refusals;
    ``waiting``: the jobs waiting on an upstream stage, not in the totals."""
    if report is None:
        return None
    return {
        "currency": "USD",
        "compare": report.compare,
        "actions": [action_cost_json(a) for a in report.actions],
        "total": {
            "rows": report.rows,
            "inputTokens": report.input_tokens,
            "outputTokensExpected": report.output_expected,
            "outputTokensWorstCase": report.output_worst,
            "costExpected": report.cost_expected,
            "costWorstCase": report.cost_worst,
            "waitingNotCounted": len(report.waiting),
        },
        "waiting": [waiting_cost_json(w) for w in report.waiting],
        "overBudget": report.over_budget,
        "refusals": list(report.refusals),
    }


def cost_markdown(report: CostReport | None) -> list[str]:
    if report is None or not (report.actions or report.waiting):
        return []
    lines = [
        "",
        "| Job | Rows | Input tokens | Output (expected / worst) | Cost (expected / worst) "
        "| Budget |",
        "|---|---|---|---|---|---|",
    ]
    for c in report.actions:
        rows = "unknown" if c.rows is None else f"{c.rows:,}"
        budget = md_text(inert(c.over_budget)) if c.over_budget else "ok"
        lines.append(
            f"| {md_code(c.job)} | {rows} | {_tokens_in(c)} | "
            f"{tokens_text(c.output_expected)} / {tokens_text(c.output_worst)} | "
            f"{money_text(c.cost_expected)} / {money_text(c.cost_worst)} | "
            f"{budget} |"
        )
    for w in report.waiting:
        rows = "unknown" if w.rows_at_most is None else f"≤ {w.rows_at_most:,}"
        out = "unknown" if w.output_worst_at_most is None else f"≤ {w.output_worst_at_most:,}"
        lines.append(
            f"| {md_code(w.job)} | {rows} | unknown | unknown / {out} | "
            f"not known until planned ({md_text(inert(_waits(w)))}) | checked when planned |"
        )
    lines += ["", f"{md_text(total_line(report))}  "]
    lines += [f"**Refused by a budget:** {md_text(inert(r))}  " for r in report.refusals]
    return [*lines, ""]
