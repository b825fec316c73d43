"""The gate's outputs read by the tools that consume them: the JUnit XML validated against
the Ant and Jenkins schemas (tests/fixtures/junit, cited there) and parsed by junitparser;
the Markdown summary rendered by a CommonMark + GFM-tables renderer (markdown-it-py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from lxml import etree
from markdown_it import MarkdownIt
from test_gate import job, samples_for

from harness.config import Budget, Budgets
from harness.gate import GateVerdict, evaluate
from harness.report.verdict import junit_xml, markdown_summary

SCHEMAS = Path(__file__).parent.parent / "fixtures" / "junit"


def verdict_of_every_outcome() -> GateVerdict:
    """fail, missing (no such job), inconclusive (a budget on the interval) and pass."""
    rows = [job("a", "fp32", 10.0), job("b", "int8", 5.0), job("c", "fp16", 8.0)]
    samples = samples_for(rows)
    budgets = Budgets(
        budget=[
            Budget(model="m", variant="fp32", p90_ms=6.0),
            Budget(model="m", variant="int8", p90_ms=6.0),
            Budget(model="m", variant="pruned", p90_ms=6.0),
            Budget(model="m", variant="fp16", p50_ms=8.0),
        ]
    )
    verdict = evaluate(budgets, pd.DataFrame(rows), samples)
    assert {c.outcome for c in verdict.cases} == {"fail", "pass", "missing", "inconclusive"}
    return verdict


@pytest.mark.parametrize("schema", ["ant-junit.xsd", "jenkins-junit-10.xsd"])
def test_the_junit_xml_is_valid_against_both_schemas(schema: str) -> None:
    validator = etree.XMLSchema(etree.parse(str(SCHEMAS / schema)))
    text = junit_xml(
        verdict_of_every_outcome(),
        timestamp="2026-12-04T03:18:06",
        hostname="controller-1",
        properties={"run_id": "20261204T031806Z-nightly-d134", "git_commit": "7168ab3"},
        durations_s={"a": 1.25, "b": 0.5},
    )
    document = etree.fromstring(text.encode())
    assert validator.validate(document), validator.error_log
    # what the Ant schema refuses: no timestamp, a zone on it, a case without its time
    for attribute, value in (("timestamp", None), ("timestamp", "2026-12-04T03:18:06Z")):
        broken = etree.fromstring(text.encode())
        if value is None:
            del broken.attrib[attribute]
        else:
            broken.set(attribute, value)
        assert schema != "ant-junit.xsd" or not validator.validate(broken)


def test_junitparser_reads_the_cases_and_their_figures(tmp_path: Path) -> None:
    from junitparser import Error, Failure, JUnitXml, Skipped

    path = tmp_path / "gate.xml"
    path.write_text(
        junit_xml(verdict_of_every_outcome(), timestamp="2026-12-04T03:18:06", hostname="h")
    )
    (suite,) = list(JUnitXml.fromfile(str(path)))
    results = {case.name: [type(r) for r in case.result] for case in suite}
    assert results["m fp32 on pi (CPU t1)"] == [Failure]
    assert results["m int8 on pi (CPU t1)"] == []
    assert results["m variant=pruned: no job in this run matches"] == [Error]
    assert results["m fp16 on pi (CPU t1)"] == [Skipped]
    failure = next(c for c in suite if c.name.startswith("m fp32")).result[0]
    assert "vs budget 6 ms" in failure.message and "95% CI" in failure.message
    assert suite.tests == 4 and suite.failures == 1 and suite.errors == 1 and suite.skipped == 1


def render(markdown: str) -> str:
    """As GitHub renders a comment or a step summary: CommonMark, GFM tables, raw HTML."""
    return MarkdownIt("commonmark").enable("table").render(markdown)


def test_the_markdown_summary_renders_whole_with_failures_first() -> None:
    text = markdown_summary(verdict_of_every_outcome())
    html = render(text)
    assert html.count("<table>") == 2  # what needs a look, then the passes folded
    first_rows = html.split("<table>")[1].split("</table>")[0]
    outcomes = [line for line in first_rows.split("<tr>")[2:]]
    assert ["❌" in outcomes[0], "⛔" in outcomes[1], "⚠️" in outcomes[2]] == [True] * 3
    assert "<details><summary>1 checks passed</summary>" in html
    assert "<img" not in html and "href" not in html  # no link that breaks off the run folder
    # every row has the six cells of its header: no cell broken by a `|` in a message
    for table in html.split("<table>")[1:]:
        body = table.split("</table>")[0]
        assert all(row.count("<td") == 6 for row in body.split("<tr>")[2:])


def test_the_summary_stays_under_githubs_comment_limit() -> None:
    """65,536 characters a PR comment: what needs a look comes first and is cut last."""
    rows = [job(f"j{i}", f"v{i}", 5.0 + (i % 2) * 5) for i in range(120)]
    budgets = Budgets(budget=[Budget(model="m", p90_ms=7.0, peak_mem_mb=200.0)])
    verdict = evaluate(budgets, pd.DataFrame(rows), samples_for(rows, spread=0.001))
    text = markdown_summary(verdict, passes_listed=10, failures_listed=40)
    assert text.count("❌") == 1 + 40 and "20 more that did not pass" in text
    assert "180 checks passed, 170 more in the JUnit XML" in text
    huge = [job(f"j{i}", f"v{i}", 10.0) for i in range(1500)]
    verdict = evaluate(
        Budgets(budget=[Budget(model="m", peak_mem_mb=50.0)]),
        pd.DataFrame(huge),
        samples_for(huge[:1]),
    )
    assert len(markdown_summary(verdict)) < 65_536
