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
Quality (`quality`, `quality_note`): "ok" when every output holds its kind's tolerance on
representative inputs (harness/fidelity.quality_verdict; the plan's [quality] over
QUALITY_DEFAULTS), "loss" when one does not (named), "unverified" when the figures come
from seeded random inputs or too few samples. A variant is Pareto-optimal (`pareto`) when
it is verified ("ok") and no other verified variant of the same group (fp32 included) is
at least as good on latency, fidelity loss, model size and peak memory (each where both
have it) and better on one; `worth_shipping` when it is also faster than fp32 for sure
(the interval above 1, beyond the noise; the report also drops those that fail a budget);
`front` marks the variants no other beats on both speedup and fidelity (the line the
report draws). Fidelity loss
(`fidelity_loss_pct`, `fidelity_measure` says which): the accuracy drop in points with an
eval set, else top-1 disagreement with fp32, else 1 − cosine similarity of the outputs, %.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from harness.fidelity import from_records, quality_verdict
from harness.frames import Row
from harness.history import ALPHA, MIN_ROUNDS, compare_interleaved
from harness.job_key import JobKey

if TYPE_CHECKING:
    import pandas as pd

GROUP = list(JobKey.SETTING_COLUMNS)  # the variants of one group are compared with its fp32
COMPARE_COLUMNS = [
    *GROUP, "variant", "strategy", "p50_ms", "speedup", "speedup_low", "speedup_high",
    "noise", "significant", "size_ratio", "peak_mem_ratio", "accuracy", "accuracy_delta",
    "top1_agreement", "psnr_db", "cosine_similarity", "fidelity_source", "pareto", "notes",
    "method", "verdict", "paired_vs_solo", "setting", "fidelity_loss_pct", "fidelity_measure",
    "front", "worth_shipping", "quality", "quality_note", "fidelity_n",
]  # fmt: skip
# the objectives `pareto` is computed over (lower is better), among verified variants
PARETO_OBJECTIVES = ("p50_ms", "fidelity_loss_pct", "size_ratio", "peak_mem_ratio")
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
    tolerances: dict[str, float] | None = None,
) -> pd.DataFrame:
    """With `comparisons`, a variant paired with fp32 in-process takes that decision; with
    `samples`, variants whose processes ran interleaved with fp32's (>= 5 rounds) are
    compared round by round (`history.compare_interleaved`), which cancels the drift of
    the machine; otherwise from the two medians' CIs and the process-to-process noise.
    `tolerances`: the plan's [quality] (over fidelity.QUALITY_DEFAULTS)."""
    import pandas as pd

    ok = results[results["status"] == "ok"]
    paired = {}
    if comparisons is not None and len(comparisons):
        decided = comparisons[(comparisons["status"] == "ok") & comparisons["ratio"].notna()]
        paired = {JobKey.of_row(r): r for _, r in decided.iterrows()}
    rows: list[Row] = []
    for _, group in ok.groupby(GROUP, sort=False, dropna=False):
        base_rows = group[group["variant"] == "fp32"]
        base = base_rows.iloc[0] if len(base_rows) else None
        group_rows = [
            _compare(row, base, samples, paired.get(JobKey.of_row(row)))
            for _, row in group.iterrows()
        ]
        for out, (_, row) in zip(group_rows, group.iterrows(), strict=True):
            _judge_quality(out, row, tolerances)
        _mark_pareto(group_rows)
        rows += group_rows
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _compare(row: Any, base: Any, samples: pd.DataFrame | None = None, paired: Any = None) -> Row:
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
        setting=f"{row['provider']} t{row['threads']}",
        fidelity_loss_pct=None,
        fidelity_measure=None,
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


def _judge_quality(out: Row, row: Any, tolerances: dict[str, float] | None) -> None:
    """The variant's quality verdict from its per-output fidelity (results'
    `fidelity_outputs`) and its accuracy drop; fp32 is the reference, verified by
    definition."""
    n = _value(row.get("fidelity_n"))
    out["fidelity_n"] = None if n is None else int(n)
    if row["variant"] == "fp32":
        out["quality"], out["quality_note"] = "ok", "the reference"
        return
    text = row.get("fidelity_outputs")
    outputs = from_records(json.loads(text)) if isinstance(text, str) and text else None
    drop = None if out["accuracy_delta"] is None else -100 * out["accuracy_delta"]
    source = out["fidelity_source"]
    out["quality"], out["quality_note"] = quality_verdict(outputs, source, drop, tolerances)
    if out["quality"] is None and drop is not None:  # labels, no fidelity pass
        out["quality"], out["quality_note"] = "ok", f"accuracy drop {drop:.1f} pts"


