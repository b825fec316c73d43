"""Pruning: unstructured (zero the smallest weights) and structured (remove conv channels)."""

from __future__ import annotations

import gzip
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness.compress.base import (
    BuildContext,
    CompressionFailed,
    Params,
    Strategy,
    nested_count,
)
from harness.jobs import VariantReport

WEIGHT_OPS = {"Conv": 1, "Gemm": 1, "MatMul": 1, "ConvTranspose": 1}
# Ops that keep channel c of their input in channel c of their output and nothing else.
CHANNEL_WISE = {
    "Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Identity",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Dropout",
}  # fmt: skip


class UnstructuredParams(Params):
    sparsity: float = Field(default=0.5, gt=0, lt=1)
    scope: Literal["layer", "global"] = "layer"


class StructuredParams(Params):
    ratio: float = Field(default=0.25, gt=0, lt=1, description="fraction of channels removed")


# --------------------------------------------------------------------------- unstructured


def build_unstructured(
    base: Path, out: Path, params: UnstructuredParams, context: BuildContext
) -> VariantReport:
    """Magnitude pruning: zero the |w| below the threshold that reaches `sparsity`, per
    layer or over all layers at once. The file stays dense (same size); what shrinks is its
    compressed size, reported as gzip bytes."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(base))
    initializers = {i.name: i for i in model.graph.initializer}
    names = sorted(
        {
            node.input[WEIGHT_OPS[node.op_type]]
            for node in model.graph.node
            if node.op_type in WEIGHT_OPS
            and len(node.input) > WEIGHT_OPS[node.op_type]
            and node.input[WEIGHT_OPS[node.op_type]] in initializers
        }
    )
    weights = {n: numpy_helper.to_array(initializers[n]) for n in names}
    weights = {n: w for n, w in weights.items() if w.ndim >= 2 and w.dtype.kind == "f"}
    if not weights:
        nested = nested_count(model.graph, WEIGHT_OPS)
        raise CompressionFailed(
            "no Conv/Gemm/MatMul weight initializers to prune"
            + (
                f" in the main graph ({nested} inside If/Loop subgraphs, which it does not edit)"
                if nested
                else ""
            )  # fmt: skip
        )
    if params.scope == "global":
        everything = np.concatenate([np.abs(w).ravel() for w in weights.values()])
        threshold = np.quantile(everything, params.sparsity)
        thresholds = dict.fromkeys(weights, threshold)
    else:
        thresholds = {n: np.quantile(np.abs(w), params.sparsity) for n, w in weights.items()}
    layers = {}
    zeros = total = 0
    for name, weight in weights.items():
        pruned = np.where(np.abs(weight) <= thresholds[name], 0, weight).astype(weight.dtype)
        initializers[name].CopyFrom(numpy_helper.from_array(pruned, name))
        layer_zeros = int((pruned == 0).sum())
        layers[name] = round(layer_zeros / pruned.size, 4)
        zeros += layer_zeros
        total += pruned.size
    onnx.save(model, str(out))
    return {
        "sparsity": round(zeros / total, 4),
        "layer_sparsity": layers,
        "gzip_bytes": len(gzip.compress(out.read_bytes(), compresslevel=9)),
        "base_gzip_bytes": len(gzip.compress(base.read_bytes(), compresslevel=9)),
    }


# --------------------------------------------------------------------------- structured


class _Unsafe(Exception):
    """This conv's output channels cannot be removed without changing the graph's meaning."""


def build_structured(
    base: Path, out: Path, params: StructuredParams, context: BuildContext
) -> VariantReport:
    """Remove the output channels of each prunable Conv with the smallest L1 norm, and the
    matching input channels downstream. A Conv is prunable when its output reaches, through
    channel-wise ops (activations, pooling, BatchNormalization, depthwise convs), only Convs,
    or a global pool + Flatten + Gemm. Anything else (Add, Concat, a graph output) leaves
    the layer alone, and the report lists it with the reason."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(base))
    graph = model.graph
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    uses: dict[str, int] = defaultdict(int)
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            uses[name] += 1
            consumers[name].append(node)
    outputs = {o.name for o in graph.output}
    params_before = sum(a.size for a in arrays.values())
    pruned, skipped = [], []
    for node in list(graph.node):
        if node.op_type != "Conv" or _attr(node, "group", 1) != 1:
            continue
        label = node.name or node.output[0]
        weight_name = node.input[1]
        if weight_name not in arrays or uses[weight_name] != 1:
            skipped.append({"layer": label, "reason": "weight is not a private initializer"})
            continue
        channels = arrays[weight_name].shape[0]
        keep_count = max(1, round(channels * (1 - params.ratio)))
        if keep_count == channels:
            continue
        try:
            edits = _downstream(
                node.output[0], consumers, outputs, arrays, uses, after_global_pool=False
            )
        except _Unsafe as reason:
            skipped.append({"layer": label, "reason": str(reason)})
            continue
        l1 = np.abs(arrays[weight_name]).reshape(channels, -1).sum(axis=1)
        keep = np.sort(np.argsort(l1)[-keep_count:])
        arrays[weight_name] = arrays[weight_name][keep]
        if len(node.input) > 2 and node.input[2]:
            arrays[node.input[2]] = arrays[node.input[2]][keep]
        for kind, target in edits:
            _apply(kind, target, keep, arrays)
        pruned.append({"layer": label, "channels": f"{channels} -> {keep_count}"})
    if not pruned:
        convs = sum(1 for node in graph.node if node.op_type == "Conv")
        nested = nested_count(graph, {"Conv"})
        why = "; ".join(f"{s['layer']}: {s['reason']}" for s in skipped[:5]) or (
            f"the main graph has {convs} Conv(s) with group = 1"
            + (
                f" ({nested} more inside If/Loop subgraphs, which it does not edit)"
                if nested
                else ""
            )
        )
        others = sum(1 for node in graph.node if node.op_type in ("Gemm", "MatMul"))
        if not convs and others:
            why += (
                f"; it removes Conv output channels only, and this model's {others} "
                "Gemm/MatMul layer(s) are for prune-unstructured or low-rank"
            )
        raise CompressionFailed(f"no Conv could be pruned safely: {why}")
    for initializer in graph.initializer:
        initializer.CopyFrom(numpy_helper.from_array(arrays[initializer.name], initializer.name))
    del graph.value_info[:]  # stale shapes; onnx shape inference recomputes them
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return {
        "pruned_layers": pruned,
        "left_alone": skipped,
        "params_before": int(params_before),
        "params_after": int(sum(a.size for a in arrays.values())),
    }


