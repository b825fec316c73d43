"""Latency statistics: pure functions over samples, no I/O.

Methods:
- Percentiles use numpy's default (linear interpolation between order statistics).
- The confidence interval of the median is a percentile bootstrap (scipy.stats.bootstrap,
  2000 resamples, seeded so a stored run always reports the same interval). Above
  `BOOTSTRAP_MAX_N` samples the distribution-free order-statistic interval is used instead
  (the two agree at such n and the bootstrap would cost seconds).
- The runner's adaptive stop rule uses the order-statistic interval (stdlib only on the
  device); `median_ci_order_statistic` here is the same method, tested to agree with it.
- CV = std / mean, with std the sample standard deviation (ddof=1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

Z_95 = 1.959963984540054
BOOTSTRAP_MAX_N = 20_000
BOOTSTRAP_RESAMPLES = 2000
UNSTABLE_CV = 0.10


@dataclass(frozen=True)
class LatencySummary:
    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    cv: float
    p50_ci_low_ms: float
    p50_ci_high_ms: float
    ci_method: str

    @property
    def ci_half_width_rel(self) -> float:
        """Half the CI width as a fraction of the median (the stop rule's `target_ci`)."""
        if self.p50_ms <= 0:
            return math.inf
        return (self.p50_ci_high_ms - self.p50_ci_low_ms) / 2.0 / self.p50_ms

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def summarize(latencies_ns: Sequence[int] | np.ndarray) -> LatencySummary:
    """Summary of timed latencies (nanoseconds in, milliseconds out)."""
    values_ms = np.asarray(latencies_ns, dtype=np.float64) / 1e6
    if values_ms.size == 0:
        raise ValueError("no latencies to summarize")
    p50, p90, p95, p99 = np.percentile(values_ms, [50, 90, 95, 99])
    mean = float(values_ms.mean())
    std = float(values_ms.std(ddof=1)) if values_ms.size > 1 else 0.0
    low, high, method = median_ci(values_ms)
    return LatencySummary(
        n=int(values_ms.size),
        mean_ms=mean,
        std_ms=std,
        min_ms=float(values_ms.min()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(values_ms.max()),
        cv=std / mean if mean > 0 else math.nan,
        p50_ci_low_ms=low,
        p50_ci_high_ms=high,
        ci_method=method,
    )


def median_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float, str]:
    """95% CI of the median: (low, high, method)."""
    if values.size < 5:
        median = float(np.median(values))
        return median, median, "none (n < 5)"
    if values.size > BOOTSTRAP_MAX_N:
        low, high = median_ci_order_statistic(np.sort(values))
        return low, high, "order-statistic"
    return (*bootstrap_median_ci(values, seed=seed), "bootstrap-percentile")


def bootstrap_median_ci(
    values: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    from scipy.stats import bootstrap

    result = bootstrap(
        (values,),
        np.median,
        n_resamples=resamples,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
        batch=max(1, 4_000_000 // max(values.size, 1)),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def median_ci_order_statistic(
    sorted_values: Sequence[float] | np.ndarray, z: float = Z_95
) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (normal approximation to
    the binomial; Conover). Ranks rounded outwards: conservative. Needs n >= 5."""
    n = len(sorted_values)
    if n < 5:
        raise ValueError("the order-statistic CI needs at least 5 samples")
    half = z * math.sqrt(n) / 2.0
    low_rank = max(1, math.floor(n / 2.0 - half))
    high_rank = min(n, math.ceil(1 + n / 2.0 + half))
    return float(sorted_values[low_rank - 1]), float(sorted_values[high_rank - 1])


def percents_apart(value: float, other: float) -> tuple[str, str]:
    """Both as percentages with as many decimals as it takes for them to read differently
    (never "±1.0% wider than ±1.0%"), from one up to four."""
    for decimals in range(1, 5):
        texts = f"{value:.{decimals}%}", f"{other:.{decimals}%}"
        if texts[0] != texts[1]:
            break
    return texts


def stability_warnings(summary: LatencySummary, target_ci: float | None) -> list[str]:
    """Reasons to distrust a result, in the manner of pyperf's checks."""
    warnings = []
    if summary.cv > UNSTABLE_CV:
        cv, limit = percents_apart(summary.cv, UNSTABLE_CV)
        warnings.append(f"unstable: CV {cv} > {limit}")
    if target_ci is not None and summary.ci_half_width_rel > target_ci:
        half, target = percents_apart(summary.ci_half_width_rel, target_ci)
        warnings.append(f"CI of median ±{half} wider than target ±{target}")
    return warnings


def percentile_ci(
    values: np.ndarray, q: float, seed: int = 0, resamples: int = 1000
) -> tuple[float, float, float]:
    """(estimate, low, high): the q-th percentile with a 95% percentile-bootstrap CI.
    Above BOOTSTRAP_MAX_N samples a random subsample of that size is resampled (the CI is
    then slightly conservative)."""
    values = np.asarray(values, dtype=np.float64)
    estimate = float(np.percentile(values, q))
    if values.size < 5:
        return estimate, estimate, estimate
    rng = np.random.default_rng(seed)
    pool = values if values.size <= BOOTSTRAP_MAX_N else rng.choice(values, BOOTSTRAP_MAX_N)
    draws = np.empty(resamples)
    for i in range(resamples):
        draws[i] = np.percentile(rng.choice(pool, pool.size), q)
    low, high = np.percentile(draws, [2.5, 97.5])
    return estimate, float(low), float(high)


def ratio_of_medians(
    before: np.ndarray, after: np.ndarray, seed: int = 0, resamples: int = 1000
) -> tuple[float, float, float]:
    """(ratio, low, high): median(after) / median(before) with a 95% bootstrap CI, each
    sample set resampled independently (at most BOOTSTRAP_MAX_N of each)."""
    rng = np.random.default_rng(seed)
    a = np.asarray(before, dtype=np.float64)
    b = np.asarray(after, dtype=np.float64)
    ratio = float(np.median(b) / np.median(a))
    a = a if a.size <= BOOTSTRAP_MAX_N else rng.choice(a, BOOTSTRAP_MAX_N, replace=False)
    b = b if b.size <= BOOTSTRAP_MAX_N else rng.choice(b, BOOTSTRAP_MAX_N, replace=False)
    draws = np.empty(resamples)
    for i in range(resamples):
        draws[i] = np.median(rng.choice(b, b.size)) / np.median(rng.choice(a, a.size))
    low, high = np.percentile(draws, [2.5, 97.5])
    return ratio, float(low), float(high)


def mann_whitney_p(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided Mann–Whitney U p-value (scipy): do the two sample sets differ in location?"""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(before, after, alternative="two-sided").pvalue)


TRIM = 0.2  # fraction trimmed from each end by the trimmed t-tests ...
TRIM_FROM_N = 7  # ... from this many values per side: with 5, trimming one of each end
# halves the degrees of freedom and cost more detections than it saved (72 % -> 44 %)


def trim_for(n: int, trim: float = TRIM) -> float:
    """The fraction the trimmed tests cut from each end of n values per side (0: untrimmed)."""
    return trim if n >= TRIM_FROM_N else 0.0


def yuen_p(before: np.ndarray, after: np.ndarray, trim: float = TRIM) -> float:
    """Two-sided Yuen–Welch trimmed t-test p-value (scipy's `ttest_ind(trim=...)`) on the
    logs of a few per-process medians. Trimmed, because on a shared machine about one
    process in a hundred lands 20 % slow: in Welch's test that one process inflates the
    variance enough to hide a real 5 % change (measured: benchmarks/regression_detection.py)."""
    from scipy.stats import ttest_ind

    a, b = np.log(np.asarray(before, np.float64)), np.log(np.asarray(after, np.float64))
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    return float(ttest_ind(a, b, equal_var=False, trim=trim_for(min(a.size, b.size), trim)).pvalue)


POWER = 0.95  # of the minimum detectable effect


def minimum_detectable_effect(
    before: np.ndarray, after: np.ndarray, trim: float = TRIM
) -> float | None:
    """The smallest ratio change (as a fraction: 0.04 = 4 %) that Yuen's test on these two
    sets of per-process medians would find at the 95 % level with 95 % power, at the noise
    they show: what a "no change" could have missed. None below 2 values a side."""
    from scipy.stats import t as student_t

    parts, kept_counts = [], []
    for values in (before, after):
        ordered = np.sort(np.log(np.asarray(values, np.float64)))
        n = ordered.size
        if n < 2:
            return None
        cut = math.floor(trim_for(n, trim) * n)
        kept = n - 2 * cut
        winsorized = np.clip(ordered, ordered[cut], ordered[n - cut - 1])
        parts.append((n - 1) * float(winsorized.var(ddof=1)) / (kept * (kept - 1)))
        kept_counts.append(kept)
    error = math.sqrt(sum(parts))
    if error == 0:
        return 0.0
    freedom = sum(parts) ** 2 / sum(p**2 / (k - 1) for p, k in zip(parts, kept_counts, strict=True))
    shift = (student_t.ppf(0.975, freedom) + student_t.ppf(POWER, freedom)) * error
    return float(math.expm1(shift))


def trimmed_mean_test(values: np.ndarray, trim: float = TRIM) -> tuple[float, float, float]:
    """(trimmed mean, half-width of its 95% CI, two-sided p-value that it is 0): the
    one-sample trimmed t-test (Tukey–McLaughlin), with the winsorized variance scaled as
    Yuen's test and scipy's `ttest_ind(trim=...)` scale it, h = n − 2g values kept, h − 1
    degrees of freedom — the paired counterpart of `yuen_p`, for per-round log ratios."""
    from scipy.stats import t as student_t

    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    cut = math.floor(trim_for(n, trim) * n)
    mean = float(ordered[cut : n - cut].mean())
    winsorized = np.clip(ordered, ordered[cut], ordered[n - cut - 1])
    spread = float(winsorized.std(ddof=1))
    if spread == 0:
        return mean, 0.0, (1.0 if mean == 0 else 0.0)
    kept = n - 2 * cut
    error = math.sqrt((n - 1) * spread**2 / (kept * (kept - 1)))
    freedom = kept - 1
    p_value = float(2 * student_t.sf(abs(mean / error), freedom))
    return mean, float(student_t.ppf(0.975, freedom) * error), p_value
