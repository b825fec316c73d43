"""Release-gate verdicts over synthetic but realistic frames (pure logic, no devices)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from harness.config import Budget, Budgets
from harness.gate import GateVerdict, evaluate
from harness.report.verdict import (
    CHECK_FIELDS,
    budget_text,
    check_rows,
    junit_xml,
    margin_text,
    markdown_summary,
    measured_text,
)

RNG = np.random.default_rng(0)


def job(job_id: str, variant: str, p_ms: float, status: str = "ok", **extra: object) -> dict:
    return {"job_id": job_id, "device": "pi", "device_class": "pi5", "model": "m", "variant": variant,
            "runtime": "onnxruntime", "provider": "CPU", "threads": 1, "status": status, "error": None,
            "peak_rss_mb": 100.0, "energy_mj": np.nan, "accuracy": np.nan, "eval_n": np.nan,
            "top1_agreement": np.nan, "p50_ms": p_ms, **extra}  # fmt: skip


def samples_for(rows: list[dict], spread: float = 0.02) -> pd.DataFrame:
    parts = []
    for row in rows:
        values = RNG.normal(row["p50_ms"], row["p50_ms"] * spread, 2000) * 1e6
        parts.append(
            pd.DataFrame(
                {"job_id": row["job_id"], "process": 0, "latency_ns": values.astype(np.int64)}
            )
        )
    return pd.concat(parts, ignore_index=True)


def gate(budget: Budget, rows: list[dict], baseline: list[dict] | None = None):
    results = pd.DataFrame(rows)
    base = (pd.DataFrame(baseline), samples_for(baseline)) if baseline else None
    return evaluate(Budgets(budget=[budget]), results, samples_for(rows), base)


def test_pass_fail_and_straddle() -> None:
    rows = [job("a", "fp32", 10.0)]
    # p90 of N(10, 0.2) is ~10.26 with a narrow CI
    assert gate(Budget(model="m", p90_ms=11.0), rows).outcome == "pass"
    assert gate(Budget(model="m", p90_ms=9.0), rows).outcome == "fail"
    straddled = gate(Budget(model="m", p90_ms=10.256), rows)
    assert straddled.outcome == "inconclusive" and straddled.exit_code == 2
    check = straddled.cases[0].checks[0]
    assert check.low is not None and check.high is not None and check.low < 10.256 < check.high


def test_missing_data_is_never_a_pass() -> None:
    rows = [job("a", "fp32", 10.0)]
    no_match = gate(Budget(model="other", p90_ms=100.0), rows)
    assert no_match.outcome == "missing" and no_match.exit_code == 2
    failed = gate(
        Budget(model="m", p90_ms=100.0),
        [job("a", "fp32", 10.0, status="timeout", error="timed out")],
    )
    assert failed.outcome == "missing" and "job timeout" in failed.cases[0].checks[0].message
    energy = gate(Budget(model="m", energy_mj=5.0), rows)
    assert energy.outcome == "missing" and "not measured" in energy.cases[0].checks[0].message
    assert gate(Budget(model="m", max_regression_pct=5), rows).outcome == "missing"


def test_worst_outcome_wins_and_exit_codes() -> None:
    rows = [job("a", "fp32", 10.0)]
    budgets = Budgets(budget=[Budget(model="m", p90_ms=11.0), Budget(model="m", peak_mem_mb=50.0)])
    verdict = evaluate(budgets, pd.DataFrame(rows), samples_for(rows))
    assert [c.outcome for c in verdict.cases] == ["pass", "fail"]
    assert verdict.outcome == "fail" and verdict.exit_code == 1
    assert gate(Budget(model="m", peak_mem_mb=150.0), rows).exit_code == 0


def test_accuracy_drop_uses_the_paired_bound_when_agreement_is_known() -> None:
    fp32 = job("a", "fp32", 10.0, accuracy=0.97, eval_n=360, top1_agreement=1.0)
    int8 = job("b", "int8", 5.0, accuracy=0.9667, eval_n=360, top1_agreement=0.99)
    paired = gate(Budget(model="m", variant="int8", max_accuracy_drop=0.02), [fp32, int8])
    assert paired.outcome == "pass"  # drop 0.3 pts, CI about ±1 pt
    unpaired = gate(Budget(model="m", variant="int8", max_accuracy_drop=0.02),
                    [fp32, {**int8, "top1_agreement": np.nan}])  # fmt: skip
    assert unpaired.outcome == "inconclusive"  # two independent proportions: about ±2.5 pts
    bad = gate(Budget(model="m", variant="int8", max_accuracy_drop=0.02),
               [fp32, {**int8, "accuracy": 0.90, "top1_agreement": 0.92}])  # fmt: skip
    assert bad.outcome == "fail"


def test_regression_against_a_baseline() -> None:
    before = [job("a0", "fp32", 10.0)]
    assert (
        gate(Budget(model="m", max_regression_pct=5), [job("a1", "fp32", 10.0)], before).outcome
        == "pass"
    )
    assert (
        gate(Budget(model="m", max_regression_pct=5), [job("a1", "fp32", 12.0)], before).outcome
        == "fail"
    )


def junit(verdict: GateVerdict) -> str:
    return junit_xml(
        verdict,
        timestamp="2026-12-04T03:18:06",
        hostname="controller-1",
        properties={"run_id": "r1"},
        durations_s={"a": 2.5},
    )


def test_junit_and_markdown() -> None:
    rows = [job("a", "fp32", 10.0), job("b", "int8", 5.0)]
    budgets = Budgets(budget=[Budget(model="m", p90_ms=6.0)])
    verdict = evaluate(budgets, pd.DataFrame(rows), samples_for(rows))
    suite = ET.fromstring(junit(verdict))
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert suite.get("time") == "2.500" and suite.get("hostname") == "controller-1"
    cases = suite.findall("testcase")
    failure = cases[0].find("failure")
    assert failure is not None and cases[1].find("failure") is None
    assert cases[0].get("name") == "m fp32 on pi (CPU t1)"  # the variant and setting named
    # the message states the case: the metric, its figures and the budget
    assert failure.get("message", "").startswith("p90_ms fail: ")
    assert "vs budget 6 ms" in failure.get("message", "") and "95% CI" in failure.get("message", "")
    text = markdown_summary(verdict)
    assert text.startswith("## Release gate: ❌ FAIL")
    # the counts count the table's rows (checks), then the cases
    assert "2 checks: 1 pass, 1 fail (in 2 cases: 1 pass, 1 fail)" in text
    # the failure first, with its budget and margin; the pass folded below
    assert (
        text.index("m fp32 on pi (CPU t1)") < text.index("<details>") < text.index("m int8 on pi")
    )


def test_each_check_row_names_its_case_and_carries_its_margin() -> None:
    rows = [job("a", "fp32", 10.0), job("b", "int8", 5.0)]
    budgets = Budgets(budget=[Budget(model="m", p90_ms=6.0, max_accuracy_drop=0.02)])
    verdict = evaluate(budgets, pd.DataFrame(rows), samples_for(rows))
    checks = check_rows(verdict)
    assert [list(row) for row in checks] == [list(CHECK_FIELDS)] * len(checks)
    assert [r["outcome"] for r in checks] == ["fail", "missing", "missing", "pass"]
    fail = checks[0]
    assert (fail["model"], fail["variant"], fail["device"], fail["setting"]) == (
        "m",
        "fp32",
        "pi",
        "CPU t1",
    )
    # over the budget by the interval's far end: p90 ~10.26 ms against 6 ms
    assert fail["margin"] == pytest.approx(6.0 - fail["ci_high"]) and fail["margin"] < -4
    assert budget_text(fail) == "<= 6 ms" and margin_text(fail).startswith("-4.")
    passed = checks[-1]
    assert (
        passed["variant"] == "int8" and passed["margin"] > 0 and margin_text(passed).startswith("+")
    )
    # nothing measured: no figure, no margin, the reason instead
    assert checks[1]["value"] is None and margin_text(checks[1]) == ""
    assert "not measured" in measured_text(checks[1])


def test_a_psnr_budget_needs_no_labels() -> None:
    """min_psnr_db: every output of the variant within that PSNR of fp32's; fp32 is the
    reference; a variant whose fidelity was not measured is missing, never a pass."""
    rows = [
        job("a", "fp32", 10.0),
        job("b", "int8", 6.0, psnr_db=38.5, fidelity_source="representative set"),
        job("c", "pruned", 9.0, psnr_db=19.0, fidelity_source="representative set"),
        job("d", "fp16", 9.0),
        job("e", "int8-noise", 6.0, psnr_db=45.0, fidelity_source="seeded random inputs"),
    ]
    verdict = gate(Budget(model="m", min_psnr_db=30.0), rows)
    outcomes = {case.job_id: case.checks[0].outcome for case in verdict.cases}
    # e: a figure from random inputs neither passes nor fails: unverified, so missing
    assert outcomes == {"a": "pass", "b": "pass", "c": "fail", "d": "missing", "e": "missing"}
    [pruned] = [c for c in verdict.cases if c.job_id == "c"]
    assert "19.0 dB vs budget >= 30 dB (on representative set)" in pruned.checks[0].message
    [noise] = [c for c in verdict.cases if c.job_id == "e"]
    assert "seeded random inputs only (unverified)" in noise.checks[0].message
