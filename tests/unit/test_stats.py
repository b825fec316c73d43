from __future__ import annotations

import math

import numpy as np
import pytest

from harness import stats
from harness.runner import measure as runner


def test_summary_matches_numpy_and_converts_ns_to_ms() -> None:
    latencies_ns = [1_000_000 * v for v in range(1, 101)]  # 1..100 ms
    summary = stats.summarize(latencies_ns)
    assert summary.n == 100
    assert summary.min_ms == 1 and summary.max_ms == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p90_ms == pytest.approx(np.percentile(np.arange(1, 101), 90))
    assert summary.mean_ms == pytest.approx(50.5)
    assert summary.cv == pytest.approx(np.std(np.arange(1, 101), ddof=1) / 50.5)
    assert summary.p50_ci_low_ms < 50.5 < summary.p50_ci_high_ms
    assert summary.ci_method == "bootstrap-percentile"


def test_bootstrap_ci_is_seeded_and_covers_the_true_median() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(40):
        sample = rng.lognormal(mean=0.0, sigma=0.3, size=200)  # true median = 1
        low, high = stats.bootstrap_median_ci(sample, resamples=500)
        covered += low <= 1.0 <= high
    assert covered >= 34  # ~95 % nominal; 34/40 leaves room for chance
    sample = rng.normal(10, 1, 300)
    assert stats.bootstrap_median_ci(sample) == stats.bootstrap_median_ci(sample)


def test_large_samples_use_the_order_statistic_interval() -> None:
    values = np.random.default_rng(2).normal(5, 0.1, stats.BOOTSTRAP_MAX_N + 1)
    low, high, method = stats.median_ci(values)
    assert method == "order-statistic"
    assert low < np.median(values) < high


def test_runner_and_controller_compute_the_same_order_statistic_ci() -> None:
    rng = np.random.default_rng(3)
    for n in (5, 6, 17, 100, 1001):
        ordered = sorted(rng.exponential(1.0, n).tolist())
        assert runner.median_ci_order_statistic(ordered) == stats.median_ci_order_statistic(ordered)
        assert runner.median_of_sorted(ordered) == pytest.approx(float(np.median(ordered)))


def test_order_statistic_ci_needs_five_samples() -> None:
    with pytest.raises(ValueError):
        stats.median_ci_order_statistic([1.0, 2.0])
    assert runner.median_ci_order_statistic([1.0, 2.0]) is None
    assert runner.ci_relative_half_width([1, 2]) == math.inf


def test_tiny_samples_have_a_degenerate_interval() -> None:
    summary = stats.summarize([1_000_000, 2_000_000, 3_000_000])
    assert summary.ci_method == "none (n < 5)"
    with pytest.raises(ValueError):
        stats.summarize([])


def test_stability_warnings() -> None:
    steady = stats.summarize([1_000_000 + (i % 3) * 1000 for i in range(200)])
    assert stats.stability_warnings(steady, 0.01) == []
    noisy = stats.summarize([1_000_000 * (1 + (i % 2)) for i in range(200)])
    warnings = stats.stability_warnings(noisy, 0.01)
    assert any(w.startswith("unstable: CV") for w in warnings)
    assert any("wider than target ±1.0%" in w for w in warnings)
    # rounding never makes a warning read as false: as many decimals as tell them apart
    assert stats.percents_apart(0.01004, 0.01) == ("1.004%", "1.000%")
    assert stats.percents_apart(0.25, 0.01) == ("25.0%", "1.0%")
