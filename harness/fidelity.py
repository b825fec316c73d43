"""How closely a variant's outputs follow fp32's on the same inputs, judged per kind of
output: pure functions over the two fidelity passes (the runner's `fidelity` parts).

One generic figure cannot judge every output: PSNR looks fine on an all-zero segmentation
map, top-1 agreement means nothing over landmark coordinates, and a presence flag whose
fp32 value never moves has no PSNR at all. So each output has a kind -- declared in the
manifest (`[outputs.NAME] kind = ...`) or inferred, and then the table says from what --
and the measure that kind needs (`MEASURES`). An output that cannot be characterised is
compared as a plain tensor (SNR), never given an agreement it does not have.

Every figure states its sample count; a rate carries its exact (Clopper-Pearson) 95 %
interval, so 4 of 4 agreeing reads [40 %, 100 %], not "100 %"; the worst sample is named
beside the mean. Judging the figures against tolerances is `quality_verdict`'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import numpy as np

from harness.output_measures import (
    KIND_MEASURES,
    OutputDeclaration,
    decibels,
    detection,
    snr_per_sample,
)
from harness.runner.result_views import Fidelity

OutputKind = Literal[
    "class_scores", "detection", "mask", "landmarks", "presence", "ctc_sequence",
    "embedding", "tensor",
]  # fmt: skip
OUTPUT_KINDS: tuple[str, ...] = get_args(OutputKind)


# each kind's headline measure, its direction, and the tolerance key that judges it
MEASURES: dict[str, tuple[str, str, str]] = {
    "class_scores": ("top1_agreement", "min", "min_top1_agreement"),
    "detection": ("detection_agreement", "min", "min_detection_agreement"),
    "mask": ("mask_iou", "min", "min_mask_iou"),
    "landmarks": ("landmark_error_pct", "max", "max_landmark_error_pct"),
    "presence": ("presence_agreement", "min", "min_presence_agreement"),
    "ctc_sequence": ("sequence_agreement", "min", "min_sequence_agreement"),
    "embedding": ("embedding_cosine", "min", "min_embedding_cosine"),
    "tensor": ("snr_db", "min", "min_snr_db"),
}

# What "worth shipping" and a fidelity budget demand by default (docs/models.md, "Quality"); a
# plan's [quality] table changes any of them.
QUALITY_DEFAULTS: dict[str, float] = {
    "min_samples": 8,  # fewer representative samples than this: unverified
    "max_accuracy_drop_pts": 1.0,  # with labels
    "min_top1_agreement": 0.95,
    "min_detection_agreement": 0.95,  # the lower of recall and precision against fp32
    "min_mask_iou": 0.95,
    "max_landmark_error_pct": 2.0,  # of the fp32 output's range over the set
    "min_presence_agreement": 0.95,
    "min_sequence_agreement": 0.95,
    "min_embedding_cosine": 0.99,
    "min_snr_db": 20.0,
}

RANDOM_SOURCE = "seeded random inputs"
CONSTANT_RELATIVE = 1e-6  # a range below this share of the output's magnitude: constant


@dataclass(frozen=True)
class OutputQuality:
    """One output's fidelity: its kind (and why), the headline measure over `n` samples
    with its interval (rates), the worst sample, every other figure, and a problem that
    overrides the figures (a variant output stuck at one value)."""

    name: str
    kind: str
    basis: str  # "declared", or what the kind was inferred from
    n: int
    measure: str
    value: float | None
    low: float | None = None
    high: float | None = None
    worst_sample: int | None = None
    figures: dict[str, float | None] = field(default_factory=dict)
    problem: str | None = None

    def text(self) -> str:
        """`mask_iou 0.41 (n=32, worst #7; seg: mask, declared)`; the problem instead."""
        if self.problem:
            return f"{self.name}: {self.problem}"
        value = "n/a" if self.value is None else f"{self.value:.3g}"
        interval = (
            f" [{self.low:.0%}-{self.high:.0%}]" if self.low is not None and self.high is not None
            else ""
        )  # fmt: skip
        worst = f", worst #{self.worst_sample}" if self.worst_sample is not None else ""
        return (
            f"{self.measure} {value}{interval} (n={self.n}{worst}; "
            f"{self.name}: {self.kind}, {self.basis})"
        )


def binomial_interval(agreeing: int, n: int) -> tuple[float, float]:
    """The exact (Clopper-Pearson) 95 % interval of a rate of `agreeing` in `n`."""
    from scipy.stats import beta

    low = 0.0 if agreeing == 0 else float(beta.ppf(0.025, agreeing, n - agreeing + 1))
    high = 1.0 if agreeing == n else float(beta.ppf(0.975, agreeing + 1, n - agreeing))
    return low, high


def infer_kind(
    declared: OutputDeclaration | None, per_sample_shape: list[int], reference: np.ndarray,
    task: str,
) -> tuple[str, str]:  # fmt: skip
    """(kind, basis): the declared kind, else what the shape and fp32's values say."""
    if declared and declared.get("kind"):
        return str(declared["kind"]), "declared"
    size = int(np.prod(per_sample_shape)) if per_sample_shape else 1
    squeezed = [d for d in per_sample_shape if d != 1]
    in_unit = bool(reference.size) and float(reference.min()) >= 0 and float(reference.max()) <= 1
    if size == 1 and in_unit:
        return "presence", "inferred: one value in [0, 1]"
    if len(squeezed) == 1 and squeezed[0] >= 2:
        if task == "classification":
            return "class_scores", f"inferred: {per_sample_shape} scores, task = classification"
        sums = reference.reshape(-1, squeezed[0]).sum(axis=1)
        if in_unit and np.allclose(sums, 1.0, atol=1e-3):
            return "class_scores", f"inferred: {per_sample_shape} values summing to 1"
    return "tensor", "no kind declared: compared as a tensor"


def compare_outputs(
    mine: Fidelity,
    theirs: Fidelity,
    declarations: dict[str, OutputDeclaration] | None = None,
    task: str = "",
) -> list[OutputQuality] | None:
    """Each output of the variant (`mine`) against fp32's (`theirs`) over the samples both
    passes hold; None when they are not comparable (other output counts or sizes)."""
    declarations = declarations or {}
    samples = min(len(mine.outputs), len(theirs.outputs))
    outputs = len(theirs.outputs[0]) if samples else 0
    if samples == 0 or any(len(mine.outputs[k]) != outputs for k in range(samples)):
        return None
    names = theirs.names or [f"output {i}" for i in range(outputs)]
    arrays: list[tuple[np.ndarray, np.ndarray]] = []
    for index in range(outputs):
        try:
            ours = np.asarray([mine.outputs[k][index] for k in range(samples)], np.float64)
            base = np.asarray([theirs.outputs[k][index] for k in range(samples)], np.float64)
        except ValueError:  # ragged: a dynamic output size changed between samples
            return None
        if ours.shape != base.shape or base.size == 0:
            return None
        arrays.append((ours, base))
    by_name = dict(zip(names, arrays, strict=False))
    results = []
    for index, (ours, base) in enumerate(arrays):
        name = names[index] if index < len(names) else f"output {index}"
        shape = theirs.shapes[index] if index < len(theirs.shapes) else [base.shape[1]]
        declared = declarations.get(name)
        kind, basis = infer_kind(declared, list(shape), base, task)
        results.append(_judge(name, kind, basis, ours, base, declared or {}, by_name))
    return results


def _judge(
    name: str, kind: str, basis: str, ours: np.ndarray, base: np.ndarray,
    declared: OutputDeclaration, by_name: dict[str, tuple[np.ndarray, np.ndarray]],
) -> OutputQuality:  # fmt: skip
    n = len(base)
    measure = MEASURES.get(kind, MEASURES["tensor"])[0]
    stuck = _stuck(ours, base)
    figures = _tensor_figures(ours, base)
    if kind == "detection":
        boxes = by_name.get(declared.get("boxes", ""))
        per_sample, extra = detection(ours, base, declared, boxes)
    else:
        per_sample, extra = KIND_MEASURES.get(kind, snr_per_sample)(ours, base, declared)
    figures.update(extra)
    values = [v for v in per_sample if v is not None]
    worst = None
    if values and min(values) != max(values):  # a worst sample only where one differs
        direction = MEASURES.get(kind, MEASURES["tensor"])[1]
        pick = min if direction == "min" else max
        worst = per_sample.index(pick(values))
    low = high = None
    if kind in ("class_scores", "presence", "ctc_sequence"):  # rates: k of n
        agreeing = sum(1 for v in values if v >= 1.0)
        value: float | None = agreeing / len(values) if values else None
        if values:
            low, high = binomial_interval(agreeing, len(values))
    elif kind == "tensor":
        value = figures.get("snr_db")
    elif kind in ("landmarks", "detection", "mask"):  # counted over the set, not per sample
        value = figures.get(MEASURES[kind][0])
    else:
        value = float(np.mean(values)) if values else None
    return OutputQuality(
        name=name, kind=kind, basis=basis, n=n, measure=measure, value=value, low=low,
        high=high, worst_sample=worst, figures=figures, problem=stuck,
    )  # fmt: skip


