"""Release gates: budgets against stored results, with their uncertainty. Pure.

Each limit is checked against a 95% interval, not a point: *pass* when the whole interval
is inside the budget, *fail* when the whole interval is outside, *inconclusive* when it
straddles the limit. Latency percentiles use a bootstrap CI from the raw samples; an
accuracy drop a normal-approximation CI — paired when the variant's top-1 agreement with
fp32 on the same samples is known (a conservative bound from it), else of two independent
proportions; a regression
the bootstrap CI of the ratio of medians against the baseline run; a speedup over fp32 on
the same device the interval `analysis` gives it (the paired in-process comparison's
where the run paired the variant). Peak memory is one
measurement and is compared as it is. Missing data (no matching job, a failed job, a metric
not measured) is never a pass.

Exit codes (only the CLI turns the verdict into one): 0 pass, 1 fail, 2 inconclusive or
incomplete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.analysis import compare_variants
from harness.config import Budget, Budgets
from harness.fidelity import MEASURES
from harness.frames import Row
from harness.gate_quality import Check, is_missing, kind_check, psnr_check
from harness.history import compare_latencies
from harness.job_key import JobKey
from harness.stats import percentile_ci

if TYPE_CHECKING:
    import pandas as pd

    from harness.profiles import Placement

OUTCOMES = ("pass", "fail", "inconclusive", "missing")


@dataclass(frozen=True)
class Case:
    """One budget × device × model (× variant, setting): a JUnit test case."""

    name: str
    budget_index: int
    job_id: str | None
    checks: tuple[Check, ...]
    # what the case is, each on its own (the name joins them): for tables and scripts
    device: str = ""
    model: str = ""
    variant: str = ""
    setting: str = ""  # runtime setting: provider and threads

    @property
    def outcome(self) -> str:
        return _worst(c.outcome for c in self.checks)


@dataclass(frozen=True)
class GateVerdict:
    cases: tuple[Case, ...] = field(default_factory=tuple)

    @property
    def outcome(self) -> str:
        return _worst(c.outcome for c in self.cases) if self.cases else "missing"

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": 1}.get(self.outcome, 2)

    def counts(self) -> dict[str, int]:
        outcomes = [c.outcome for c in self.cases]
        return {o: outcomes.count(o) for o in OUTCOMES if o in outcomes}


def _worst(outcomes: Any) -> str:
    seen = set(outcomes)
    for outcome in ("fail", "missing", "inconclusive", "pass"):
        if outcome in seen:
            return outcome
    return "missing"


def evaluate(
    budgets: Budgets,
    results: pd.DataFrame,
    samples: pd.DataFrame,
    baseline: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    comparisons: pd.DataFrame | None = None,
    placements: dict[JobKey, Placement] | None = None,
) -> GateVerdict:
    """`comparisons`: the run's paired comparisons (for `min_speedup`); `placements`: each
    profiled job's placement by `JobKey` (harness/profiles.placement, for
    `max_cpu_fallback_share`)."""
    speedups: dict[JobKey, Row] = {}
    if any(budget.min_speedup is not None for budget in budgets.budget):
        compared = compare_variants(results, samples, comparisons)
        speedups = {JobKey.of_row(r): r for r in compared.to_dict("records")}
    cases: list[Case] = []
    for index, budget in enumerate(budgets.budget):
        rows = _matching(results, budget)
        label = _budget_label(budget)
        if rows.empty:
            cases.append(
                Case(
                    f"{label}: no job in this run matches",
                    index,
                    None,
                    (Check("jobs", 0, "missing", message="no matching job in the run"),),
                    device=budget.device
                    or (f"class={budget.device_class}" if budget.device_class else "any"),
                    model=budget.model,
                    variant=budget.variant or "any",
                )
            )
            continue
        for row in rows.to_dict("records"):
            setting = f"{row['provider']} t{row['threads']}"
            name = f"{row['model']} {row['variant']} on {row['device']} ({setting})"
            cases.append(
                Case(
                    name,
                    index,
                    row["job_id"],
                    tuple(_checks(budget, row, results, samples, baseline, speedups, placements)),
                    device=str(row["device"]),
                    model=str(row["model"]),
                    variant=str(row["variant"]),
                    setting=setting,
                )
            )
    return GateVerdict(tuple(cases))


def _matching(results: pd.DataFrame, budget: Budget) -> pd.DataFrame:
    mask = results["model"] == budget.model
    for column, wanted in (
        ("variant", budget.variant),
        ("device", budget.device),
        ("device_class", budget.device_class),
    ):
        if wanted is not None:
            mask &= results[column] == wanted
    return results[mask]


def _budget_label(budget: Budget) -> str:
    filters = {"variant": budget.variant, "device": budget.device, "class": budget.device_class}
    return " ".join([budget.model] + [f"{k}={v}" for k, v in filters.items() if v])


def _checks(
    budget: Budget,
    row: Row,
    results: pd.DataFrame,
    samples: pd.DataFrame,
    baseline: tuple[pd.DataFrame, pd.DataFrame] | None,
    speedups: dict[JobKey, Row],
    placements: dict[JobKey, Placement] | None,
) -> list[Check]:
    checks: list[Check] = []
    if row["status"] != "ok":
        return [Check("job", 0, "missing", message=f"job {row['status']}: {row['error']}")]
    latencies_ms = _samples_ms(samples, row["job_id"])
    for metric, q in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99)):
        limit = getattr(budget, metric)
        if limit is None:
            continue
        if latencies_ms.size == 0:
            checks.append(Check(metric, limit, "missing", message="no latency samples"))
            continue
        value, low, high = percentile_ci(latencies_ms, q)
        checks.append(_interval_check(metric, limit, value, low, high, "ms"))
    if budget.peak_mem_mb is not None:
        checks.append(_point_check("peak_mem_mb", budget.peak_mem_mb, row["peak_rss_mb"], "MB"))
    if budget.energy_mj is not None:
        checks.append(_point_check("energy_mj", budget.energy_mj, row["energy_mj"], "mJ"))
    if budget.max_accuracy_drop is not None:
        checks.append(_accuracy_check(budget.max_accuracy_drop, row, results))
    if budget.min_psnr_db is not None:
        checks.append(psnr_check(budget.min_psnr_db, row))
    for kind, (measure, _, tolerance) in MEASURES.items():
        limit = getattr(budget, tolerance)
        if limit is not None:
            checks.append(kind_check(tolerance, limit, kind, measure, row))
    if budget.max_regression_pct is not None:
        checks.append(_regression_check(budget.max_regression_pct, row, samples, baseline))
    key = JobKey.of_row(row)
    if budget.min_speedup is not None:
        checks.append(_speedup_check(budget.min_speedup, row, speedups.get(key)))
    if budget.max_cpu_fallback_share is not None:
        shares = (placements or {}).get(key)
        checks.append(_fallback_check(budget.max_cpu_fallback_share, shares))
    return checks


def _speedup_check(limit: float, row: Row, compared: Row | None) -> Check:
    """At least `limit` times fp32's speed on the same device and setting."""
    if row["variant"] == "fp32":
        return Check("min_speedup", limit, "pass", message="fp32 is the reference")
    if compared is None or compared["speedup"] is None or is_missing(compared["speedup"]):
        message = "no fp32 result on this device and setting to compare with"
        return Check("min_speedup", limit, "missing", message=message)
    value, low, high = (float(compared[k]) for k in ("speedup", "speedup_low", "speedup_high"))
    outcome = "pass" if low >= limit else "fail" if high < limit else "inconclusive"
    message = (
        f"{value:.3f}x [95% CI {low:.3f} to {high:.3f}] vs budget >= {limit:g}x "
        f"(by {compared['method']})"
    )
    return Check("min_speedup", limit, outcome, value, low, high, message)


def _fallback_check(limit: float, shares: Placement | None) -> Check:
    """At most `limit` of the profiled time on the CPU (`shares`: the job's placement)."""
    if shares is None:
        message = "no profile of this job (profile = true under the plan's [measure])"
        return Check("max_cpu_fallback_share", limit, "missing", message=message)
    share = shares["cpu_fallback_share"]
    if share is None:
        return Check("max_cpu_fallback_share", limit, "pass", message="the job asked for the CPU")
    outcome = "pass" if share <= limit else "fail"
    message = f"{share:.1%} of the profiled time on the CPU vs budget {limit:.0%}"
    return Check("max_cpu_fallback_share", limit, outcome, share, share, share, message)


def _interval_check(
    metric: str, limit: float, value: float, low: float, high: float, unit: str
) -> Check:
    outcome = "pass" if high <= limit else "fail" if low > limit else "inconclusive"
    message = f"{value:.4g} {unit} [95% CI {low:.4g} to {high:.4g}] vs budget {limit:g} {unit}"
    return Check(metric, limit, outcome, value, low, high, message)


def _point_check(metric: str, limit: float, value: Any, unit: str) -> Check:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Check(metric, limit, "missing", message=f"{metric} was not measured")
    value = float(value)
    outcome = "pass" if value <= limit else "fail"
    message = f"{value:.4g} {unit} vs budget {limit:g} {unit}"
    return Check(metric, limit, outcome, value, value, value, message)


def _accuracy_check(limit: float, row: Row, results: pd.DataFrame) -> Check:
    reference = results[
        (results["device"] == row["device"]) & (results["model"] == row["model"])
        & (results["variant"] == "fp32") & (results["status"] == "ok")
    ]  # fmt: skip
    if (
        reference.empty
        or is_missing(row.get("accuracy"))
        or is_missing(reference.iloc[0]["accuracy"])
        or not row.get("eval_n")
    ):
        message = "accuracy of this variant or of fp32 on this device was not measured"
        return Check("max_accuracy_drop", limit, "missing", message=message)
    accuracy, n = float(row["accuracy"]), int(row["eval_n"])
    base, n_base = float(reference.iloc[0]["accuracy"]), int(reference.iloc[0]["eval_n"])
    drop = base - accuracy
    agreement: Any = row.get("top1_agreement")
    if not is_missing(agreement) and n == n_base:
        # Paired (same eval samples): d_i = correct_fp32_i - correct_variant_i is nonzero
        # only where the two predictions differ, so Var(d) <= (1 - agreement) - drop^2.
        se = math.sqrt(max((1 - float(agreement)) - drop**2, 0.0) / n)
    else:
        se = math.sqrt(base * (1 - base) / n_base + accuracy * (1 - accuracy) / n)
    low, high = drop - 1.96 * se, drop + 1.96 * se
    outcome = _interval_check("max_accuracy_drop", limit, drop, low, high, "").outcome
    message = (
        f"drop {drop * 100:+.2f} pts [95% CI {low * 100:+.2f} to {high * 100:+.2f}] "
        f"vs budget {limit * 100:g} pts"
    )
    return Check("max_accuracy_drop", limit, outcome, drop, low, high, message)


def _regression_check(
    limit_pct: float,
    row: Row,
    samples: pd.DataFrame,
    baseline: tuple[pd.DataFrame, pd.DataFrame] | None,
) -> Check:
    if baseline is None:
        return Check("max_regression_pct", limit_pct, "missing", message="no baseline run given")
    base_results, base_samples = baseline
    match = base_results
    for column in JobKey.COLUMNS:
        match = match[match[column] == row[column]]
    match = match[match["status"] == "ok"]
    if match.empty:
        message = "the baseline run has no successful job with this key"
        return Check("max_regression_pct", limit_pct, "missing", message=message)
    before = base_samples[base_samples["job_id"] == match.iloc[0]["job_id"]]
    after = samples[samples["job_id"] == row["job_id"]]
    if before.empty or after.empty:
        return Check("max_regression_pct", limit_pct, "missing", message="no latency samples")
    compared = compare_latencies(before, after)
    ratio, low, high = compared["ratio"], compared["ratio_low"], compared["ratio_high"]
    change, change_low, change_high = ((v - 1) * 100 for v in (ratio, low, high))
    outcome = _interval_check("", limit_pct, change, change_low, change_high, "").outcome
    message = (
        f"p50 {change:+.1f}% [95% CI {change_low:+.1f}% to {change_high:+.1f}%] vs baseline, "
        f"budget +{limit_pct:g}%"
    )
    return Check("max_regression_pct", limit_pct, outcome, change, change_low, change_high, message)


def _samples_ms(samples: pd.DataFrame, job_id: str) -> np.ndarray:
    values = samples.loc[samples["job_id"] == job_id, "latency_ns"].to_numpy()
    return np.asarray(values, dtype=np.float64) / 1e6


# --------------------------------------------------------------------------- outputs


def budget_lines(budgets: Budgets) -> dict[tuple[str, str], tuple[str, float]]:
    """The latency limit to draw in trend plots, by (model, variant): the metric it limits
    (p50, else p90) and the limit, so it is drawn on that metric's panel."""
    lines = {}
    for budget in budgets.budget:
        key = (budget.model, budget.variant or "fp32")
        if budget.p50_ms is not None:
            lines[key] = ("p50_ms", budget.p50_ms)
        elif budget.p90_ms is not None:
            lines[key] = ("p90_ms", budget.p90_ms)
    return lines


def extendable_jobs(verdict: GateVerdict) -> set[str]:
    """Jobs whose verdict is inconclusive on a latency interval: more samples may decide."""
    latency = {"p50_ms", "p90_ms", "p99_ms", "max_regression_pct"}
    return {
        case.job_id
        for case in verdict.cases
        if case.job_id
        and any(c.outcome == "inconclusive" and c.metric in latency for c in case.checks)
    }


def merge_extension(verdict: GateVerdict, extension: GateVerdict, rerun: set[str]) -> GateVerdict:
    """The verdict with the cases of re-run jobs replaced by their cases in the extension."""
    kept = [case for case in verdict.cases if case.job_id not in rerun]
    added = [case for case in extension.cases if case.job_id in rerun]
    return GateVerdict(tuple(kept + added))


def within_budgets(
    comparison: pd.DataFrame, results: pd.DataFrame, verdict: GateVerdict | None
) -> pd.DataFrame:
    """A variant that fails a budget is not worth shipping, however it compares."""
    if verdict is None or comparison.empty:
        return comparison
    failed_jobs = {
        case.job_id for case in verdict.cases if any(c.outcome == "fail" for c in case.checks)
    }
    failed = {
        JobKey.of_row(row) for row in results.to_dict("records") if row["job_id"] in failed_jobs
    }
    out = comparison.copy()
    keys = [JobKey.of_row(row) for row in out.to_dict("records")]
    out["worth_shipping"] = [
        bool(ship) and key not in failed
        for ship, key in zip(out["worth_shipping"], keys, strict=True)
    ]
    return out
