"""The measure each kind of output needs, sample by sample (harness/fidelity.py judges
with them): agreement of class scores, detections matched to fp32's, mask IoU, landmark
error, presence agreement, greedy CTC decoding, embedding cosine, a tensor's SNR. Pure."""

from __future__ import annotations

import math
from typing import Literal, TypedDict

import numpy as np


class OutputDeclaration(TypedDict, total=False):
    """A manifest's `[outputs.NAME]`: what the output is, and what reading it needs."""

    kind: str  # harness/fidelity.OutputKind
    threshold: float  # presence, mask, detection scores: "on" at or above it
    logits: bool  # the scores are logits: a sigmoid comes first
    boxes: str  # detection: the output holding each candidate's box (first 4 values)
    box_format: Literal["cxcywh", "xyxy", "yxyx"]
    blank: int  # ctc_sequence: the blank class


IDENTICAL_DB = 200.0  # what equal outputs score (no noise: unbounded)


def decibels(signal: float, noise: float) -> float | None:
    if noise == 0:
        return IDENTICAL_DB
    if signal == 0:
        return None
    return min(IDENTICAL_DB, 10 * math.log10(signal / noise))


PerSample = tuple[list[float | None], dict[str, float | None]]


def snr_per_sample(ours: np.ndarray, base: np.ndarray, _: OutputDeclaration) -> PerSample:
    return [
        decibels(float(np.mean(b**2)), float(np.mean((o - b) ** 2)))
        for o, b in zip(ours, base, strict=True)
    ], {}


def _class_scores(ours: np.ndarray, base: np.ndarray, _: OutputDeclaration) -> PerSample:
    flat_ours, flat_base = ours.reshape(len(ours), -1), base.reshape(len(base), -1)
    top1 = [float(np.argmax(o) == np.argmax(b)) for o, b in zip(flat_ours, flat_base, strict=True)]
    top5 = [
        float(np.argmax(b) in np.argsort(-o, kind="stable")[:5])
        for o, b in zip(flat_ours, flat_base, strict=True)
    ]
    kl = [_kl(b, o) for o, b in zip(flat_ours, flat_base, strict=True)]
    return list(top1), {
        "top1_agreement": float(np.mean(top1)),
        "top5_agreement": float(np.mean(top5)) if flat_base.shape[1] > 5 else None,
        "kl_divergence": float(np.mean(kl)),
    }


def _kl(reference: np.ndarray, variant: np.ndarray) -> float:
    """KL(fp32 || variant) of the two as distributions (softmax unless they already are)."""

    def distribution(values: np.ndarray) -> np.ndarray:
        if values.min() >= 0 and abs(float(values.sum()) - 1) < 1e-3:
            return np.asarray(np.clip(values, 1e-12, None), dtype=np.float64)
        shifted = np.exp(values - values.max())
        return np.asarray(np.clip(shifted / shifted.sum(), 1e-12, None), dtype=np.float64)

    p, q = distribution(reference), distribution(variant)
    return float(np.sum(p * np.log(p / q)))


def _on(values: np.ndarray, declared: OutputDeclaration) -> np.ndarray:
    if declared.get("logits"):
        values = 1 / (1 + np.exp(-np.clip(values, -60, 60)))
    return values >= float(declared.get("threshold", 0.5))


def _presence(ours: np.ndarray, base: np.ndarray, declared: OutputDeclaration) -> PerSample:
    agree = (_on(ours, declared) == _on(base, declared)).reshape(len(base), -1).all(axis=1)
    error = np.abs(ours - base).reshape(len(base), -1).max(axis=1)
    return [float(a) for a in agree], {
        "presence_agreement": float(np.mean(agree)),
        "presence_abs_err": float(np.max(error)),
    }


def _mask(ours: np.ndarray, base: np.ndarray, declared: OutputDeclaration) -> PerSample:
    """IoU and Dice of the masks at the threshold, their pixels counted over the whole set:
    a sample where both masks are empty adds nothing (averaged per sample, eleven empty
    photographs scored a text detector that found nothing at all 0.92)."""
    mine, theirs = _on(ours, declared), _on(base, declared)
    per_sample: list[float | None] = []
    for o, b in zip(mine, theirs, strict=True):
        either = int(np.sum(o | b))
        per_sample.append(int(np.sum(o & b)) / either if either else None)
    both, either = int(np.sum(mine & theirs)), int(np.sum(mine | theirs))
    total = int(np.sum(mine) + np.sum(theirs))
    return per_sample, {  # neither marks a pixel anywhere: nothing to compare (None)
        "mask_iou": both / either if either else None,
        "mask_dice": 2 * both / total if total else None,
        "mask_pixels_fp32": float(np.sum(theirs)),
    }


def _landmarks(ours: np.ndarray, base: np.ndarray, _: OutputDeclaration) -> PerSample:
    """Error as a share of fp32's coordinate range over the set (the model's own scale)."""
    spread = float(np.ptp(base)) or 1.0
    per_sample = np.abs(ours - base).reshape(len(base), -1).mean(axis=1) / spread * 100
    return [float(v) for v in per_sample], {
        "landmark_error_pct": float(np.mean(per_sample)),
        "landmark_max_error_pct": float(np.max(np.abs(ours - base)) / spread * 100),
    }