def _downstream(
    tensor: str,
    consumers: dict[str, list[Any]],
    outputs: set[str],
    arrays: dict[str, np.ndarray],
    uses: dict[str, int],
    after_global_pool: bool,
) -> list[tuple[str, Any]]:
    """The edits that removing channels of `tensor` needs downstream, or _Unsafe."""
    if tensor in outputs:
        raise _Unsafe("its output is a graph output")
    edits: list[tuple[str, Any]] = []
    for node in consumers[tensor]:
        if _swish(node, tensor, consumers):  # x * sigmoid(x): channel-wise as a whole
            if node.op_type == "Mul":
                edits += _downstream(
                    node.output[0], consumers, outputs, arrays, uses, after_global_pool
                )
            continue
        if node.input[0] != tensor:
            raise _Unsafe(f"feeds {node.op_type} '{node.name}' as a parameter")
        op = node.op_type
        if op in CHANNEL_WISE or (op == "Pad" and _pads_spatial_only(node, arrays)):
            pool = op.startswith("Global")
            edits += _downstream(
                node.output[0], consumers, outputs, arrays, uses, after_global_pool or pool
            )
        elif op == "BatchNormalization":
            _private(node.input[1:5], uses, arrays, node)
            edits.append(("bn", node))
            edits += _downstream(
                node.output[0], consumers, outputs, arrays, uses, after_global_pool
            )
        elif op == "Conv" and _attr(node, "group", 1) == 1:
            _private(node.input[1:2], uses, arrays, node)
            edits.append(("conv-in", node))
        elif (
            op == "Conv"
            and arrays.get(node.input[1]) is not None
            and arrays[node.input[1]].shape[1] == 1
        ):
            _private(node.input[1:3], uses, arrays, node)
            edits.append(("depthwise", node))
            edits += _downstream(
                node.output[0], consumers, outputs, arrays, uses, after_global_pool
            )
        elif op == "Flatten" and after_global_pool:
            for gemm in consumers[node.output[0]]:
                if gemm.op_type != "Gemm" or gemm.input[0] != node.output[0]:
                    raise _Unsafe(f"flattened features feed {gemm.op_type}")
                _private(gemm.input[1:2], uses, arrays, gemm)
                edits.append(("gemm-in", gemm))
            if node.output[0] in outputs:
                raise _Unsafe("its flattened output is a graph output")
        else:
            raise _Unsafe(f"feeds {op} '{node.name}', which needs its channel count unchanged")
    return edits


