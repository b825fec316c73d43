"""History over stored runs, and run-to-run regression verdicts (in the manner of asv).

`load_history` stacks every run's results (and optionally samples) into one frame with the
same columns as `results.parquet` — the layout teams query with pandas or DuckDB. A change
between two runs is a regression only when it is larger than the threshold *and*
statistically significant (see `compare_latencies` and `compare_interleaved` for the tests),
and the threshold for a device is never below that device's noise floor, measured from
history or by `harness calibrate`.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import StoreError
from harness.stats import mann_whitney_p, ratio_of_medians, welch_p
from harness.store import RunStore

if TYPE_CHECKING:
    import pandas as pd

JOB_KEY = ["device", "model", "variant", "runtime", "provider", "threads"]
# what must be equal for two results to be compared (a value missing on both sides, as in
# runs from before the column existed, counts as equal)
COMPARABILITY = (
    "arch", "runtime_version", "model_sha256", "cpu_model", "ram_mb", "os", "kernel", "board",
    "power_mode", "governor",
)  # fmt: skip
ALPHA = 0.01
MIN_PROCESSES = 3
MIN_ROUNDS = 5  # a paired t-test on fewer rounds has too few degrees of freedom to say much


def run_dirs(sources: Iterable[str | Path]) -> list[Path]:
    """Run directories from folders of runs, single run folders, or glob patterns."""
    found: list[Path] = []
    for source in sources:
        for match in sorted(glob.glob(str(source))) or [str(source)]:
            path = Path(match)
            if (path / "jobs").is_dir():
                found.append(path)
            elif path.is_dir():
                found += sorted(p for p in path.iterdir() if (p / "jobs").is_dir())
    if not found:
        raise StoreError(f"no run directories in {', '.join(map(str, sources))}")
    return sorted(set(found), key=lambda p: p.name)


def load_history(
    sources: Iterable[str | Path], with_samples: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    import pandas as pd

    results, samples = [], []
    for path in run_dirs(sources):
        run_results, run_samples = RunStore(path).stored_frames()
        results.append(run_results)
        if with_samples:
            samples.append(run_samples)
    frame = pd.concat(results, ignore_index=True)
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    return frame, (pd.concat(samples, ignore_index=True) if with_samples else None)


def noise_floor(history: pd.DataFrame, quantile: float = 0.95) -> dict[str, float]:
    """Per device: how far the p50 of an identical job (same key, model file and runtime
    version) strays from its own median over the stored runs — the `quantile` of
    |p50 / median − 1|. Devices without at least three runs of a job have no floor."""
    ok = history[history["status"] == "ok"]
    floors: dict[str, float] = {}
    for device, per_device in ok.groupby("device"):
        deviations: list[float] = []
        for _, same in per_device.groupby(
            [*JOB_KEY, "model_sha256", "runtime_version"], dropna=False
        ):
            if len(same) >= 3:
                p50 = same["p50_ms"].to_numpy(dtype=float)
                deviations += list(np.abs(p50 / np.median(p50) - 1))
        if deviations:
            floors[str(device)] = float(np.quantile(deviations, quantile))
    return floors


def process_noise_floor(samples: pd.DataFrame, quantile: float = 0.95) -> float | None:
    """How far one process's median strays from the median over processes of the same job
    (the `quantile` of |process median / median − 1|): what `harness calibrate` measures."""
    deviations: list[float] = []
    for _, job in samples.groupby("job_id"):
        medians = job.groupby("process")["latency_ns"].median().to_numpy(dtype=np.float64)
        if len(medians) >= MIN_PROCESSES:
            deviations += list(np.abs(medians / np.median(medians) - 1))
    return float(np.quantile(deviations, quantile)) if deviations else None


def calibrated_floors(calibration_dir: Path) -> dict[str, float]:
    """Noise floors written by `harness calibrate` (one JSON per device)."""
    import json

    floors = {}
    for path in sorted(calibration_dir.glob("*.json")) if calibration_dir.is_dir() else []:
        data = json.loads(path.read_text())
        floors[str(data["device"])] = float(data["noise_floor"])
    return floors


def _same(a: Any, b: Any) -> bool:
    """Equal, with a missing value equal only to another missing value."""
    import pandas as pd

    if pd.isna(a) or pd.isna(b):
        return bool(pd.isna(a) and pd.isna(b))
    return bool(a == b)


def compare_runs(
    before: RunStore,
    after: RunStore,
    threshold: float = 0.05,
    floors: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Per job present in both runs: ratio of medians (after / before) with a bootstrap CI,
    the Mann–Whitney p-value and a verdict: faster, slower, no change, or not comparable
    (and why)."""
    import pandas as pd

    a_results, a_samples = before.frames()
    b_results, b_samples = after.frames()
    merged = a_results.merge(b_results, on=JOB_KEY, suffixes=("_a", "_b"))
    rows: list[dict[str, Any]] = []
    for row in merged.to_dict("records"):
        out: dict[str, Any] = {k: row[k] for k in JOB_KEY}
        out.update(p50_a_ms=row["p50_ms_a"], p50_b_ms=row["p50_ms_b"])
        out.update(ratio=None, ratio_low=None, ratio_high=None, p_value=None, test=None)
        device_threshold = max(threshold, (floors or {}).get(str(row["device"]), 0.0))
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
        out["verdict"], out["reason"] = regression_verdict(
            change["ratio"], change["p_value"], device_threshold
        )
        rows.append(out)
    return pd.DataFrame(rows)


