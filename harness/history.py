"""History over stored runs, and run-to-run regression verdicts (in the manner of asv).

`load_history` stacks every run's results (and optionally samples) into one frame with the
same columns as `results.parquet` — the layout teams query with pandas or DuckDB. A change
between two runs is a regression only when it is larger than the threshold *and*
statistically significant (Mann–Whitney U on the raw samples), and the threshold for a
device is never below that device's noise floor, measured from history.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import StoreError
from harness.stats import mann_whitney_p, ratio_of_medians
from harness.store import RunStore

if TYPE_CHECKING:
    import pandas as pd

JOB_KEY = ["device", "model", "variant", "runtime", "provider", "threads"]
COMPARABILITY = ("arch", "runtime_version", "model_sha256")
ALPHA = 0.01


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
        run_results, run_samples = RunStore(path).frames()
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
        out.update(p50_a_ms=row["p50_ms_a"], p50_b_ms=row["p50_ms_b"], ratio=None,
                   ratio_low=None, ratio_high=None, p_value=None)  # fmt: skip
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
            if row[c + "_a"] != row[c + "_b"]
        ]
        if differences:
            out["verdict"] = "not comparable"
            out["reason"] = "; ".join(differences)
            rows.append(out)
            continue
        a = _samples(a_samples, row["job_id_a"])
        b = _samples(b_samples, row["job_id_b"])
        out["ratio"], out["ratio_low"], out["ratio_high"] = ratio_of_medians(a, b)
        out["p_value"] = mann_whitney_p(a, b)
        out["verdict"], out["reason"] = regression_verdict(
            out["ratio"], out["p_value"], device_threshold
        )
        rows.append(out)
    return pd.DataFrame(rows)


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


def _samples(samples: pd.DataFrame, job_id: str) -> np.ndarray:
    return samples.loc[samples["job_id"] == job_id, "latency_ns"].to_numpy(dtype=np.float64)
