"""Variants against their fp32 base, per device and runtime setting: data in, data out.

Three estimators, best first; the `method` column says which one a row used, and the p50
column is always the pooled samples' median:
- `paired`: the run paired the variant with fp32 in the same processes (`paired = true`):
  speedup, interval and verdict are that comparison's (comparisons.parquet; blocks
  alternated in-process, decided sequentially; harness/runner/paired.py).
- `rounds`: both jobs ran in >= 5 processes interleaved round by round (the scheduler's
  order): paired by round (`history.compare_interleaved`), so the machine's drift over the
  run cancels; "significant" means the 95 % interval excludes 1 (the same test's p < 0.05:
  one level everywhere).
- `medians`: fp32 p50 / variant p50 with an interval from the two medians' CIs (fp32 low /
  variant high .. fp32 high / variant low); with several processes the spread of their
  p50s is a noise floor, and a speedup inside it is called noise, not a result (as asv
  does: different only when over the threshold *and* outside the noise).
A variant is Pareto-optimal when no other variant of the same group is at least as fast
*and* at least as accurate (and better in one); without accuracy, model size stands in.
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
    "method", "verdict", "paired_vs_solo",
]  # fmt: skip
# how the speedup and its interval were estimated (the `method` column); the p50 column
# is always the pooled samples' median
METHODS = {
    "paired": "paired blocks in one process (trimmed mean of block log-ratios)",
    "rounds": "per-process medians, round by round (trimmed mean of log-ratios)",
    "medians": "pooled p50s (interval from the two medians' CIs)",
}


def compare_variants(
    results: pd.DataFrame,
    samples: pd.DataFrame | None = None,
    comparisons: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """With `comparisons`, a variant paired with fp32 in-process takes that decision; with
    `samples`, variants whose processes ran interleaved with fp32's (>= 5 rounds) are
    compared round by round (`history.compare_interleaved`), which cancels the drift of
    the machine; otherwise from the two medians' CIs and the process-to-process noise."""
    import pandas as pd

    ok = results[results["status"] == "ok"]
    paired = {}
    if comparisons is not None and len(comparisons):
        decided = comparisons[(comparisons["status"] == "ok") & comparisons["ratio"].notna()]
        paired = {tuple(r[k] for k in [*GROUP, "variant"]): r for _, r in decided.iterrows()}
    rows: list[dict[str, Any]] = []
    for _, group in ok.groupby(GROUP, sort=False, dropna=False):
        base_rows = group[group["variant"] == "fp32"]
        base = base_rows.iloc[0] if len(base_rows) else None
        group_rows = [
            _compare(row, base, samples, paired.get(tuple(row[k] for k in [*GROUP, "variant"])))
            for _, row in group.iterrows()
        ]
        _mark_pareto(group_rows)
        rows += group_rows
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _compare(
    row: Any, base: Any, samples: pd.DataFrame | None = None, paired: Any = None
) -> dict[str, Any]:
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
        method="medians",
        verdict=None,
        paired_vs_solo=None,
    )
    if base is None:
        out["notes"] = "no fp32 result to compare with"
        return out
    if paired is not None and row["variant"] != "fp32":
        out.update(
            speedup=paired["speedup"], speedup_low=paired["speedup_ci_low"],
            speedup_high=paired["speedup_ci_high"], noise=0.0, method="paired",
            verdict=paired["verdict"],
            significant=paired["verdict"] in ("faster", "slower"),
            paired_vs_solo=_ratio(paired["variant_paired_ms"], row["p50_ms"]),
        )  # fmt: skip
        _finish_notes(out, row, base, _paired_words(paired))
        return out
    rounds = _interleaved(row, base, samples)
    if rounds is not None and row["variant"] != "fp32":
        out["speedup"] = 1 / rounds["ratio"]
        out["speedup_low"], out["speedup_high"] = 1 / rounds["ratio_high"], 1 / rounds["ratio_low"]
        out["noise"] = 0.0
        out["method"] = "rounds"
        # the 95 % interval and p come from one test: they never disagree
        out["significant"] = bool(rounds["p_value"] < ALPHA)
        _finish_notes(out, row, base, f"paired by round, p={rounds['p_value']:.2g}")
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


def _paired_words(paired: Any) -> str:
    band = f"±{paired['equivalence_pct']:g}%"
    interval = f"[{paired['speedup_ci_low']:.3f}-{paired['speedup_ci_high']:.3f}]"
    verdict = {
        "equivalent": f"equivalent to fp32 within {band}",
        "inconclusive": f"inconclusive at {band} after {paired['device_s']:.0f} s",
    }.get(str(paired["verdict"]), f"{paired['verdict']} than fp32 beyond {band}")
    return f"paired in-process: {verdict}, speedup {interval} from {paired['blocks']} blocks"


def _finish_notes(out: dict[str, Any], row: Any, base: Any, test: str | None) -> None:
    out["size_ratio"] = _ratio(row["model_bytes"], base["model_bytes"])
    out["peak_mem_ratio"] = _ratio(row["peak_rss_mb"], base["peak_rss_mb"])
    if out["accuracy"] is not None and _value(base["accuracy"]) is not None:
        out["accuracy_delta"] = out["accuracy"] - float(base["accuracy"])
    notes = []
    if row["variant"] != "fp32":
        if out["significant"] and out["speedup"] < 1:
            notes.append(f"SLOWER than fp32 on this device ({out['speedup']:.2f}x)")
        if out["method"] == "paired" and test:
            notes.append(test)
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