def compare_latencies(before: pd.DataFrame, after: pd.DataFrame) -> dict[str, Any]:
    """Ratio of medians (after / before) with a 95% CI, and a p-value, from two jobs'
    samples (columns `process`, `latency_ns`).

    When both jobs ran in at least MIN_PROCESSES processes, the unit is the process: the
    per-process medians are compared (bootstrap CI of their ratio of medians, Welch's t-test),
    because latencies of one process are not independent of each other — a process draws a
    memory layout that shifts all of them. Otherwise the raw samples are compared
    (Mann–Whitney U), which cannot see that between-process noise."""
    a_process = _per_process(before).to_numpy(dtype=np.float64)
    b_process = _per_process(after).to_numpy(dtype=np.float64)
    if len(a_process) >= MIN_PROCESSES and len(b_process) >= MIN_PROCESSES:
        ratio, low, high = ratio_of_medians(a_process, b_process)
        p_value = welch_p(a_process, b_process)
        test = f"Welch t, {len(a_process)}+{len(b_process)} process medians"
        return {
            "ratio": ratio,
            "ratio_low": low,
            "ratio_high": high,
            "p_value": p_value,
            "test": test,
        }
    a = before["latency_ns"].to_numpy(dtype=np.float64)
    b = after["latency_ns"].to_numpy(dtype=np.float64)
    ratio, low, high = ratio_of_medians(a, b)
    p_value, test = mann_whitney_p(a, b), "Mann-Whitney U on samples"
    return {"ratio": ratio, "ratio_low": low, "ratio_high": high, "p_value": p_value, "test": test}


def consecutive_regressions(
    history: pd.DataFrame,
    samples: pd.DataFrame,
    threshold: float = 0.05,
    floors: dict[str, float] | None = None,
) -> set[tuple[str, str, str, str]]:
    """(run_id, device, model, variant) of every job that got slower than the same job in
    the run before it — what the trend plots mark."""
    marked: set[tuple[str, str, str, str]] = set()
    ok = history[history["status"] == "ok"].sort_values("started_at")
    for key, jobs in ok.groupby(JOB_KEY, sort=False):
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


def compare_interleaved(before: pd.DataFrame, after: pd.DataFrame) -> dict[str, Any]:
    """Two jobs of the same run whose processes ran interleaved, round by round (the
    scheduler's order): round k of one is compared with round k of the other, so a drift of
    the machine over the run cancels out. Ratio = geometric mean of the per-round ratios of
    medians; 95% CI and p-value from a one-sample t-test on their logs. Falls back to
    `compare_latencies` with fewer than MIN_ROUNDS common rounds."""
    from scipy import stats as scipy_stats

    a, b = _per_process(before), _per_process(after)
    rounds = a.index.intersection(b.index)
    if len(rounds) < MIN_ROUNDS:
        return compare_latencies(before, after)
    logs = np.log(b[rounds].to_numpy(dtype=np.float64) / a[rounds].to_numpy(dtype=np.float64))
    mean, half = float(logs.mean()), 0.0
    if logs.std(ddof=1) > 0:
        half = float(
            scipy_stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
        )
        p_value = float(scipy_stats.ttest_1samp(logs, 0.0).pvalue)
    else:
        p_value = 0.0 if mean != 0 else 1.0
    return {"ratio": float(np.exp(mean)), "ratio_low": float(np.exp(mean - half)),
            "ratio_high": float(np.exp(mean + half)), "p_value": p_value,
            "test": f"paired t, {len(rounds)} interleaved rounds"}  # fmt: skip


def regression_verdict(ratio: float, p_value: float, threshold: float) -> tuple[str, str]:
    """Slower/faster only when beyond the threshold *and* significant at ALPHA."""
    change = f"{(ratio - 1) * 100:+.1f}%"
    if p_value >= ALPHA:
        return "no change", f"{change}, not significant (p={p_value:.2g})"
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


def _samples(samples: pd.DataFrame, job_id: str) -> pd.DataFrame:
    return samples.loc[samples["job_id"] == job_id]
