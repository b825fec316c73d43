"""Fidelity judged per kind of output (harness/fidelity.py) and the ship decision that rests
on it (harness/analysis.py): each case one of the ways a generic figure misled a user."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.analysis import compare_variants
from harness.fidelity import (
    as_records,
    binomial_interval,
    compare_outputs,
    infer_kind,
    quality_verdict,
)
from harness.output_measures import ctc_decode, edit_distance
from harness.rows import fidelity_columns
from harness.runner.result_views import Fidelity

REPRESENTATIVE = "representative set"


def passes(
    samples: list[list[np.ndarray]],
    shapes: list[list[int]],
    names: list[str],
    source: str = REPRESENTATIVE,
    task: str = "",
    declared: dict | None = None,
) -> Fidelity:
    return Fidelity(
        n=len(samples), source=source, shapes=shapes, classification=task == "classification",
        outputs=[[np.asarray(o, float).ravel().tolist() for o in s] for s in samples],
        names=names, task=task, declared=declared or {},
    )  # fmt: skip


def test_four_of_four_is_an_interval_not_a_hundred_percent() -> None:
    low, high = binomial_interval(4, 4)
    assert round(low, 2) == 0.40 and high == 1.0
    low, high = binomial_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.3085, abs=1e-3)


def test_psnr_takes_the_range_of_the_whole_set_and_none_for_a_constant_output() -> None:
    """A presence flag whose fp32 value is ~1e-9 on every input scored PSNR -173 dB; its
    range is ~0, so there is no PSNR: its kind (presence) judges it instead."""
    rng = np.random.default_rng(0)
    fp32 = [[rng.normal(size=20), np.array([1e-9])] for _ in range(16)]
    variant = [[s[0] + 0.01, np.array([3e-9])] for s in fp32]
    outputs = compare_outputs(
        passes(variant, [[1, 20], [1, 1]], ["features", "presence"]),
        passes(fp32, [[1, 20], [1, 1]], ["features", "presence"]),
    )
    assert outputs is not None
    features, presence = outputs
    spread = float(np.ptp(np.concatenate([s[0] for s in fp32])))
    assert features.figures["psnr_db"] == pytest.approx(10 * np.log10(spread**2 / 0.01**2))
    assert presence.figures["psnr_db"] is None
    assert (presence.kind, presence.basis) == ("presence", "inferred: one value in [0, 1]")
    assert presence.value == 1.0 and presence.low is not None and presence.low < 0.9


def test_an_all_zero_segmentation_map_is_named_whatever_its_psnr() -> None:
    rng = np.random.default_rng(1)
    masks = [(rng.random((1, 8, 8)) > 0.9).astype(float) for _ in range(10)]
    zeros = [[np.zeros((1, 8, 8))] for _ in masks]
    declared = {"seg": {"kind": "mask"}}
    [seg] = (
        compare_outputs(
            passes(zeros, [[1, 1, 8, 8]], ["seg"], declared=declared),
            passes([[m] for m in masks], [[1, 1, 8, 8]], ["seg"], declared=declared),
            declared,
        )
        or []
    )
    assert seg.figures["psnr_db"] is not None and seg.figures["psnr_db"] > 9  # "fine"
    assert seg.problem == "the variant's output is constant (all zeros)"
    assert seg.basis == "declared" and seg.value == pytest.approx(0.0)
    verdict, why = quality_verdict([seg], REPRESENTATIVE, None)
    assert verdict == "loss" and "constant (all zeros)" in why


def test_landmark_coordinates_get_no_top1_agreement() -> None:
    """A face cascade's [1, 10] landmark output is not class scores: without a
    classification task it is compared as a tensor, and when declared, by its error."""
    rng = np.random.default_rng(2)
    fp32 = [[rng.uniform(0, 128, 10)] for _ in range(8)]
    variant = [[s[0] + rng.normal(0, 0.5, 10)] for s in fp32]
    [inferred] = (
        compare_outputs(
            passes(variant, [[1, 10]], ["landmarks"]),
            passes(fp32, [[1, 10]], ["landmarks"], task="detection"),
            task="detection",
        )
        or []
    )
    assert inferred.kind == "tensor" and "top1_agreement" not in inferred.figures
    declared = {"landmarks": {"kind": "landmarks"}}
    [landmarks] = compare_outputs(
        passes(variant, [[1, 10]], ["landmarks"]), passes(fp32, [[1, 10]], ["landmarks"]),
        declared,
    ) or []  # fmt: skip
    assert landmarks.measure == "landmark_error_pct" and 0 < landmarks.value < 1


def test_a_ctc_head_is_judged_by_its_decoded_text_not_its_psnr() -> None:
    """A sparse text recogniser: PSNR 43.7 dB while its per-step argmax agreed 0 of 40."""
    steps, classes = 40, 6
    rng = np.random.default_rng(3)
    fp32, variant = [], []
    for _ in range(10):
        logits = rng.normal(0, 0.01, (1, steps, classes))
        best = rng.integers(1, classes, steps)
        logits[0, np.arange(steps), best] += 1.0
        nudged = logits.copy()
        runner_up = (best % (classes - 1)) + 1
        nudged[0, np.arange(steps), runner_up] += 1.02  # a small change that flips the argmax
        fp32.append([logits])
        variant.append([nudged])
    declared = {"text": {"kind": "ctc_sequence", "blank": 0}}
    [text] = (
        compare_outputs(
            passes(variant, [[1, steps, classes]], ["text"]),
            passes(fp32, [[1, steps, classes]], ["text"]),
            declared,
        )
        or []
    )
    assert text.figures["psnr_db"] is not None and text.figures["psnr_db"] > 5
    assert text.value == 0.0 and text.figures["edit_distance"] > 0.5
    assert ctc_decode(np.array([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]]), 0) == [1]
    assert edit_distance([1, 2, 3], [1, 3]) == 1


def test_detections_are_matched_to_fp32s_anchor_by_anchor() -> None:
    anchors = 6
    scores = np.array([3.0, -3.0, 2.0, -2.0, 4.0, -4.0]).reshape(1, anchors, 1)  # logits
    boxes = np.tile(np.array([10.0, 10.0, 4.0, 4.0]), (1, anchors, 1))
    moved = boxes.copy()
    moved[0, :, 0] += 2.0  # every box shifted by half its width: IoU 1/3
    lost = scores.copy()
    lost[0, 4, 0] = -1.0  # the variant misses one of fp32's three detections
    declared = {"scores": {"kind": "detection", "logits": True, "boxes": "boxes"}}
    shapes, names = [[1, anchors, 1], [1, anchors, 4]], ["scores", "boxes"]
    detection, _ = compare_outputs(
        passes([[lost, moved]] * 4, shapes, names), passes([[scores, boxes]] * 4, shapes, names),
        declared,
    ) or []  # fmt: skip
    assert detection.figures["detection_recall"] == pytest.approx(2 / 3)
    assert detection.figures["detection_precision"] == 1.0
    assert detection.figures["detection_mean_iou"] == pytest.approx(1 / 3)
    assert detection.value == pytest.approx(2 / 3)


def test_class_scores_use_every_sample_and_name_the_worst() -> None:
    """A byte classifier scored PSNR 50 dB on the eval set's first four samples (one
    class); over the whole set its top-1 agreement was 0.60."""
    rng = np.random.default_rng(4)
    fp32 = [[rng.normal(size=(1, 5))] for _ in range(40)]
    variant = [[-s[0] if k % 5 in (1, 3) else s[0]] for k, s in enumerate(fp32)]
    [scores] = (
        compare_outputs(
            passes(variant, [[1, 5]], ["logits"]),
            passes(fp32, [[1, 5]], ["logits"], task="classification"),
            task="classification",
        )
        or []
    )
    assert scores.n == 40 and scores.value == pytest.approx(0.6)
    assert scores.worst_sample == 1 and scores.low is not None and scores.high is not None
    assert scores.low < 0.6 < scores.high
    assert "top1_agreement 0.6 [" in scores.text() and "n=40" in scores.text()
    # against labels, accuracy decides: agreeing less with fp32 is no loss where accuracy
    # held (the variant right where fp32 was wrong), and a loss where it dropped
    verdict, why = quality_verdict([scores], REPRESENTATIVE, None)
    assert verdict == "loss" and "past min_top1_agreement" in why
    verdict, why = quality_verdict([scores], REPRESENTATIVE, -7.5)
    # the why says what decided: a reader sees agreement 0.6 and an ok otherwise
    assert verdict == "ok" and why.startswith("accuracy drop -7.5 pts <= 1, which decides")
    verdict, why = quality_verdict([scores], REPRESENTATIVE, 29.0)
    assert verdict == "loss" and why.startswith("accuracy drop 29.0 pts")


def test_random_inputs_never_verify_and_too_few_samples_do_not_either() -> None:
    rng = np.random.default_rng(5)
    fp32 = [[rng.normal(size=16)] for _ in range(4)]
    outputs = compare_outputs(passes(fp32, [[16]], ["y"]), passes(fp32, [[16]], ["y"]))
    verdict, why = quality_verdict(outputs, "seeded random inputs", None)
    assert verdict == "unverified" and "random inputs" in why
    verdict, why = quality_verdict(outputs, REPRESENTATIVE, None)
    assert verdict == "unverified" and "4 sample(s)" in why
    assert quality_verdict(outputs, REPRESENTATIVE, None, {"min_samples": 4})[0] == "ok"
    assert quality_verdict(outputs, REPRESENTATIVE, 3.0, {"min_samples": 4})[0] == "loss"


def test_inference_says_what_it_read_and_leaves_unknown_outputs_tensors() -> None:
    probabilities = np.full((3, 4), 0.25)
    assert infer_kind(None, [1, 4], probabilities, "")[0] == "class_scores"
    assert infer_kind(None, [1, 4], np.arange(12.0).reshape(3, 4), "")[0] == "tensor"
    assert infer_kind({"kind": "embedding"}, [1, 4], probabilities, "")[1] == "declared"


def frame(rows: list[dict]) -> pd.DataFrame:
    base = {"device": "d", "model": "m", "runtime": "onnxruntime", "provider": "CPU",
            "threads": 1, "status": "ok", "accuracy": None, "top1_agreement": None,
            "model_bytes": 100, "peak_rss_mb": 10.0}  # fmt: skip
    return pd.DataFrame([{**base, **r} for r in rows])


def variant(name: str, p50: float) -> dict:
    return {"job_id": name, "variant": name, "strategy": name, "p50_ms": p50,
            "p50_ci_low_ms": p50 * 0.99, "p50_ci_high_ms": p50 * 1.01}  # fmt: skip


def test_worth_shipping_needs_verified_quality_and_a_real_speed_gain() -> None:
    """Listed before: a variant with 100 % fidelity loss, one measured on noise, and one
    slower than fp32. Now only a verified, surely faster variant is worth shipping, and
    pareto is computed among verified variants."""
    rng = np.random.default_rng(6)
    fp32_pass = passes([[rng.normal(size=(1, 10))] for _ in range(16)], [[1, 10]], ["y"],
                       task="classification")  # fmt: skip

    def fidelity_of(flip: bool, source: str) -> dict:
        samples = [[-np.asarray(s[0]) if flip else np.asarray(s[0])] for s in fp32_pass.outputs]
        mine = passes(samples, [[1, 10]], ["y"], source=source)
        return fidelity_columns(mine, fp32_pass)

    rows = [
        variant("fp32", 10.0),
        {**variant("good", 5.0), **fidelity_of(False, REPRESENTATIVE)},
        {**variant("broken", 4.0), **fidelity_of(True, REPRESENTATIVE)},
        {**variant("noise", 4.5), **fidelity_of(False, "seeded random inputs")},
        {**variant("slow", 10.6), **fidelity_of(False, REPRESENTATIVE)},
    ]
    table = compare_variants(frame(rows)).set_index("variant")
    assert table["quality"].to_dict() == {
        "fp32": "ok", "good": "ok", "broken": "loss", "noise": "unverified", "slow": "ok",
    }  # fmt: skip
    assert table["worth_shipping"].to_dict() == {
        "fp32": False, "good": True, "broken": False, "noise": False, "slow": False,
    }  # fmt: skip
    # fp32 is dominated by "good" (faster, as faithful, as small); the others unverified
    # or lost are left out of the front, however fast
    assert table["pareto"].to_dict() == {
        "fp32": False, "good": True, "broken": False, "noise": False, "slow": False,
    }  # fmt: skip
    assert table.loc["good", "fidelity_n"] == 16
    assert "top1_agreement 0 [" in table.loc["broken", "quality_note"]
    records = json.loads(rows[1]["fidelity_outputs"])
    assert records == as_records(compare_outputs(fp32_pass, fp32_pass, task="classification"))


def test_a_mask_travels_as_its_bits_and_reads_back_as_zeros_and_ones() -> None:
    """A 320x320 text map is 102,400 floats a sample: the runner sends a declared mask as
    its bits at the threshold (1/64 of the size), the controller reads them back."""
    from harness.runner.outputs import _mask_bits
    from harness.runner.result_document import ResultDocument

    rng = np.random.default_rng(7)
    probabilities = rng.random((1, 1, 9, 7))  # 63 values: not a whole number of bytes
    logits = np.log(probabilities / (1 - probabilities))
    bits = _mask_bits(np, probabilities, {"kind": "mask", "threshold": 0.3})
    assert _mask_bits(np, logits, {"kind": "mask", "threshold": 0.3, "logits": True}) == bits
    doc = ResultDocument({"status": "ok", "fidelity": {
        "n": 1, "source": REPRESENTATIVE, "outputs": [[[], [0.5]]], "shapes": [[1, 1, 9, 7], [1, 1]],
        "masks": [{"0": bits}],
    }})  # fmt: skip
    fidelity = doc.fidelity
    assert fidelity is not None
    assert fidelity.outputs[0][0] == (probabilities.ravel() >= 0.3).astype(float).tolist()
    assert fidelity.outputs[0][1] == [0.5]
