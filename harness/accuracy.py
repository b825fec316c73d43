"""Accuracy on the device, from the runner's eval predictions: pure functions.

Accuracy is against the eval set's labels; agreement and output deviation are against the
fp32 variant measured on the same device (same runtime setting when there is one), so a
kernel difference of that device shows up, not only a compression effect. Every output's
fidelity, judged per kind of output, is harness/fidelity.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np


class EvalMetrics(TypedDict, total=False):
    """Accuracy on the eval set's labels (`JobRecord.eval_metrics`), or why there is none."""

    eval_n: int
    accuracy: float | None
    top5_accuracy: float | None
    eval_error: str


def eval_metrics(predictions: Sequence[Sequence[int]], labels: np.ndarray) -> EvalMetrics:
    """Top-1 and top-k accuracy of the runner's top-k predictions."""
    count = min(len(predictions), len(labels))
    if count == 0:
        return {"eval_n": 0, "accuracy": None, "top5_accuracy": None}
    labels = np.asarray(labels).reshape(len(labels), -1)[:count, 0]
    top1 = np.array([p[0] for p in predictions[:count]])
    in_top5 = [
        int(label) in list(p[:5]) for p, label in zip(predictions[:count], labels, strict=True)
    ]
    return {
        "eval_n": count,
        "accuracy": float(np.mean(top1 == labels)),
        "top5_accuracy": float(np.mean(in_top5)),
    }


def top_k_agreement(
    predictions: Sequence[Sequence[int]], reference: Sequence[Sequence[int]], k: int
) -> float | None:
    """How often the reference's top-1 class is among the variant's top k (k = 1: the two
    top-1s agree)."""
    count = min(len(predictions), len(reference))
    if count == 0 or any(len(predictions[i]) < k for i in range(count)):
        return None
    return float(np.mean([reference[i][0] in predictions[i][:k] for i in range(count)]))


def output_deviation(
    outputs: Sequence[Sequence[float]] | None, reference: Sequence[Sequence[float]] | None
) -> tuple[float | None, float | None]:
    """(max, mean) absolute difference of the raw first outputs, sample by sample."""
    if not outputs or not reference or len(outputs) != len(reference):
        return None, None
    try:
        mine = np.asarray(outputs, dtype=np.float64)
        theirs = np.asarray(reference, dtype=np.float64)
    except ValueError:  # ragged: not comparable
        return None, None
    if mine.shape != theirs.shape:
        return None, None
    difference = np.abs(mine - theirs)
    return float(difference.max()), float(difference.mean())
