"""The tune's decisions as data: the order layers go back to float, the steps, the choice,
the closest miss, the trial record and the pinned entry."""

from __future__ import annotations

import tomllib

from harness.config.models import Variant
from harness.tune_revert import attribute_shares, between, layer_of, revert_counts, revert_order
from harness.tune_search import (
    Constraints,
    Recipe,
    Setting,
    Trial,
    choose,
    closest_miss,
    pinned_variant,
)

QUALITY_OK = {"name": "scores", "kind": "class_scores", "basis": "declared", "n": 100,
              "measure": "top1_agreement", "value": 1.0}  # fmt: skip


def _setting(speedup: float, low: float, high: float, p90_ms: float = 5.0) -> Setting:
    return Setting("CPUExecutionProvider", 1, speedup, low, high, "faster", 4.0, p90_ms, 10.0, None)


def _trial(
    number: int, value: float, settings: tuple[Setting, ...] = (), size: int = 10**6
) -> Trial:
    recipe = Recipe("int8-static", {"per_channel": True, "nodes_to_exclude": [f"n{number}"]}, "x")
    output = dict(QUALITY_OK, value=value)
    quality = "ok" if value >= 0.99 else "loss"
    return Trial(number, recipe, quality, "", (output,), None, size, None, settings,
                 "run", bool(settings))  # fmt: skip


def test_layers_costing_most_quality_per_time_gained_go_back_first() -> None:
    noise = {"a": 0.1, "b": 0.1, "c": 0.01}
    assert revert_order(noise, {"a": 0.5, "b": 0.05, "c": 0.001}) == ["c", "b", "a"]
    assert revert_order(noise, {}) == ["a", "b", "c"]  # no profile: by noise alone


def test_the_profile_of_the_optimized_graph_finds_the_layers_of_the_prepared_base() -> None:
    # names as onnxruntime 1.32's profile of ppocr_cls_v2 on x86 gives them: NCHWc Convs
    # named after their output, a Conv fused with its Relu after the Relu's output
    graph = [
        ("Conv@0", "Conv", ["x", "w0"], ["batch_norm_0.tmp_2"]),
        ("Add@0", "Add", ["batch_norm_0.tmp_2", "c"], ["Add@0"]),
        ("Conv@6", "Conv", ["Add@0", "w6"], ["batch_norm_6.tmp_2"]),
        ("Relu@6", "Relu", ["batch_norm_6.tmp_2"], ["relu_6.tmp_0"]),
        ("Mul@22", "Mul", ["relu_6.tmp_0", "s"], ["Mul@22"]),
        ("MatMul@0", "MatMul", ["Mul@22", "w"], ["y"]),
    ]
    owner = layer_of(graph)
    profile = {"batch_norm_0.tmp_2_nchwc": 0.3, "relu_6.tmp_0_nchwc": 0.2, "Mul@22": 0.1,
               "Add@0": 0.02, "ReorderOutput_token_216": 0.05, "MatMul@0": 0.25}  # fmt: skip
    shares, matched = attribute_shares(profile, owner)
    assert shares == {"Conv@0": 0.3, "Conv@6": 0.2, "MatMul@0": 0.25}
    # the Mul, the unfused Add (its own name) and the runtime's reorder are no layer's
    assert abs(matched - 0.75) < 1e-9


def test_steps_double_up_to_the_share_then_bisect() -> None:
    assert revert_counts(54, 0.5) == [1, 2, 4, 8, 16, 27]
    assert revert_counts(1, 0.5) == [1]
    assert between(4, 8) == 6 and between(4, 5) is None


def test_the_choice_holds_every_constraint_and_the_closest_miss_says_by_how_much() -> None:
    fast_bad = _trial(1, 0.98, (_setting(3.0, 2.8, 3.2),))
    good = _trial(2, 1.0, (_setting(1.5, 1.4, 1.6),))
    slow = _trial(3, 1.0, (_setting(0.9, 0.85, 0.95),))
    limits = Constraints({"min_top1_agreement": 0.99})
    chosen = choose([fast_bad, good, slow], limits, "fastest")
    assert chosen is not None and chosen[0] is good
    tight = Constraints({"min_top1_agreement": 0.99}, p90_ms=4.0)
    assert choose([fast_bad, good, slow], tight, "fastest") is None
    miss = closest_miss([fast_bad, good, slow], tight)
    assert miss is not None and miss.constraint == "p90_ms" and miss.value == 5.0
    assert "25.0% short" in miss.text()
    smallest = choose([good, _trial(4, 1.0, (_setting(1.1, 1.05, 1.2),), 10)], limits, "smallest")
    assert smallest is not None and smallest[0].number == 4


def test_a_trial_survives_its_record_and_the_pinned_entry_is_a_variant() -> None:
    trial = _trial(2, 1.0, (_setting(1.5, 1.4, 1.6),))
    assert Trial.from_json(trial.to_json()) == trial
    text = pinned_variant("tuned", trial.recipe, "from a tune\nsecond line")
    entry = tomllib.loads(text)["variants"][0]
    assert Variant(**entry).params == trial.recipe.params
    assert text.startswith("# from a tune\n# second line\n")


def test_a_tune_that_measured_nothing_still_draws_its_chart() -> None:
    from harness.report.tune_chart import trials_chart

    spec = trials_chart([], None, "")
    assert spec["layer"] and "speedup" in str(spec)


def test_a_tflite_recipe_names_only_the_knobs_it_has() -> None:
    assert Recipe("int8-static", {"calibration_samples": 12}, "x").describe() == "int8-static"
    onnx = Recipe("int8-static", {"calibrate_method": "Entropy", "per_channel": False}, "x")
    assert onnx.describe() == "int8-static Entropy per-tensor"
