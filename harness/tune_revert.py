"""What a tune tries: the whole-model recipes of its search space, and which layers go
back to float, in what order (pure: data in, data out).

A layer's cost of quantizing is its noise at the outputs, quantized alone; its gain is
its share of fp32's time in a profile on the device. The device's profile names the nodes
of the runtime's *optimized* graph, not the prepared base's: onnxruntime's NCHWc layout
names a converted Conv after its output tensor (`batch_norm_0.tmp_2_nchwc`), and a Conv
fused with its activation writes the activation's output (`relu_6.tmp_0_nchwc`). So the
profile's nodes are matched by a weighted layer's own name, or, for a name the runtime
rewrote, by output tensor, following a weighted layer through the activations a runtime
fuses into it (`layer_of`, built from the graph). A node the runtime left alone keeps its
own name and is its own op (an unfused Add is not its Conv's time).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from harness.tune_search import Recipe

if TYPE_CHECKING:
    from harness.config import TuneSettings

# the layers whose quantization buys time, and so the ones a tune may keep in float: ONNX
# op types, then TFLite's
WEIGHTED_OPS = (
    "Conv", "ConvTranspose", "Gemm", "MatMul",
    "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL",
)  # fmt: skip
# what onnxruntime fuses into the weighted layer before it (Conv+BN, Conv+Add, Conv+act)
FUSED_AFTER = frozenset(
    {"BatchNormalization", "Relu", "Clip", "Sigmoid", "HardSigmoid", "LeakyRelu", "Add"}
)  # (a TFLite converter fuses activations itself; benchmark_model names ops by output)
# the suffixes onnxruntime's layout transformers add to the name of a node they rewrite
RUNTIME_SUFFIXES = ("_nchwc",)

GraphNode = tuple[str, str, list[str], list[str]]  # name, op type, inputs, outputs


def whole_model_recipes(
    settings: TuneSettings, tflite_strategies: tuple[str, ...] | None = None
) -> tuple[list[Recipe], list[str]]:
    """The first recipes: each strategy of the search space on the whole model (int8-static
    at the first calibration method and granularity, each pruning ratio and low-rank
    energy); for a TFLite model (`tflite_strategies`: those its quantizer builds) the
    others are left out, and int8-static has no calibration method or granularity to set.
    Returns the recipes and the strategies left out."""
    recipes: list[Recipe] = []
    left_out: list[str] = []
    for strategy in settings.strategies:
        if tflite_strategies is not None and strategy not in tflite_strategies:
            left_out.append(strategy)
        elif strategy == "int8-static":
            params: dict[str, object] = {"calibration_samples": settings.calibration_samples}
            if tflite_strategies is None:
                params.update(
                    calibrate_method=settings.calibrate_methods[0],
                    per_channel=settings.per_channel[0],
                )
            recipes.append(Recipe(strategy, params, "whole model"))
        elif strategy == "prune-structured":
            recipes += [
                Recipe(strategy, {"ratio": r}, "whole model") for r in settings.prune_ratios
            ]
        elif strategy == "low-rank":
            recipes += [
                Recipe(strategy, {"energy": e}, "whole model") for e in settings.lowrank_energies
            ]
        else:
            recipes.append(Recipe(strategy, {}, "whole model"))
    return recipes, left_out


def layer_of(nodes: Iterable[GraphNode]) -> dict[str, str]:
    """Node and tensor names -> the weighted layer they belong to: the layer's own name and
    outputs, and the outputs of the activations fused into it (graph order)."""
    owner: dict[str, str] = {}
    for name, op_type, inputs, outputs in nodes:
        if op_type in WEIGHTED_OPS and name:
            owner[name] = name
            owner.update({tensor: name for tensor in outputs})
        elif op_type in FUSED_AFTER and inputs and inputs[0] in owner:
            owner.update({tensor: owner[inputs[0]] for tensor in outputs})
    return owner


def attribute_shares(
    profile: dict[str, float], owner: dict[str, str]
) -> tuple[dict[str, float], float]:
    """The profile's per-node shares of time summed per weighted layer, and the share of
    the profiled time that found its layer (the rest is other ops: pooling, reshapes,
    the runtime's reorders)."""
    shares: dict[str, float] = {}
    matched = 0.0
    for node, share in profile.items():
        tensor = _without_suffix(node)
        layer = node if owner.get(node) == node else owner.get(tensor) if tensor != node else None
        if layer is not None:
            shares[layer] = shares.get(layer, 0.0) + share
            matched += share
    return shares, matched


def _without_suffix(node: str) -> str:
    for suffix in RUNTIME_SUFFIXES:
        if node.endswith(suffix):
            return node[: -len(suffix)]
    return node


def revert_order(noise: dict[str, float], share: dict[str, float]) -> list[str]:
    """Layers in the order they go back to float: most quality lost per unit of time
    gained first (NNCF's ranking in spirit; `noise` is each layer's quantization noise at
    the outputs, quantized alone; `share` its share of fp32's time on the device)."""
    floor = min((s for s in share.values() if s > 0), default=1.0) / 2
    return sorted(noise, key=lambda n: (-noise[n] / max(share.get(n, floor), floor), n))


def revert_counts(layers: int, max_share: float) -> list[int]:
    """How many layers to keep in float, step by step: 1, 2, 4, ... up to the share."""
    limit = max(1, int(layers * max_share))
    counts, k = [], 1
    while k < limit:
        counts.append(k)
        k *= 2
    return [*counts, limit]


def between(failed: int, held: int) -> int | None:
    """The next count to try between one that failed and one that held (bisection)."""
    middle = (failed + held) // 2
    return middle if failed < middle < held else None
