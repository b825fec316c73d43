"""A gate verdict written out (harness/gate.py decides it): a row per check with stable
fields (the terminal table, `gate --format json|csv`), JUnit XML for CI, Markdown for a job
summary or a PR comment. Pure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from harness.gate import OUTCOMES, Case, GateVerdict
from harness.gate_quality import Check

# worst first: how rows are ordered everywhere a verdict is listed
SEVERITY = ("fail", "missing", "inconclusive", "pass")

# the unit a budget is written in, and the factor from the stored figure to it
UNITS: dict[str, tuple[str, float]] = {
    "p50_ms": ("ms", 1.0),
    "p90_ms": ("ms", 1.0),
    "p99_ms": ("ms", 1.0),
    "peak_mem_mb": ("MB", 1.0),
    "energy_mj": ("mJ", 1.0),
    "max_accuracy_drop": ("pts", 100.0),
    "min_psnr_db": ("dB", 1.0),
    "max_regression_pct": ("%", 1.0),
    "min_speedup": ("x", 1.0),
    "max_cpu_fallback_share": ("%", 100.0),
}

# checks that say a job is absent or failed, with no budget of their own
NOT_BUDGETS = ("jobs", "job")

# the fields of `check_rows`, in order: `harness gate --format json|csv` prints them
CHECK_FIELDS = (
    "outcome", "device", "model", "variant", "setting", "measure", "value", "ci_low",
    "ci_high", "budget", "direction", "unit", "margin", "message", "job_id", "case",
)  # fmt: skip


def check_rows(verdict: GateVerdict) -> list[dict[str, Any]]:
    """A row per check, worst outcome first, each naming its case and carrying its figures
    in the budget's unit. `margin` is the room left between the far end of the interval and
    the budget (negative: over it by that much); None where nothing was measured."""
    rows = [_check_row(case, check) for case in verdict.cases for check in case.checks]
    return sorted(rows, key=lambda row: SEVERITY.index(row["outcome"]))


def _check_row(case: Case, check: Check) -> dict[str, Any]:
    unit, scale = UNITS.get(check.metric, ("", 1.0))
    minimum = check.metric.startswith("min_")

    def scaled(value: float | None) -> float | None:
        return None if value is None else value * scale

    value, low, high = scaled(check.value), scaled(check.low), scaled(check.high)
    limit = check.limit * scale
    margin = None
    if low is not None and high is not None:
        margin = low - limit if minimum else limit - high
    return {
        "outcome": check.outcome,
        "device": case.device,
        "model": case.model,
        "variant": case.variant,
        "setting": case.setting,
        "measure": check.metric,
        "value": value,
        "ci_low": low if low != high else None,
        "ci_high": high if low != high else None,
        "budget": None if check.metric in NOT_BUDGETS else limit,
        "direction": "min" if minimum else "max",
        "unit": unit,
        "margin": margin,
        "message": check.message,
        "job_id": case.job_id,
        "case": case.name,  # the one way a case is named: the JUnit test case's name
    }


def _figure(value: float, unit: str) -> str:
    return f"{value:.4g} {unit}".rstrip() if unit not in ("x", "%") else f"{value:.4g}{unit}"


def measured_text(row: dict[str, Any]) -> str:
    """`3.28 ms [3.09 to 3.49]` (the 95% interval), or the reason nothing was measured."""
    if row["value"] is None:
        return str(row["message"])
    text = _figure(row["value"], row["unit"])
    if row["ci_low"] is not None:
        text += f" [{row['ci_low']:.4g} to {row['ci_high']:.4g}]"
    return text


def budget_text(row: dict[str, Any]) -> str:
    if row["budget"] is None:
        return ""
    sign = ">=" if row["direction"] == "min" else "<="
    return f"{sign} {_figure(row['budget'], row['unit'])}"


def margin_text(row: dict[str, Any]) -> str:
    """`+1.7 ms` inside the budget, `-0.28 ms` over it; blank where nothing was measured."""
    if row["margin"] is None or row["value"] is None or row["budget"] is None:
        return ""
    margin = row["margin"]
    return f"{'+' if margin >= 0 else '-'}{_figure(abs(margin), row['unit'])}"


def junit_xml(
    verdict: GateVerdict,
    *,
    timestamp: str,
    hostname: str,
    properties: dict[str, str] | None = None,
    durations_s: dict[str, float] | None = None,
    suite: str = "harness gate",
) -> str:
    """One test case per budget × device × model × variant × setting: fail → <failure>,
    missing → <error>, inconclusive → <skipped> (CI shows it; the exit code is 2). Valid
    against both the Ant JUnit schema (the strictest: a timestamp without zone, a hostname,
    times, <properties> first, one outcome element per case) and Jenkins' xunit schema.
    `timestamp`: when the run started (UTC); `durations_s`: each job's timed inference, by
    job id (the case's `time`)."""
    counts = verdict.counts()
    durations = durations_s or {}
    times = [durations.get(case.job_id or "", 0.0) for case in verdict.cases]
    root = ET.Element(
        "testsuite",
        name=suite,
        timestamp=timestamp,
        hostname=hostname or "localhost",
        tests=str(len(verdict.cases)),
        failures=str(counts.get("fail", 0)),
        errors=str(counts.get("missing", 0)),
        skipped=str(counts.get("inconclusive", 0)),
        time=f"{sum(times):.3f}",
    )
    listed = ET.SubElement(root, "properties")
    for name, value in (properties or {}).items():
        ET.SubElement(listed, "property", name=name, value=value)
    for case, time_s in zip(verdict.cases, times, strict=True):
        element = ET.SubElement(
            root,
            "testcase",
            classname=f"harness.gate.{case.device or 'any'}",
            name=case.name,
            time=f"{time_s:.3f}",
        )
        tag = {"fail": "failure", "missing": "error", "inconclusive": "skipped"}.get(case.outcome)
        if tag:
            outcome = ET.SubElement(element, tag, message=case_message(case))
            if tag != "skipped":
                outcome.set("type", f"budget {case.outcome}")
            outcome.text = "\n".join(f"{c.metric}: {c.outcome}: {c.message}" for c in case.checks)
    ET.SubElement(root, "system-out").text = "\n".join(
        f"{case.name}: {c.metric}: {c.outcome}: {c.message}"
        for case in verdict.cases
        for c in case.checks
    )
    ET.SubElement(root, "system-err")
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def case_message(case: Case) -> str:
    """What went wrong in a case, in one line: each check that did not pass, with its
    figures (`p99_ms: 15.8 ms [95% CI 14.2 to 18.5] vs budget 5 ms`)."""
    bad = [c for c in case.checks if c.outcome != "pass"] or list(case.checks)
    return "; ".join(f"{c.metric} {c.outcome}: {c.message}" for c in bad)


def counts_line(verdict: GateVerdict) -> str:
    """The checks counted (one a row of the table), then the cases they make up."""
    checks = [c.outcome for case in verdict.cases for c in case.checks]
    if not checks:
        return "no budgets evaluated"
    by_check = ", ".join(f"{checks.count(o)} {o}" for o in OUTCOMES if o in checks)
    by_case = ", ".join(f"{n} {o}" for o, n in verdict.counts().items())
    return f"{len(checks)} checks: {by_check} (in {len(verdict.cases)} cases: {by_case})"


ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️", "missing": "⛔"}


def markdown_summary(
    verdict: GateVerdict, passes_listed: int = 50, failures_listed: int = 250
) -> str:
    """The verdict for a PR comment or a CI step summary: what did not pass first, one short
    row a check (case, measure, figure, budget, margin); passes folded. The lists are cut
    at `failures_listed` and `passes_listed` rows (the JUnit XML has them all), which keeps
    the text under GitHub's 65,536 characters for a comment."""
    lines = [
        f"## Release gate: {ICONS[verdict.outcome]} {verdict.outcome.upper()}",
        "",
        counts_line(verdict),
        "",
    ]
    rows = check_rows(verdict)
    bad = [row for row in rows if row["outcome"] != "pass"]
    good = [row for row in rows if row["outcome"] == "pass"]
    if bad:
        lines += _markdown_table(bad[:failures_listed]) + [""]
        if len(bad) > failures_listed:
            cut = len(bad) - failures_listed
            lines += [f"... and {cut} more that did not pass (all in the JUnit XML)", ""]
    if good:
        shown = good[:passes_listed]
        more = f", {len(good) - len(shown)} more in the JUnit XML" if len(good) > len(shown) else ""
        lines += [f"<details><summary>{len(good)} checks passed{more}</summary>", ""]
        lines += _markdown_table(shown) + ["", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| | case | measure | measured [95% CI] | budget | margin |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [ICONS[row["outcome"]], row["case"], f"`{row['measure']}`",
                 measured_text(row), budget_text(row), margin_text(row)]  # fmt: skip
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines
