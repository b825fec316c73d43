"""History over stored runs, and run-to-run regression verdicts (in the manner of asv).

Pure: it takes the frames the store reads (`store.load_history`, `RunStore.frames`) and
returns data. A change
between two runs is a regression only when it is larger than the threshold *and*
statistically significant (see `compare_latencies` and `compare_interleaved` for the tests),
and the threshold for a device is never below that device's noise floor, measured from
history or by `harness calibrate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from harness.frames import Row
from harness.job_key import JobKey
from harness.runner.paired import CONFIDENCE
from harness.stats import (
    mann_whitney_p,
    minimum_detectable_effect,
    ratio_of_medians,
    trim_for,
    trimmed_mean_test,
    yuen_p,
)

if TYPE_CHECKING:
    import pandas as pd

# what must be equal for two results to be compared (a value missing on both sides, as in
# runs from before the column existed, counts as equal)
COMPARABILITY = (
    "arch", "runtime_version", "model_sha256", "cpu_model", "ram_mb", "os", "kernel", "board",
    "power_mode", "governor", "cores",
)  # fmt: skip
ALPHA = 1 - CONFIDENCE  # one level for every interval and test (the runner's, 95 %)
DEFAULT_THRESHOLD = 0.03  # a 5 % slowdown clears it (benchmarks/regression_detection.py)
MIN_PROCESSES = 3
MIN_ROUNDS = 5  # a paired t-test on fewer rounds has too few degrees of freedom to say much


def noise_floor(history: pd.DataFrame, quantile: float = 0.95) -> dict[str, float]:
    """Per device: how far apart two runs of an identical job (same key, model file and
    runtime version) land — the `quantile` of max(a/b, b/a) − 1 over every pair of its
    stored runs' p50s, which is what a comparison of two runs sees (a p50's stray from its
    own median is about half that, and as a floor let 30 % of A/A run pairs through).
    Devices without at least three runs of a job have no floor."""
    ok = history[history["status"] == "ok"]
    floors: dict[str, float] = {}
    for device, per_device in ok.groupby("device"):
        deviations: list[float] = []
        for _, same in per_device.groupby(
            [*JobKey.COLUMNS, "model_sha256", "runtime_version"], dropna=False
        ):
            if len(same) >= 3:
                logs = np.log(same["p50_ms"].to_numpy(dtype=float))
                apart = np.abs(logs[:, None] - logs[None, :])[np.triu_indices(len(logs), 1)]
                deviations += list(np.expm1(apart))
        if deviations:
            floors[str(device)] = float(np.quantile(deviations, quantile))
    return floors


def missing_floors(history: pd.DataFrame) -> dict[str, str]:
    """Per device without a noise floor, why: how many runs its most-run identical job
    has, against the three a floor needs."""
    ok = history[history["status"] == "ok"]
    floors = noise_floor(history)
    reasons = {}
    for device, per_device in ok.groupby("device"):
        if str(device) in floors:
            continue
        most = int(
            per_device.groupby([*JobKey.COLUMNS, "model_sha256", "runtime_version"], dropna=False)
            .size()
            .max()
        )
        reasons[str(device)] = (
            f"no noise floor for {device} yet: a floor needs an identical job (same model "
            f"file and runtime version) in at least 3 runs; its most-run job has {most}"
        )
    return reasons


def calibration_floors(
    samples: pd.DataFrame, quantile: float = 0.95, draws: int = 400, seed: int = 0
) -> dict[int, float]:
    """What `harness calibrate` measures, from one job run in P processes: for jobs of
    n = 1 .. P/2 processes, how far apart two identical jobs land — the `quantile` of
    |median of n process medians / median of n other process medians − 1| over random
    disjoint draws. Measured rather than modelled, so the tails of a shared machine (now
    and then a process 20 % slow) are in it."""
    rng = np.random.default_rng(seed)
    medians = _per_process(samples).to_numpy(dtype=np.float64)
    floors: dict[int, float] = {}
    for n in range(1, len(medians) // 2 + 1):
        deviations = []
        for _ in range(draws):
            order = rng.permutation(len(medians))
            before, after = medians[order[:n]], medians[order[n : 2 * n]]
            deviations.append(abs(np.median(after) / np.median(before) - 1))
        floors[n] = float(np.quantile(deviations, quantile))
    return floors


def calibrated_floor(by_processes: dict[int, float] | None, processes: int) -> float:
    """The calibrated floor for jobs of `processes` processes: the floor measured for the
    largest calibrated count not above it (jobs of more processes vary less: conservative)."""
    if not by_processes:
        return 0.0
    fitting = [n for n in by_processes if n <= max(1, processes)]
    return by_processes[max(fitting)] if fitting else by_processes[min(by_processes)]


def _same(a: Any, b: Any) -> bool:
    """Equal, with a missing value equal only to another missing value."""
    import pandas as pd

    if pd.isna(a) or pd.isna(b):
        return bool(pd.isna(a) and pd.isna(b))
    return bool(a == b)


# the columns of `compare_runs`, in order (`harness compare --format json|csv`)
RUN_COMPARISON_COLUMNS = (
    "device", "model", "variant", "runtime", "provider", "threads", "p50_a_ms", "p50_b_ms",
    "ratio", "ratio_low", "ratio_high", "p_value", "test", "threshold", "mde", "verdict",
    "reason",
)  # fmt: skip


def compare_runs(
    before: tuple[pd.DataFrame, pd.DataFrame],
    after: tuple[pd.DataFrame, pd.DataFrame],
    threshold: float = DEFAULT_THRESHOLD,
    floors: dict[str, float] | None = None,
    calibrated: dict[str, dict[int, float]] | None = None,
) -> pd.DataFrame:
    """Per job present in both runs (each given as its results and samples frames): ratio
    of medians (after / before) with a bootstrap CI, a p-value (`compare_latencies`) and a
    verdict: faster, slower, no change, or not
    comparable (and why). The threshold of a device is raised to its noise floor: from the
    nightly history (`floors`) and from `harness calibrate` for jobs of that many
    processes (`calibrated`)."""
    import pandas as pd

    a_results, a_samples = before
    b_results, b_samples = after
    merged = a_results.merge(b_results, on=list(JobKey.COLUMNS), suffixes=("_a", "_b"))
    rows: list[Row] = []
    for row in merged.to_dict("records"):
        out: Row = {k: row[k] for k in JobKey.COLUMNS}
        out.update(p50_a_ms=row["p50_ms_a"], p50_b_ms=row["p50_ms_b"])
        out.update(ratio=None, ratio_low=None, ratio_high=None, p_value=None, test=None)
        device = str(row["device"])
        processes = min(_processes(row.get("processes_a")), _processes(row.get("processes_b")))
        device_threshold = max(
            threshold,
            (floors or {}).get(device, 0.0),
            calibrated_floor((calibrated or {}).get(device), processes),
        )
        out["threshold"] = device_threshold
        if row["status_a"] != "ok" or row["status_b"] != "ok":
            out["verdict"] = "not comparable"
            out["reason"] = f"job status {row['status_a']} -> {row['status_b']}"
            rows.append(out)
            continue
        differences = [
            f"{c} {row[c + '_a']} -> {row[c + '_b']}"
            for c in COMPARABILITY
            if c + "_a" in row and not _same(row[c + "_a"], row[c + "_b"])
        ]
        if differences:
            out["verdict"] = "not comparable"
            out["reason"] = "; ".join(differences)
            rows.append(out)
            continue
        change = compare_latencies(
            _samples(a_samples, row["job_id_a"]), _samples(b_samples, row["job_id_b"])
        )
        out.update(change)
        # a change under the threshold is never called: the smallest one that could be
        mde = change.get("mde")
        out["mde"] = None if mde is None else max(mde, device_threshold)
        out["verdict"], out["reason"] = regression_verdict(
            change["ratio"], change["p_value"], device_threshold, out["mde"]
        )
        rows.append(out)
    return pd.DataFrame(rows)


def compare_latencies(before: pd.DataFrame, after: pd.DataFrame) -> Row:
    """Ratio of medians (after / before) with a 95% CI, and a p-value, from two jobs'
    samples (columns `process`, `latency_ns`).

    When both jobs ran in at least MIN_PROCESSES processes, the unit is the process: the
    per-process medians are compared (bootstrap CI of their ratio of medians, Yuen's trimmed
    t-test on their logs), because latencies of one process are not independent of each
    other — a process draws a memory layout that shifts all of them. Otherwise the raw
    samples are compared (Mann–Whitney U), which cannot see that between-process noise:
    the device's calibrated floor for single-process jobs is what guards those."""
    a_process = _per_process(before).to_numpy(dtype=np.float64)
    b_process = _per_process(after).to_numpy(dtype=np.float64)
    if len(a_process) >= MIN_PROCESSES and len(b_process) >= MIN_PROCESSES:
        ratio, low, high = ratio_of_medians(a_process, b_process)
        p_value = yuen_p(a_process, b_process)
        name = "Yuen trimmed t" if trim_for(min(len(a_process), len(b_process))) else "Welch t"
        test = (
            f"{name}, {len(a_process)}+{len(b_process)} process medians "
            "(interval: bootstrap of their ratio of medians)"
        )
        return {
            "ratio": ratio,
            "ratio_low": low,
            "ratio_high": high,
            "p_value": p_value,
            "test": test,
            "mde": minimum_detectable_effect(a_process, b_process),
        }
    a = before["latency_ns"].to_numpy(dtype=np.float64)
    b = after["latency_ns"].to_numpy(dtype=np.float64)
    ratio, low, high = ratio_of_medians(a, b)
    p_value, test = mann_whitney_p(a, b), "Mann-Whitney U on samples"
    # one process a side shows no process-to-process noise: what could hide is unknown
    return {"ratio": ratio, "ratio_low": low, "ratio_high": high, "p_value": p_value,
            "test": test, "mde": None}  # fmt: skip


def consecutive_regressions(
    history: pd.DataFrame,
    samples: pd.DataFrame,
    threshold: float = DEFAULT_THRESHOLD,
    floors: dict[str, float] | None = None,
) -> set[tuple[str, str, str, str]]:
    """(run_id, device, model, variant) of every job that got slower than the same job in
    the run before it — what the trend plots mark."""
    marked: set[tuple[str, str, str, str]] = set()
    ok = history[history["status"] == "ok"].sort_values("started_at")
    for key, jobs in ok.groupby(list(JobKey.COLUMNS), sort=False):
        device, model, variant = str(key[0]), str(key[1]), str(key[2])
        rows = jobs.to_dict("records")
        for previous, current in zip(rows, rows[1:], strict=False):
            if not all(_same(previous.get(c), current.get(c)) for c in COMPARABILITY):
                continue
            before = samples[
                (samples["run_id"] == previous["run_id"])
                & (samples["job_id"] == previous["job_id"])
            ]
            after = samples[
                (samples["run_id"] == current["run_id"]) & (samples["job_id"] == current["job_id"])
            ]
            if before.empty or after.empty:
                continue
            change = compare_latencies(before, after)
            limit = max(threshold, (floors or {}).get(device, 0.0))
            if regression_verdict(change["ratio"], change["p_value"], limit)[0] == "slower":
                marked.add((str(current["run_id"]), device, model, variant))
    return marked


