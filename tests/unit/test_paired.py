"""The paired in-process comparison's statistic and decision (harness/runner/paired.py),
its pooled row (harness/comparisons.py), and where it is used: compare, the gate."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from harness.analysis import compare_variants
from harness.comparisons import comparison_row
from harness.config import Budget, Budgets
from harness.gate import evaluate
from harness.history import regression_verdict
from harness.records import JobRecord
from harness.runner.paired import (
    block_log_ratios,
    decide,
    run_paired,
    t_975,
    trimmed_mean_ci,
)
from harness.stats import minimum_detectable_effect, trimmed_mean_test


def test_the_runners_trimmed_interval_is_the_controllers() -> None:
    values = np.random.default_rng(3).normal(0.05, 0.02, 40)
    mean, half = trimmed_mean_ci(list(values))
    expected_mean, expected_half, _ = trimmed_mean_test(values)
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert half == pytest.approx(expected_half, rel=3e-4)  # the runner's t table vs scipy's
    for freedom in (1, 5, 30, 31, 60, 200, 5000):
        assert t_975(freedom) == pytest.approx(student_t.ppf(0.975, freedom), rel=3e-4)


def blocks(pairs: list[tuple[str, float]]) -> list[dict]:
    return [{"v": tag, "ns": [value] * 5} for tag, value in pairs]


def test_a_slow_stretch_moves_both_sides_and_not_the_ratio() -> None:
    quiet = [("ref", 100.0), ("variant", 110.0), ("variant", 110.0), ("ref", 100.0)]
    stolen = [("variant", 220.0), ("ref", 200.0), ("ref", 200.0), ("variant", 220.0)]
    ratios = block_log_ratios(blocks(quiet * 2 + stolen * 3 + quiet * 2))
    # a variant block at the stretch's edge sees one quiet and one slow neighbour; the
    # others see their own conditions: their ratios are exactly 1.1, twice as slow or not
    exact = [r for r in ratios if r == pytest.approx(math.log(1.1))]
    assert len(ratios) == 14 and len(exact) == 12
    decision = decide(ratios, band=0.03)  # the two edges are trimmed away
    assert decision["verdict"] == "slower" and decision["ratio"] == pytest.approx(1.1, rel=1e-9)


@pytest.mark.parametrize(
    ("centre", "spread", "verdict"),
    [(1.10, 0.01, "slower"), (0.90, 0.01, "faster"), (1.00, 0.005, "equivalent"),
     (1.02, 0.08, "inconclusive")],
)  # fmt: skip
def test_the_decision_against_the_equivalence_band(
    centre: float, spread: float, verdict: str
) -> None:
    ratios = np.log(centre) + np.random.default_rng(1).normal(0, spread, 30)
    decision = decide(list(ratios), band=0.03)
    assert decision["verdict"] == verdict
    assert decision["ratio_low"] <= decision["ratio"] <= decision["ratio_high"]


def busy(ns: int):
    def infer() -> None:
        until = time.perf_counter_ns() + ns
        while time.perf_counter_ns() < until:
            pass

    return infer


def test_a_paired_run_decides_and_stops() -> None:
    """A variant 30 % slower than its reference (busy loops): decided well before the
    budget, the blocks alternated ABBA/BAAB and kept raw."""
    result = run_paired(busy(100_000), busy(130_000), {"budget_s": 60, "band": 0.05,
                                                         "block_ms": 2}, seed=0)  # fmt: skip
    assert result["stopped"] == "decided" and result["decision"]["verdict"] == "slower"
    assert 1.2 < result["decision"]["ratio"] < 1.4
    tags = [b["v"] for b in result["blocks"]]
    assert tags.count("ref") == tags.count("variant")
    assert {tuple(tags[i : i + 4]) for i in range(0, len(tags), 4)} <= {
        ("ref", "variant", "variant", "ref"), ("variant", "ref", "ref", "variant")
    }  # fmt: skip
    assert all(len(b["ns"]) == result["block_size"] for b in result["blocks"])


def paired_record(processes: list[dict]) -> JobRecord:
    return JobRecord(
        run_id="r", job_id="pi.m.int8.cpu.t1.paired", started_at="", finished_at="",
        device="pi", device_class="", transport="ssh", model="m", variant="int8",
        strategy="int8-static", runtime="onnxruntime", provider="CPU", threads=1,
        status="ok", runner={"paired_processes": processes}, kind="paired",
    )  # fmt: skip


def process(ratio: float, count: int) -> dict:
    pairs = [("ref", 1e6), ("variant", 1e6 * ratio), ("variant", 1e6 * ratio), ("ref", 1e6)]
    noise = np.random.default_rng(count).normal(0, 0.002, 4 * count)
    flat = [(t, v * (1 + e)) for (t, v), e in zip(pairs * count, noise, strict=True)]
    return {"blocks": blocks(flat), "block_size": 5, "band": 0.02, "stopped": "decided",
            "elapsed_s": 1.5}  # fmt: skip


def test_the_processes_pool_into_one_decision() -> None:
    row = comparison_row(paired_record([process(0.8, 10), process(0.8, 12)]))
    assert row["verdict"] == "faster" and row["processes"] == 2 and row["blocks"] == 44
    assert row["speedup"] == pytest.approx(1.25, rel=0.01)
    assert row["speedup_ci_low"] < row["speedup"] < row["speedup_ci_high"]
    assert row["device_s"] == 3.0 and row["confidence"] == 0.95
    assert row["variant_paired_ms"] == pytest.approx(0.8, rel=0.01)


def results_row(variant: str, p50: float) -> dict:
    return {"device": "pi", "model": "m", "runtime": "onnxruntime", "provider": "CPU",
            "threads": 1, "variant": variant, "strategy": variant, "status": "ok",
            "job_id": f"pi.m.{variant}.cpu.t1", "p50_ms": p50, "p50_ci_low_ms": p50 * 0.9,
            "p50_ci_high_ms": p50 * 1.1, "model_bytes": 100, "peak_rss_mb": 50.0,
            "accuracy": np.nan, "top1_agreement": np.nan, "error": None,
            "device_class": "pi"}  # fmt: skip


def test_compare_and_the_gate_take_the_paired_decision() -> None:
    results = pd.DataFrame([results_row("fp32", 1.0), results_row("int8", 0.82)])
    comparisons = pd.DataFrame([comparison_row(paired_record([process(0.8, 20)]))])
    compared = compare_variants(results, None, comparisons).set_index("variant")
    int8 = compared.loc["int8"]
    # unpaired, the medians' CIs overlap (0.82 [0.74-0.90] vs 1.0 [0.9-1.1]): paired, not
    assert int8["method"] == "paired" and int8["verdict"] == "faster" and int8["significant"]
    assert int8["speedup_low"] > 1.2 and "paired in-process: faster" in int8["notes"]
    assert int8["paired_vs_solo"] == pytest.approx(0.8 / 0.82, rel=0.01)
    budgets = Budgets(budget=[Budget(model="m", variant="int8", min_speedup=1.15)])
    no_samples = pd.DataFrame(columns=["job_id", "latency_ns"])
    verdict = evaluate(budgets, results, no_samples, None, comparisons)
    [case] = verdict.cases
    [check] = [c for c in case.checks if c.metric == "min_speedup"]
    assert check.outcome == "pass" and "by paired" in check.message
    unpaired = evaluate(budgets, results, no_samples)
    [check] = [c for c in unpaired.cases[0].checks if c.metric == "min_speedup"]
    assert check.outcome == "inconclusive" and "by medians" in check.message


def test_no_change_says_what_it_could_have_missed() -> None:
    rng = np.random.default_rng(0)
    few = [np.exp(rng.normal(0, 0.03, 3)) for _ in range(2)]
    many = [np.exp(rng.normal(0, 0.03, 30)) for _ in range(2)]
    assert minimum_detectable_effect(*many) < minimum_detectable_effect(*few)
    mde = minimum_detectable_effect(*many)
    assert 0.01 < mde < 0.06
    verdict, reason = regression_verdict(1.01, 0.4, 0.03, mde)
    assert verdict == "no change" and f"±{mde:.1%} or more" in reason
    assert "unknown (run >= 3 processes)" in regression_verdict(1.01, 0.4, 0.03, None)[1]
