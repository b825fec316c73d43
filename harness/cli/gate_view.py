"""The gate's verdict for people and for CI: the terminal's checks (a table, or a block per
case where the decision columns do not fit) and the JUnit XML of a verdict on a stored
run. The rows and the XML are made by harness/report/verdict.py; this prints them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli.common import styled

if TYPE_CHECKING:
    from harness.gate import GateVerdict
    from harness.stored_run import Run


def junit_for_run(verdict: GateVerdict, run: Run, budgets: Path) -> str:
    """The JUnit XML of a verdict on a stored run: stamped with the run's start (UTC) and
    this controller's host name; each case's time is its job's timed inference."""
    import socket

    from harness.report.verdict import junit_xml

    started = str(run.meta.get("started_at") or "1970-01-01T00:00:00")[:19]
    commit = (run.meta.get("controller") or {}).get("git_commit") or ""
    properties = {"run_id": run.run_id, "budgets": str(budgets), "git_commit": commit}
    durations = {
        str(row["job_id"]): float(row["n"]) * float(row["mean_ms"]) / 1000
        for row in run.results.to_dict("records")
        if row.get("status") == "ok" and row.get("n") and row.get("mean_ms") == row.get("mean_ms")
    }
    return junit_xml(
        verdict,
        timestamp=started,
        hostname=socket.gethostname(),
        properties=properties,
        durations_s=durations,
    )


def print_verdict(console: Any, verdict: GateVerdict) -> None:
    """The verdict, worst first: a row per check naming its case (model, variant, device,
    runtime setting), the figure with its interval, the budget and the margin. Columns the
    same in every row are said once above; where even the decision columns do not fit, a
    block per case instead of a table."""
    from harness.cli.fit import Column, lift_uniform, print_fitted, table_width, width_for
    from harness.report.verdict import (
        budget_text,
        check_rows,
        counts_line,
        margin_text,
        measured_text,
    )

    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow", "missing": "yellow"}
    console.print(
        styled(
            "release gate: ",
            (verdict.outcome.upper(), colour[verdict.outcome]),
            f" ({counts_line(verdict)})",
        )
    )
    records = check_rows(verdict)
    if not records:
        return
    columns = [Column("outcome"), Column("model"), Column("variant"), Column("device"),
               Column("setting"), Column("measure"), Column("measured [95% CI]", prose=True),
               Column("budget"), Column("margin", numeric=True)]  # fmt: skip
    rows = [
        [r["outcome"], r["model"], r["variant"], r["device"], r["setting"], r["measure"],
         measured_text(r), budget_text(r), margin_text(r)]
        for r in records
    ]  # fmt: skip
    columns, rows, lifted = lift_uniform(columns, rows, ("device", "setting", "model"))
    if table_width(columns, rows) <= width_for(console):
        if lifted:
            console.print("  " + ", ".join(f"{k} {v}" for k, v in lifted.items()))
        styles = [colour.get(row[0]) if row[0] != "pass" else None for row in rows]
        print_fitted(console, columns, rows, styles=styles)
        return
    cases: dict[str, list[dict[str, Any]]] = {}
    for record in records:  # a case a block, its worst check first (records are in that order)
        cases.setdefault(record["case"], []).append(record)
    for case, checks in cases.items():
        outcome = checks[0]["outcome"]
        console.print(styled((outcome.upper(), colour[outcome]), f" {case}"))
        for record in checks:
            line = f"  {record['outcome']:<12} {record['measure']}: {measured_text(record)}"
            if record["budget"] is not None:
                budget = f"{budget_text(record)}, margin {margin_text(record) or '-'}"
                too_long = len(line) + 2 + len(budget) > width_for(console)
                line += f"\n{' ' * 15}{budget}" if too_long else f"  {budget}"
            console.print(line)