def _paired_words(paired: Any) -> str:
    band = f"±{paired['equivalence_pct']:g}%"
    interval = f"[{paired['speedup_ci_low']:.3f}-{paired['speedup_ci_high']:.3f}]"
    verdict = {
        "equivalent": f"equivalent to fp32 within {band}",
        "inconclusive": f"inconclusive at {band} after {paired['device_s']:.0f} s",
    }.get(str(paired["verdict"]), f"{paired['verdict']} than fp32 beyond {band}")
    return f"paired in-process: {verdict}, speedup {interval} from {paired['blocks']} blocks"


def _finish_notes(out: Row, row: Any, base: Any, test: str | None) -> None:
    out["size_ratio"] = _ratio(row["model_bytes"], base["model_bytes"])
    out["peak_mem_ratio"] = _ratio(row["peak_rss_mb"], base["peak_rss_mb"])
    if out["accuracy"] is not None and _value(base["accuracy"]) is not None:
        out["accuracy_delta"] = out["accuracy"] - float(base["accuracy"])
    out["fidelity_loss_pct"], out["fidelity_measure"] = _fidelity_loss(out, row["variant"])
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


def _interleaved(row: Any, base: Any, samples: pd.DataFrame | None) -> Row | None:
    rounds = min(_value(row.get("processes")) or 1, _value(base.get("processes")) or 1)
    if samples is None or rounds < MIN_ROUNDS:
        return None
    mine = samples[samples["job_id"] == row["job_id"]]
    theirs = samples[samples["job_id"] == base["job_id"]]
    compared = compare_interleaved(theirs, mine)
    return compared if compared["test"].startswith("paired") else None


def _improves(row: Row) -> bool:
    """Faster than fp32 for sure -- the interval above 1, beyond the process-to-process
    noise, never `~` -- with its quality verified within tolerance: a variant that gains
    no real speed, or whose quality is unverified or lost, is not worth shipping."""
    if row["variant"] == "fp32" or row["speedup"] is None or row["quality"] != "ok":
        return False
    return bool(row["significant"]) and row["speedup"] > 1 and (row["speedup_low"] or 0) > 1


def _fidelity_loss(out: Row, variant: str) -> tuple[float | None, str | None]:
    if variant == "fp32":
        return 0.0, "reference"
    if out["accuracy_delta"] is not None:
        return -100 * out["accuracy_delta"], "accuracy drop (pts)"
    if out["top1_agreement"] is not None:
        return 100 * (1 - out["top1_agreement"]), "top-1 disagreement (%)"
    if out["cosine_similarity"] is not None:
        return 100 * (1 - out["cosine_similarity"]), "1 - cosine (%)"
    return None, None


def _dominates(other: Row, row: Row, keys: tuple[str, ...]) -> bool:
    """`other` at least as good on every objective both have (lower is better), and better
    on one."""
    shared = [k for k in keys if other[k] is not None and row[k] is not None]
    return (
        bool(shared)
        and all(other[k] <= row[k] for k in shared)
        and any(other[k] < row[k] for k in shared)
    )


def _mark_pareto(rows: list[Row]) -> None:
    verified = [r for r in rows if r.get("quality") == "ok"]
    for row in rows:
        row["pareto"] = any(row is v for v in verified) and not any(
            other is not row and _dominates(other, row, PARETO_OBJECTIVES) for other in verified
        )
        row["worth_shipping"] = row["pareto"] and _improves(row)  # the report adds budgets
    # the speedup x fidelity front, both as lower-is-better
    points = {
        id(r): {"slowness": -float(r["speedup"]), "loss": float(r["fidelity_loss_pct"])}
        for r in rows
        if r["speedup"] is not None and r["fidelity_loss_pct"] is not None
    }
    for row in rows:
        mine = points.get(id(row))
        row["front"] = mine is not None and not any(
            theirs is not mine and _dominates(theirs, mine, ("slowness", "loss"))
            for theirs in points.values()
        )


def _ratio(value: Any, base: Any) -> float | None:
    value, base = _value(value), _value(base)
    return None if value is None or not base else value / base


def _value(value: Any) -> float | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else float(value)