def _stuck(ours: np.ndarray, base: np.ndarray) -> str | None:
    """The variant's output never moves over the set while fp32's does: broken, whatever
    PSNR says (an all-zero segmentation map scored 48 dB)."""
    if _constant(ours) and not _constant(base):
        value = float(ours.flat[0])
        return "the variant's output is constant " + (
            "(all zeros)" if value == 0 else f"(every value {value:.4g})"
        )
    return None


def _constant(values: np.ndarray) -> bool:
    spread = float(np.ptp(values))
    return spread <= CONSTANT_RELATIVE * max(float(np.max(np.abs(values))), 1e-30)


def _tensor_figures(ours: np.ndarray, base: np.ndarray) -> dict[str, float | None]:
    """SNR, PSNR (peak = fp32's range over the whole set; none for a constant output),
    cosine and the largest absolute error, over every sample."""
    difference = ours - base
    noise = float(np.mean(difference**2))
    signal = float(np.mean(base**2))
    spread = float(np.ptp(base))
    norms = float(np.linalg.norm(ours) * np.linalg.norm(base))
    cosine = float(ours.ravel() @ base.ravel()) / norms if norms else float(noise == 0)
    return {
        "snr_db": decibels(signal, noise),
        "psnr_db": None if _constant(base) else decibels(spread**2, noise),
        "cosine": cosine,
        "max_abs_err": float(np.max(np.abs(difference))),
    }  # fmt: skip


def as_records(outputs: list[OutputQuality]) -> list[dict[str, object]]:
    """The per-output results as JSON-ready records (results' `fidelity_outputs`)."""
    return [asdict(o) for o in outputs]


def from_records(records: list[dict[str, object]]) -> list[OutputQuality]:
    known = set(OutputQuality.__dataclass_fields__)
    return [OutputQuality(**{k: v for k, v in r.items() if k in known}) for r in records]  # type: ignore[arg-type]


def quality_verdict(
    outputs: list[OutputQuality] | None,
    source: str | None,
    accuracy_drop_pts: float | None,
    tolerances: dict[str, float] | None = None,
) -> tuple[str | None, str]:
    """("ok" | "loss" | "unverified", why), or (None, "") where nothing was measured.
    Random inputs or too few samples never verify a variant; a stuck output or any
    measure past its tolerance is a loss, named. Where accuracy was measured against
    labels, it decides for the class scores: agreeing less with fp32 because the
    variant is right where fp32 was wrong is no loss."""
    limits = {**QUALITY_DEFAULTS, **(tolerances or {})}
    if (
        accuracy_drop_pts is not None
        and round(accuracy_drop_pts, 9) > limits["max_accuracy_drop_pts"]
    ):
        return "loss", (
            f"accuracy drop {accuracy_drop_pts:.1f} pts > {limits['max_accuracy_drop_pts']:g}"
        )
    if not outputs:
        return None, ""
    problems = [o.text() for o in outputs if o.problem]
    failed = [
        f"{o.text()} past {MEASURES[o.kind][2]} = {limits[MEASURES[o.kind][2]]:g}"
        for o in outputs
        if not o.problem
        and not _within(o, limits)
        and not (accuracy_drop_pts is not None and o.kind == "class_scores")
    ]
    if not source or source == RANDOM_SOURCE:  # neither a pass nor a loss says anything
        seen = f" (there: {'; '.join(problems + failed)})" if problems or failed else ""
        return "unverified", (
            "measured on seeded random inputs, which say nothing of real data" + seen
            + ": give representative inputs ([data] or [eval] in the manifest)"
        )  # fmt: skip
    if problems or failed:
        return "loss", "; ".join(problems + failed)
    unjudged = [o for o in outputs if o.value is None and o.kind != "tensor"]
    if unjudged:
        return "unverified", "; ".join(
            f"{o.name} ({o.kind}): fp32 and the variant mark nothing over the {source}, so "
            "there is nothing to compare: give inputs where the model finds something"
            for o in unjudged
        )
    n = min(o.n for o in outputs)
    if n < limits["min_samples"]:
        return "unverified", (
            f"{n} sample(s) from the {source}, fewer than min_samples = {limits['min_samples']:g}"
        )
    decided = (
        f"accuracy drop {accuracy_drop_pts:.1f} pts <= {limits['max_accuracy_drop_pts']:g}, "
        "which decides for the class scores; "
        if accuracy_drop_pts is not None
        else ""
    )
    return "ok", decided + "; ".join(o.text() for o in outputs)


def _within(output: OutputQuality, limits: dict[str, float]) -> bool:
    _, direction, key = MEASURES.get(output.kind, MEASURES["tensor"])
    if output.value is None:
        return True  # nothing to judge (a constant fp32 output has no SNR): not a loss
    return output.value >= limits[key] if direction == "min" else output.value <= limits[key]
