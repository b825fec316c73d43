"""Regression verdicts and noise floors: pure functions over frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.history import compare_latencies, noise_floor, regression_verdict

RNG = np.random.default_rng(7)


def job_samples(process_medians: list[float], per_process: int = 300) -> pd.DataFrame:
    parts = [
        pd.DataFrame({"process": i, "latency_ns": RNG.normal(m, m * 0.01, per_process) * 1e6})
        for i, m in enumerate(process_medians)
    ]
    return pd.concat(parts, ignore_index=True)


def test_verdict_needs_both_threshold_and_significance() -> None:
    assert regression_verdict(1.10, 0.001, 0.05)[0] == "slower"
    assert regression_verdict(0.90, 0.001, 0.05)[0] == "faster"
    assert regression_verdict(1.10, 0.2, 0.05)[0] == "no change"  # not significant
    verdict, reason = regression_verdict(1.02, 1e-9, 0.05)
    assert verdict == "no change" and "within the 5% threshold" in reason


def test_process_level_noise_is_not_called_a_regression() -> None:
    """Processes that land 4 % apart (memory layout): sample-level tests call it
    significant; with enough processes the comparison is made between process medians."""
    before = job_samples([1.00, 1.04, 0.98, 1.03, 0.99])
    after = job_samples([1.03, 0.99, 1.04, 1.00, 0.98])
    compared = compare_latencies(before, after)
    assert compared["test"].startswith("Welch t, 5+5 process medians")
    assert compared["p_value"] > 0.05
    single_a, single_b = job_samples([1.00]), job_samples([1.04])
    sample_level = compare_latencies(single_a, single_b)
    assert sample_level["test"] == "Mann-Whitney U on samples" and sample_level["p_value"] < 1e-6
    slower = compare_latencies(before, job_samples([1.10, 1.12, 1.09, 1.11, 1.10]))
    assert regression_verdict(slower["ratio"], slower["p_value"], 0.05)[0] == "slower"
    assert slower["ratio_low"] < slower["ratio"] < slower["ratio_high"]


def test_noise_floor_per_device() -> None:
    rows = []
    for run, p50 in enumerate([1.0, 1.02, 0.98, 1.01, 0.99]):
        rows.append({"run_id": f"r{run}", "device": "pi", "model": "m", "variant": "fp32",
                     "runtime": "ort", "provider": "CPU", "threads": 1, "status": "ok",
                     "p50_ms": p50, "model_sha256": "a", "runtime_version": "1"})  # fmt: skip
    rows.append({**rows[0], "device": "jetson", "run_id": "x"})  # one run: no floor
    floors = noise_floor(pd.DataFrame(rows))
    assert set(floors) == {"pi"} and floors["pi"] == pytest.approx(0.02)
