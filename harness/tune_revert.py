"""Which layers a tune puts back in float, and in what order (pure: data in, data out).

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

# the layers whose quantization buys time, and so the ones a tune may keep in float
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# what onnxruntime fuses into the weighted layer before it (Conv+BN, Conv+Add, Conv+act)
FUSED_AFTER = frozenset(
    {"BatchNormalization", "Relu", "Clip", "Sigmoid", "HardSigmoid", "LeakyRelu", "Add"}
)
# the suffixes onnxruntime's layout transformers add to the name of a node they rewrite
RUNTIME_SUFFIXES = ("_nchwc",)

GraphNode = tuple[str, str, list[str], list[str]]  # name, op type, inputs, outputs


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
