"""Variants against their fp32 base, per device and runtime setting: data in, data out.

Speedup is fp32 p50 / variant p50; its interval divides the CIs of the two medians
(fp32 low / variant high .. fp32 high / variant low), a conservative bound. Those CIs come
from samples of the same processes; when a job ran in several processes, the spread of
their p50s is a noise floor too, and a speedup inside it is called noise, not a result
(in the manner of asv: different only when over the threshold *and* outside the noise).
A variant is
Pareto-optimal when no other variant of the same group is at least as fast *and* at least
as accurate (and better in one); without accuracy, model size stands in for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

GROUP = ["device", "model", "runtime", "provider", "threads"]
COMPARE_COLUMNS = [
    *GROUP, "variant", "strategy", "p50_ms", "speedup", "speedup_low", "speedup_high",
    "noise", "significant", "size_ratio", "peak_mem_ratio", "accuracy", "accuracy_delta",
    "top1_agreement", "pareto", "notes",
]  # fmt: skip


def compare_variants(results: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    ok = results[results["status"] == "ok"]
    rows: list[dict[str, Any]] = []
    for _, group in ok.groupby(GROUP, sort=False, dropna=False):
        base_rows = group[group["variant"] == "fp32"]
        base = base_rows.iloc[0] if len(base_rows) else None
        group_rows = [_compare(row, base) for _, row in group.iterrows()]
        _mark_pareto(group_rows)
        rows += group_rows
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _compare(row: Any, base: Any) -> dict[str, Any]:
    out = {key: row[key] for key in GROUP}
    out.update(
        variant=row["variant"],
        strategy=row["strategy"],
        p50_ms=row["p50_ms"],
        accuracy=_value(row["accuracy"]),
        top1_agreement=_value(row["top1_agreement"]),
        speedup=None,
        speedup_low=None,
        speedup_high=None,
        noise=None,
        significant=None,
        size_ratio=None,
        peak_mem_ratio=None,
        accuracy_delta=None,
        notes="",
    )
    if base is None:
        out["notes"] = "no fp32 result to compare with"
        return out
    out["speedup"] = base["p50_ms"] / row["p50_ms"]
    out["speedup_low"] = base["p50_ci_low_ms"] / row["p50_ci_high_ms"]
    out["speedup_high"] = base["p50_ci_high_ms"] / row["p50_ci_low_ms"]
    noise = max(
        _value(row.get("process_p50_spread")) or 0.0, _value(base.get("process_p50_spread")) or 0.0
    )
    out["noise"] = noise
    if row["variant"] != "fp32":
        out["significant"] = bool(
            out["speedup_low"] > 1 + noise or out["speedup_high"] < 1 / (1 + noise)
        )
    out["size_ratio"] = _ratio(row["model_bytes"], base["model_bytes"])
    out["peak_mem_ratio"] = _ratio(row["peak_rss_mb"], base["peak_rss_mb"])
    if out["accuracy"] is not None and _value(base["accuracy"]) is not None:
        out["accuracy_delta"] = out["accuracy"] - float(base["accuracy"])
    notes = []
    if row["variant"] != "fp32":
        if out["significant"] and out["speedup"] < 1:
            notes.append(f"SLOWER than fp32 on this device ({out['speedup']:.2f}x)")
        elif not out["significant"] and noise > 0:
            notes.append(f"speed difference within process-to-process noise (±{noise:.0%})")
    if out["accuracy_delta"] is not None and out["accuracy_delta"] <= -0.01:
        notes.append(f"accuracy {out['accuracy_delta'] * 100:+.1f} pts")
    out["notes"] = "; ".join(notes)
    return out


def _mark_pareto(rows: list[dict[str, Any]]) -> None:
    def quality(row: dict[str, Any]) -> float | None:
        if row["accuracy"] is not None:
            return float(row["accuracy"])
        size = row["size_ratio"]
        return None if size is None else -float(size)

    for row in rows:
        mine = quality(row)
        if mine is None:
            row["pareto"] = None
            continue
        row["pareto"] = not any(
            other is not row
            and (theirs := quality(other)) is not None
            and other["p50_ms"] <= row["p50_ms"]
            and theirs >= mine
            and (other["p50_ms"] < row["p50_ms"] or theirs > mine)
            for other in rows
        )


def _ratio(value: Any, base: Any) -> float | None:
    value, base = _value(value), _value(base)
    return None if value is None or not base else value / base


def _value(value: Any) -> float | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else float(value)
