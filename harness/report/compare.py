"""Variants against their fp32 base, per device and runtime setting: data in, data out.

When both jobs ran in >= 5 processes interleaved round by round (the scheduler's order),
the speedup is paired by round (`history.compare_interleaved`): the drift of the machine
over a run cancels, and "significant" means p < 0.01 with a CI that excludes 1. Otherwise
speedup is fp32 p50 / variant p50 with an interval from the two medians' CIs (fp32 low /
variant high .. fp32 high / variant low); with several processes the spread of their p50s
is a noise floor, and a speedup inside it is called noise, not a result (as asv does:
different only when over the threshold *and* outside the noise).
A variant is
Pareto-optimal when no other variant of the same group is at least as fast *and* at least
as accurate (and better in one); without accuracy, model size stands in for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.history import ALPHA, MIN_ROUNDS, compare_interleaved

if TYPE_CHECKING:
    import pandas as pd

GROUP = ["device", "model", "runtime", "provider", "threads"]
COMPARE_COLUMNS = [
    *GROUP, "variant", "strategy", "p50_ms", "speedup", "speedup_low", "speedup_high",
    "noise", "significant", "size_ratio", "peak_mem_ratio", "accuracy", "accuracy_delta",
    "top1_agreement", "psnr_db", "cosine_similarity", "fidelity_source", "pareto", "notes",
]  # fmt: skip


def compare_variants(results: pd.DataFrame, samples: pd.DataFrame | None = None) -> pd.DataFrame:
    """With `samples`, variants whose processes ran interleaved with fp32's (>= 3 rounds)
    are compared round by round (`history.compare_interleaved`), which cancels the drift of
    the machine; otherwise from the two medians' CIs and the process-to-process noise."""
    import pandas as pd

    ok = results[results["status"] == "ok"]
    rows: list[dict[str, Any]] = []
    for _, group in ok.groupby(GROUP, sort=False, dropna=False):
        base_rows = group[group["variant"] == "fp32"]
        base = base_rows.iloc[0] if len(base_rows) else None
        group_rows = [_compare(row, base, samples) for _, row in group.iterrows()]
        _mark_pareto(group_rows)
        rows += group_rows
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _compare(row: Any, base: Any, samples: pd.DataFrame | None = None) -> dict[str, Any]:
    out = {key: row[key] for key in GROUP}
    out.update(
        variant=row["variant"],
        strategy=row["strategy"],
        p50_ms=row["p50_ms"],
        accuracy=_value(row["accuracy"]),
        top1_agreement=_value(row["top1_agreement"]),
        psnr_db=_value(row.get("psnr_db")),
        cosine_similarity=_value(row.get("cosine_similarity")),
        fidelity_source=row.get("fidelity_source")
        if isinstance(row.get("fidelity_source"), str)
        else None,
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
    paired = _interleaved(row, base, samples)
    if paired is not None and row["variant"] != "fp32":
        out["speedup"] = 1 / paired["ratio"]
        out["speedup_low"], out["speedup_high"] = 1 / paired["ratio_high"], 1 / paired["ratio_low"]
        out["noise"] = 0.0
        out["significant"] = bool(
            paired["p_value"] < ALPHA and not out["speedup_low"] <= 1 <= out["speedup_high"]
        )
        _finish_notes(out, row, base, f"paired p={paired['p_value']:.2g}")
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
    _finish_notes(out, row, base, None)
    return out


def _finish_notes(out: dict[str, Any], row: Any, base: Any, test: str | None) -> None:
    out["size_ratio"] = _ratio(row["model_bytes"], base["model_bytes"])
    out["peak_mem_ratio"] = _ratio(row["peak_rss_mb"], base["peak_rss_mb"])
    if out["accuracy"] is not None and _value(base["accuracy"]) is not None:
        out["accuracy_delta"] = out["accuracy"] - float(base["accuracy"])
    notes = []
    if row["variant"] != "fp32":
        if out["significant"] and out["speedup"] < 1:
            notes.append(f"SLOWER than fp32 on this device ({out['speedup']:.2f}x)")
        elif not out["significant"] and test:
            notes.append(f"speed difference not significant ({test})")
        elif not out["significant"] and out["noise"]:
            notes.append(f"speed difference within process-to-process noise (±{out['noise']:.0%})")
    if out["accuracy_delta"] is not None and out["accuracy_delta"] <= -0.01:
        notes.append(f"accuracy {out['accuracy_delta'] * 100:+.1f} pts")
    out["notes"] = "; ".join(notes)


def _interleaved(row: Any, base: Any, samples: pd.DataFrame | None) -> dict[str, Any] | None:
    rounds = min(_value(row.get("processes")) or 1, _value(base.get("processes")) or 1)
    if samples is None or rounds < MIN_ROUNDS:
        return None
    mine = samples[samples["job_id"] == row["job_id"]]
    theirs = samples[samples["job_id"] == base["job_id"]]
    compared = compare_interleaved(theirs, mine)
    return compared if compared["test"].startswith("paired") else None


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
