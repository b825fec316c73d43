"""A gate verdict written out (harness/gate.py decides it): JUnit XML for CI, Markdown
for a job summary or a PR comment. Pure."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.gate import GateVerdict


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
            ET.SubElement(element, tag, message=f"{case.outcome}").text = details
        ET.SubElement(element, "system-out").text = details
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def markdown_summary(verdict: GateVerdict) -> str:
    icon = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️", "missing": "⛔"}
    lines = [
        f"## Release gate: {icon[verdict.outcome]} {verdict.outcome.upper()}",
        "",
        ", ".join(f"{n} {o}" for o, n in verdict.counts().items()) or "no budgets evaluated",
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
