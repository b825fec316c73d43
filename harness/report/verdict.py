"""A gate verdict written out (harness/gate.py decides it): JUnit XML for CI, Markdown
for a job summary or a PR comment. Pure."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.gate import OUTCOMES, Case, GateVerdict


def junit_xml(verdict: GateVerdict, suite: str = "harness gate") -> str:
    """One test case per budget × device × model; fail → <failure>, missing → <error>,
    inconclusive → <skipped> (CI shows it, and the exit code is 2)."""
    counts = verdict.counts()
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(verdict.cases)),
        failures=str(counts.get("fail", 0)),
        errors=str(counts.get("missing", 0)),
        skipped=str(counts.get("inconclusive", 0)),
    )
    for case in verdict.cases:
        element = ET.SubElement(root, "testcase", classname="harness.gate", name=case.name)
        details = "\n".join(f"{c.metric}: {c.outcome}: {c.message}" for c in case.checks)
        tag = {"fail": "failure", "missing": "error", "inconclusive": "skipped"}.get(case.outcome)
        if tag:
            ET.SubElement(element, tag, message=case_message(case)).text = details
        ET.SubElement(element, "system-out").text = details
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


def markdown_summary(verdict: GateVerdict) -> str:
    icon = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️", "missing": "⛔"}
    lines = [
        f"## Release gate: {icon[verdict.outcome]} {verdict.outcome.upper()}",
        "",
        counts_line(verdict),
        "",
        "| case | metric | outcome | measured |",
        "|---|---|---|---|",
    ]
    for case in verdict.cases:
        for check in case.checks:
            lines.append(
                f"| {case.name} | {check.metric} | {icon[check.outcome]} {check.outcome} | "
                f"{check.message} |"
            )
    return "\n".join(lines) + "\n"
