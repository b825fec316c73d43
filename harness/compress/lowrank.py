"""Low-rank factorisation: a Gemm / MatMul / 1x1 Conv weight W becomes two thinner layers
from its truncated SVD, W ≈ (U_r S_r)(V_r^T), where that has fewer parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from harness.compress.base import (
    BuildContext,
    CompressionFailed,
    Params,
    Strategy,
    nested_count,
)
from harness.jobs import VariantReport


class LowRankParams(Params):
    rank: int | None = Field(default=None, ge=1)
    energy: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="keep the smallest rank holding this share of sum(S^2)",
    )

    @model_validator(mode="after")
    def _one_of(self) -> LowRankParams:
        if (self.rank is None) == (self.energy is None):
            raise ValueError("give exactly one of 'rank' or 'energy'")
        return self


def choose_rank(singular_values: np.ndarray, params: LowRankParams) -> int:
    if params.rank is not None:
        return min(params.rank, len(singular_values))
    assert params.energy is not None
    energy = np.cumsum(singular_values**2) / np.sum(singular_values**2)
    return int(np.searchsorted(energy, params.energy - 1e-12) + 1)


def build(base: Path, out: Path, params: LowRankParams, context: BuildContext) -> VariantReport:
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(base))
    graph = model.graph
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    factored, skipped = [], []
    new_nodes = []
    for node in graph.node:
        matrix = _weight_matrix(node, arrays, uses)
        if isinstance(matrix, str):
            if matrix:
                skipped.append({"layer": node.name or node.output[0], "reason": matrix})
            new_nodes.append(node)
            continue
        u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
        rank = choose_rank(s, params)
        rows, cols = matrix.shape
        if rank * (rows + cols) >= rows * cols:
            skipped.append(
                {
                    "layer": node.name or node.output[0],
                    "reason": f"rank {rank} saves nothing ({rows}x{cols})",
                }
            )
            new_nodes.append(node)
            continue
        first = (u[:, :rank] * s[:rank]).astype(np.float32)  # rows x r
        second = vt[:rank].astype(np.float32)  # r x cols
        new_nodes += _factor(node, first, second, arrays, helper, numpy_helper, graph)
        factored.append(
            {
                "layer": node.name or node.output[0],
                "shape": f"{rows}x{cols}",
                "rank": rank,
                "params": f"{rows * cols} -> {rank * (rows + cols)}",
            }
        )
    if not factored:
        nested = nested_count(graph, {"Gemm", "MatMul", "Conv"})
        inside = (
            f"; {nested} Gemm/MatMul/Conv layer(s) sit inside If/Loop/Scan subgraphs, which "
            "low-rank does not look into"
            if nested
            else ""
        )
        raise CompressionFailed(
            "no Gemm/MatMul/1x1-Conv weight of the main graph benefits from factorisation "
            "at these parameters"
            + (f" ({skipped[0]['layer']}: {skipped[0]['reason']})" if skipped else "")
            + inside
        )
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return {"factored": factored, "left_alone": skipped}


def _weight_matrix(
    node: Any, arrays: dict[str, np.ndarray], uses: dict[str, int]
) -> np.ndarray | str:
    """The layer's weight as an (in x out) matrix for x @ W, or why it is not factored
    ('' when the node has no weight at all)."""
    if node.op_type not in ("Gemm", "MatMul", "Conv") or len(node.input) < 2:
        return ""
    weight = arrays.get(node.input[1])
    if weight is None or uses.get(node.input[1], 0) != 1:
        return "weight is not a private initializer"
    attributes = {a.name: a for a in node.attribute}
    if node.op_type == "Gemm":
        if attributes.get("transA") and attributes["transA"].i:
            return "Gemm with transA"
        for name in ("alpha", "beta"):
            if name in attributes and attributes[name].f != 1.0:
                return f"Gemm with {name} != 1"
        return weight.T if attributes.get("transB") and attributes["transB"].i else weight
    if node.op_type == "MatMul":
        return weight if weight.ndim == 2 else "MatMul weight is not 2-D"
    if weight.ndim != 4 or weight.shape[2:] != (1, 1):
        return ""  # only 1x1 convolutions are matrices
    if "group" in attributes and attributes["group"].i != 1:
        return "grouped 1x1 conv"
    if "pads" in attributes and any(attributes["pads"].ints):
        return "padded 1x1 conv"
    return weight[:, :, 0, 0].T  # (in x out)


def _factor(
    node: Any,
    first: np.ndarray,
    second: np.ndarray,
    arrays: dict,
    helper: Any,
    numpy_helper: Any,
    graph: Any,
) -> list:
    """Two nodes computing x @ first @ second (+ bias) in place of `node`."""
    base = node.name or node.output[0]
    middle = f"{base}_lowrank_mid"
    a_name, b_name = f"{base}_lowrank_a", f"{base}_lowrank_b"
    if node.op_type == "Conv":
        a = first.T[:, :, None, None]  # r x in x 1 x 1
        b = second.T[:, :, None, None]  # out x r x 1 x 1
        strides = [a_ for a_ in node.attribute if a_.name == "strides"]
        graph.initializer.extend(
            [numpy_helper.from_array(a, a_name), numpy_helper.from_array(b, b_name)]
        )
        one = helper.make_node(
            "Conv", [node.input[0], a_name], [middle], name=f"{base}_lowrank_1", kernel_shape=[1, 1]
        )
        one.attribute.extend(strides)
        two = helper.make_node(
            "Conv",
            [middle, b_name, *node.input[2:]],
            list(node.output),
            name=f"{base}_lowrank_2",
            kernel_shape=[1, 1],
        )
        return [one, two]
    graph.initializer.extend(
        [numpy_helper.from_array(first, a_name), numpy_helper.from_array(second, b_name)]
    )
    one = helper.make_node("MatMul", [node.input[0], a_name], [middle], name=f"{base}_lowrank_1")
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
        two = helper.make_node(
            "Gemm", [middle, b_name, node.input[2]], list(node.output), name=f"{base}_lowrank_2"
        )
    else:
        two = helper.make_node(
            "MatMul", [middle, b_name], list(node.output), name=f"{base}_lowrank_2"
        )
    return [one, two]


STRATEGY = Strategy("low-rank", LowRankParams, build, "SVD factorisation of Gemm/MatMul/1x1 Conv")
