"""The gate's fidelity checks (`min_psnr_db` and the per-kind budgets), and the `Check`
record every budget check makes. Pure: a results row in, a check out. A fidelity figure
from seeded random inputs neither passes nor fails a budget: it is missing."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from harness.fidelity import RANDOM_SOURCE, from_records
from harness.frames import Row


@dataclass(frozen=True)
class Check:
    """One metric of one budget on one job."""

    metric: str
    limit: float
    outcome: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    message: str = ""


def _unverified(metric: str, limit: float, row: Row) -> Check | None:
    """A fidelity figure from seeded random inputs says nothing of real data: it can
    neither pass nor fail a budget."""
    if row.get("fidelity_source") == RANDOM_SOURCE:
        message = (
            "measured on seeded random inputs only (unverified): give the model "
            "representative inputs ([data] or [eval] in its manifest)"
        )
        return Check(metric, limit, "missing", message=message)
    return None


def kind_check(key: str, limit: float, kind: str, measure: str, row: Row) -> Check:
    """The worst output of `kind` against its budget (fp32 is the reference)."""
    if row["variant"] == "fp32":
        return Check(key, limit, "pass", message="fp32 is the reference")
    text = row.get("fidelity_outputs")
    outputs = from_records(json.loads(text)) if isinstance(text, str) and text else []
    judged = [o for o in outputs if o.kind == kind]
    values = [o.value for o in judged if o.value is not None]
    if not values:
        message = (
            f"no output judged as {kind} was measured against fp32 (declare it: "
            f'[outputs.NAME] kind = "{kind}")'
        )
        return Check(key, limit, "missing", message=message)
    unverified = _unverified(key, limit, row)
    if unverified is not None:
        return unverified
    minimum = key.startswith("min_")
    value = min(values) if minimum else max(values)
    passed = value >= limit if minimum else value <= limit
    n = min(o.n for o in judged)
    sign = ">=" if minimum else "<="
    message = f"{measure} {value:.4g} vs budget {sign} {limit:g} (n={n}, {row['fidelity_source']})"
    return Check(key, limit, "pass" if passed else "fail", value, value, value, message)


def psnr_check(limit: float, row: Row) -> Check:
    """The worst output's PSNR against fp32's on the same device and inputs: at least
    `limit` dB. fp32 itself is its own reference and passes."""
    if row["variant"] == "fp32":
        return Check("min_psnr_db", limit, "pass", message="fp32 is the reference")
    measured = row.get("psnr_db")
    if measured is None or is_missing(measured):
        message = "PSNR against fp32 on this device was not measured (fidelity_samples = 0?)"
        return Check("min_psnr_db", limit, "missing", message=message)
    unverified = _unverified("min_psnr_db", limit, row)
    if unverified is not None:
        return unverified
    value = float(measured)
    source = row.get("fidelity_source") or "fixed inputs"
    message = f"{value:.1f} dB vs budget >= {limit:g} dB (on {source})"
    return Check(
        "min_psnr_db", limit, "pass" if value >= limit else "fail", value, value, value, message
    )


def is_missing(value: Any) -> bool:
    """None or NaN: a figure that was not measured."""
    return value is None or (isinstance(value, float) and math.isnan(value))