def _embedding(ours: np.ndarray, base: np.ndarray, _: OutputDeclaration) -> PerSample:
    cosines = []
    for o, b in zip(ours.reshape(len(ours), -1), base.reshape(len(base), -1), strict=True):
        norms = float(np.linalg.norm(o) * np.linalg.norm(b))
        cosines.append(float(o @ b) / norms if norms else float(np.array_equal(o, b)))
    return list(cosines), {"embedding_cosine": float(np.mean(cosines))}


def ctc_decode(steps: np.ndarray, blank: int) -> list[int]:
    """Greedy CTC: the best class per time step, repeats merged, blanks dropped."""
    best = np.argmax(steps.reshape(-1, steps.shape[-1]), axis=1)
    return [int(c) for i, c in enumerate(best) if c != blank and (i == 0 or c != best[i - 1])]


def edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def _ctc(ours: np.ndarray, base: np.ndarray, declared: OutputDeclaration) -> PerSample:
    blank = int(declared.get("blank", 0))
    agree, distances = [], []
    for o, b in zip(ours, base, strict=True):
        mine, reference = ctc_decode(o, blank), ctc_decode(b, blank)
        agree.append(float(mine == reference))
        distances.append(edit_distance(mine, reference) / max(len(reference), 1))
    return list(agree), {
        "sequence_agreement": float(np.mean(agree)),
        "edit_distance": float(np.mean(distances)),
    }


def _boxes(values: np.ndarray, box_format: str) -> np.ndarray:
    """Candidates' boxes as (x1, y1, x2, y2) from their first four values."""
    a, b, c, d = (values[..., i] for i in range(4))
    if box_format == "xyxy":
        return np.stack([a, b, c, d], axis=-1)
    if box_format == "yxyx":
        return np.stack([b, a, d, c], axis=-1)
    return np.stack([a - c / 2, b - d / 2, a + c / 2, b + d / 2], axis=-1)  # cx, cy, w, h


def _iou(one: np.ndarray, other: np.ndarray) -> float:
    width = max(0.0, min(one[2], other[2]) - max(one[0], other[0]))
    height = max(0.0, min(one[3], other[3]) - max(one[1], other[1]))
    inter = width * height
    union = (one[2] - one[0]) * (one[3] - one[1]) + (other[2] - other[0]) * (other[3] - other[1])
    return float(inter / (union - inter)) if union - inter > 0 else 0.0


def detection(
    ours: np.ndarray, base: np.ndarray, declared: OutputDeclaration,
    boxes: tuple[np.ndarray, np.ndarray] | None,
) -> PerSample:  # fmt: skip
    """Candidates over the score threshold (one score per candidate: anchors, proposals),
    the variant's against fp32's, candidate by candidate, counted over the whole set (a
    photo with one borderline detection must not weigh as much as a set): recall and
    precision against fp32 and, with a boxes output, the mean IoU of the boxes both keep.
    Per sample, the lower of the two (for the worst sample)."""
    on_ours = _on(ours, declared).reshape(len(ours), -1)
    on_base = _on(base, declared).reshape(len(base), -1)
    per_sample: list[float | None] = []
    ious: list[float] = []
    fmt = str(declared.get("box_format", "cxcywh"))
    for k, (o, b) in enumerate(zip(on_ours, on_base, strict=True)):
        kept = int(np.sum(o & b))
        recall = kept / int(np.sum(b)) if np.sum(b) else 1.0
        precision = kept / int(np.sum(o)) if np.sum(o) else 1.0
        per_sample.append(min(recall, precision))
        if boxes is not None and kept:
            mine = _boxes(boxes[0][k].reshape(len(o), -1), fmt)
            theirs = _boxes(boxes[1][k].reshape(len(b), -1), fmt)
            ious += [_iou(mine[i], theirs[i]) for i in np.flatnonzero(o & b)]
    kept_all = int(np.sum(on_ours & on_base))
    fp32_all, variant_all = int(np.sum(on_base)), int(np.sum(on_ours))
    recall_all = kept_all / fp32_all if fp32_all else 1.0
    precision_all = kept_all / variant_all if variant_all else 1.0
    return per_sample, {  # neither detects anything anywhere: nothing to compare (None)
        "detection_agreement": min(recall_all, precision_all) if fp32_all or variant_all else None,
        "detection_recall": recall_all,
        "detection_precision": precision_all,
        "detection_mean_iou": float(np.mean(ious)) if ious else None,
        "detections_fp32": float(fp32_all),
        "detections_variant": float(variant_all),
    }


KIND_MEASURES = {
    "class_scores": _class_scores,
    "presence": _presence,
    "mask": _mask,
    "landmarks": _landmarks,
    "embedding": _embedding,
    "ctc_sequence": _ctc,
    "tensor": snr_per_sample,
}
