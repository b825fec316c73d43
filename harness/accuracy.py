"""Accuracy on the device, from the runner's eval predictions: pure functions.

Accuracy is against the eval set's labels; agreement and output deviation are against the
fp32 variant measured on the same device (same runtime setting when there is one), so a
kernel difference of that device shows up, not only a compression effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np

from harness.runner.result_views import Fidelity


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


def class_agreement(mine: Fidelity, theirs: Fidelity) -> dict[str, float | None]:
    """Top-1 and top-5 agreement from two fidelity passes (the runner's `fidelity` parts),
    over every output that is a classification -- one score per sample, of shape [C] or
    [1, C] with C >= 2 -- the worst output deciding. Labels are not needed."""
    shapes = theirs.shapes
    classes = [
        index
        for index, shape in enumerate(shapes)
        if (len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)) and shape[-1] >= 2
    ]
    samples = min(len(mine.outputs), len(theirs.outputs))
    if not classes or samples == 0 or mine.shapes != shapes:
        return {}
    agreements: dict[int, list[float]] = {1: [], 5: []}
    for index in classes:
        ranked = [
            [np.argsort(-np.asarray(run.outputs[k][index]), kind="stable")[:5].tolist()
             for k in range(samples)]
            for run in (mine, theirs)
        ]  # fmt: skip
        for k, scores in agreements.items():
            if shapes[index][-1] > k or k == 1:
                scores.append(top_k_agreement(ranked[0], ranked[1], k) or 0.0)
    return {
        "top1_agreement": min(agreements[1]),
        "top5_agreement": min(agreements[5]) if agreements[5] else None,
    }


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


IDENTICAL_PSNR_DB = 200.0  # what equal outputs score (the MSE is 0: the PSNR unbounded)


def output_fidelity(
    outputs: Sequence[Sequence[Sequence[float]]], reference: Sequence[Sequence[Sequence[float]]]
) -> dict[str, float] | None:
    """How closely a variant's outputs follow fp32's on the same inputs, every output of
    every sample: PSNR in dB (peak = the largest |value| of fp32's output; what Qualcomm AI
    Hub reports for on-device outputs), cosine similarity and the largest absolute error.
    The worst output decides each figure. None when the two are not comparable (other
    sample count, output count or sizes)."""
    samples = min(len(outputs), len(reference))
    if samples == 0 or any(len(outputs[k]) != len(reference[k]) for k in range(samples)):
        return None
    psnrs, cosines, errors = [], [], []
    for index in range(len(reference[0])):
        try:
            mine = np.concatenate(
                [np.asarray(outputs[k][index], np.float64) for k in range(samples)]
            )
            theirs = np.concatenate(
                [np.asarray(reference[k][index], np.float64) for k in range(samples)]
            )
        except ValueError:
            return None
        if mine.shape != theirs.shape or mine.size == 0:
            return None
        difference = mine - theirs
        mse = float(np.mean(difference**2))
        peak = float(np.max(np.abs(theirs)))
        psnrs.append(
            IDENTICAL_PSNR_DB
            if mse == 0
            else min(IDENTICAL_PSNR_DB, 10 * np.log10(max(peak, 1e-30) ** 2 / mse))
        )
        norms = float(np.linalg.norm(mine) * np.linalg.norm(theirs))
        cosines.append(
            1.0 if norms == 0 and mse == 0 else float(mine @ theirs) / norms if norms else 0.0
        )
        errors.append(float(np.max(np.abs(difference))))
    return {"psnr_db": min(psnrs), "cosine_similarity": min(cosines), "max_abs_err": max(errors)}