def compare_interleaved(before: pd.DataFrame, after: pd.DataFrame) -> Row:
    """Two jobs of the same run whose processes ran interleaved, round by round (the
    scheduler's order): round k of one is compared with round k of the other, so a drift of
    the machine over the run cancels out. Ratio = exp of the trimmed mean of the per-round
    log ratios of medians; 95% CI and p-value from the one-sample trimmed t-test on them
    (a round with one slow process does not hide a change). Falls back to
    `compare_latencies` with fewer than MIN_ROUNDS common rounds."""
    a, b = _per_process(before), _per_process(after)
    rounds = a.index.intersection(b.index)
    if len(rounds) < MIN_ROUNDS:
        return compare_latencies(before, after)
    logs = np.log(b[rounds].to_numpy(dtype=np.float64) / a[rounds].to_numpy(dtype=np.float64))
    mean, half, p_value = trimmed_mean_test(logs)
    return {"ratio": float(np.exp(mean)), "ratio_low": float(np.exp(mean - half)),
            "ratio_high": float(np.exp(mean + half)), "p_value": p_value,
            "test": f"paired {'trimmed ' if trim_for(len(rounds)) else ''}t, "
                    f"{len(rounds)} interleaved rounds"}  # fmt: skip


def regression_verdict(
    ratio: float, p_value: float, threshold: float, mde: float | None = None
) -> tuple[str, str]:
    """Slower/faster only when beyond the threshold *and* significant at ALPHA; a "no
    change" says the smallest change it could have found (`mde`), or that it cannot."""
    change = f"{(ratio - 1) * 100:+.1f}%"
    if p_value >= ALPHA:
        could = (
            f"; could have found a change of ±{mde:.1%} or more at this noise"
            if mde is not None
            else "; with 1 process a side the process-to-process noise, and so what could "
            "hide in it, is unknown (run >= 3 processes)"
        )
        return "no change", f"{change}, not significant (p={p_value:.2g}){could}"
    if ratio > 1 + threshold:
        return "slower", f"{change} (p={p_value:.2g}), over the {threshold:.0%} threshold"
    if ratio < 1 / (1 + threshold):
        return "faster", f"{change} (p={p_value:.2g}), over the {threshold:.0%} threshold"
    return "no change", f"{change}: significant but within the {threshold:.0%} threshold"


def _per_process(samples: pd.DataFrame) -> pd.Series:
    """Median latency of each runner process (samples from before `process` existed: one)."""
    if "process" not in samples.columns:
        return samples["latency_ns"].groupby(np.zeros(len(samples), dtype=np.int64)).median()
    return samples.groupby("process")["latency_ns"].median()


def _processes(value: Any) -> int:
    """A results row's `processes` (missing in runs from before the column: one)."""
    import pandas as pd

    return 1 if value is None or pd.isna(value) else int(value)


def _samples(samples: pd.DataFrame, job_id: str) -> pd.DataFrame:
    return samples.loc[samples["job_id"] == job_id]