def _swish(node: Any, tensor: str, consumers: dict[str, list[Any]]) -> bool:
    """`node` is the Sigmoid or the Mul of SiLU/Swish, x * sigmoid(x), applied to `tensor`."""
    if node.op_type == "Mul" and len(node.input) == 2 and tensor in node.input:
        other = node.input[1] if node.input[0] == tensor else node.input[0]
        return any(s.op_type == "Sigmoid" and s.output[0] == other for s in consumers[tensor])
    if node.op_type == "Sigmoid" and node.input[0] == tensor:
        users = consumers[node.output[0]]
        return len(users) == 1 and _swish(users[0], tensor, consumers)
    return False


def _pads_spatial_only(node: Any, arrays: dict[str, np.ndarray]) -> bool:
    """A Pad that leaves the batch and channel axes alone (its pads known, no `axes`):
    TF's "SAME" padding, channel-wise like an activation."""
    if len(node.input) > 3 and node.input[3]:
        return False
    if len(node.input) > 1 and node.input[1]:
        pads = arrays.get(node.input[1])
        if pads is None:
            return False
        values = [int(v) for v in pads.ravel()]
    else:
        values = next((list(a.ints) for a in node.attribute if a.name == "pads"), [])
    rank = len(values) // 2
    return rank >= 2 and not any(values[i] for i in (0, 1, rank, rank + 1))


def _private(names: Any, uses: dict[str, int], arrays: dict[str, np.ndarray], node: Any) -> None:
    for name in names:
        if name and (name not in arrays or uses[name] != 1):
            raise _Unsafe(f"{node.op_type} '{node.name}' has shared or computed parameters")


def _apply(kind: str, node: Any, keep: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
    if kind == "bn":
        for name in node.input[1:5]:
            arrays[name] = arrays[name][keep]
    elif kind == "conv-in":
        arrays[node.input[1]] = arrays[node.input[1]][:, keep]
    elif kind == "depthwise":
        arrays[node.input[1]] = arrays[node.input[1]][keep]
        if len(node.input) > 2 and node.input[2]:
            arrays[node.input[2]] = arrays[node.input[2]][keep]
        for attribute in node.attribute:
            if attribute.name == "group":
                attribute.i = len(keep)
    elif kind == "gemm-in":
        trans_b = _attr(node, "transB", 0)
        weight = arrays[node.input[1]]
        arrays[node.input[1]] = weight[:, keep] if trans_b else weight[keep]


def _attr(node: Any, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


UNSTRUCTURED = Strategy(
    "prune-unstructured", UnstructuredParams, build_unstructured, "magnitude pruning to a sparsity"
)
STRUCTURED = Strategy(
    "prune-structured", StructuredParams, build_structured, "remove conv channels by L1 norm"
)
