"""Every built variant is checked on the controller before it counts: it loads, runs one
inference at the plan's shapes, and differs from its base in what its strategy claims.

A quantizer that found nothing to quantize, or a pruner whose layers were all skipped,
still writes a file; benchmarking it would show noise as a speed-up. Such a variant is
`NoEffect`, recorded with the counts that show it, and never measured as a variant.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from harness.compress.base import CompressionFailed, all_graphs

QUANTIZED_OPS = {
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
    "ConvInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul",
    "DynamicQuantizeLSTM", "QAttention", "QGemm",
}  # fmt: skip
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


class NoEffect(CompressionFailed):
    """The strategy ran and changed nothing it claims to change."""


def model_counts(path: Path) -> dict[str, Any]:
    """What the strategies change, counted over the graph and its subgraphs."""
    if path.suffix == ".tflite":
        return _tflite_counts(path)
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    ops: Counter[str] = Counter()
    tensors = []
    for graph in all_graphs(model.graph):
        ops.update(node.op_type for node in graph.node)
        tensors.extend(graph.initializer)
    by_type: Counter[str] = Counter()
    zeros = parameters = 0
    for tensor in tensors:
        array = numpy_helper.to_array(tensor)
        by_type[str(array.dtype)] += 1
        if array.ndim >= 2 and array.dtype.kind == "f":
            parameters += int(array.size)
            zeros += int(np.count_nonzero(array == 0))
    main_graph_ops = Counter(node.op_type for node in model.graph.node)
    return {
        "ops": sum(ops.values()),
        "control_flow_ops": sum(main_graph_ops[op] for op in ("If", "Loop", "Scan")),
        "weight_ops": sum(ops[op] for op in WEIGHT_OPS),
        "quantized_ops": sum(ops[op] for op in QUANTIZED_OPS),
        "int8_tensors": by_type["int8"] + by_type["uint8"],
        "fp16_tensors": by_type["float16"],
        "float_weight_parameters": parameters,
        "zero_weights": zeros,
    }


def _tflite_counts(path: Path) -> dict[str, Any]:
    """A TFLite model's tensors by type, as LiteRT reads them."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    kinds = Counter(str(np.dtype(d["dtype"])) for d in details)
    return {
        "format": "tflite",
        "ops": len(details),  # tensors: LiteRT lists no ops before allocation
        "weight_ops": 0,
        "control_flow_ops": 0,
        "quantized_ops": kinds["int8"] + kinds["uint8"],
        "int8_tensors": kinds["int8"] + kinds["uint8"],
        "fp16_tensors": kinds["float16"],
        "float_weight_parameters": 0,
        "zero_weights": 0,
    }


def already_quantized(strategy: str, base: dict[str, Any]) -> None:
    """NoEffect before an int8 strategy touches a model that is int8 already: checked
    before calibrating, where ai-edge-quantizer segfaulted on a pre-quantized streaming
    model with resource variables."""
    if not strategy.startswith("int8"):
        return
    if base.get("format") == "tflite":
        already = base["int8_tensors"] * 2 >= base["ops"] > 0
    else:
        # every float Conv/Gemm/MatMul left has its int8 tensor (QDQ), or none is left
        already = base["quantized_ops"] > 0 and base["int8_tensors"] >= base["weight_ops"]
    if already:
        raise NoEffect(
            f"no effect: the model is int8 already ({base['int8_tensors']} int8 tensors, "
            f"{base['quantized_ops']} quantized op(s)); {strategy} would only requantize it"
        )


def effect(strategy: str, base: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    """The change the strategy claims, from the counts of base and variant; NoEffect when
    there is none."""
    if base.get("format") == "tflite" and strategy.startswith("int8"):
        changed = variant["int8_tensors"] - base["int8_tensors"]
        claim = f"{changed} int8 tensor(s) added"
        why = "ai-edge-quantizer quantized no tensor"
    elif strategy in ("int8-dynamic", "int8-static"):
        changed = variant["quantized_ops"] - base["quantized_ops"]
        claim = f"{changed} quantize/integer op(s) added, {variant['int8_tensors']} int8 tensors"
        why = "onnxruntime.quantization quantized no op"
    elif strategy == "fp16":
        changed = variant["fp16_tensors"] - base["fp16_tensors"]
        claim = f"{changed} tensor(s) stored as float16"
        why = "no tensor was converted to float16"
    elif strategy == "prune-unstructured":
        changed = variant["zero_weights"] - base["zero_weights"]
        claim = f"{changed} weight(s) zeroed of {base['float_weight_parameters']}"
        why = "no weight was zeroed"
    elif strategy == "prune-structured":
        changed = base["float_weight_parameters"] - variant["float_weight_parameters"]
        claim = f"{changed} weight parameter(s) removed with their channels"
        why = "no channel was removed"
    elif strategy == "low-rank":
        changed = variant["weight_ops"] - base["weight_ops"]
        saved = base["float_weight_parameters"] - variant["float_weight_parameters"]
        claim = f"{changed} layer(s) factored, {saved} weight parameter(s) fewer"
        why = "no layer was factored"
    else:
        return {}
    if changed <= 0 and base.get("format") == "tflite":
        raise NoEffect(
            f"no effect: {why} (the model already has {base['fp16_tensors']} float16 and "
            f"{base['int8_tensors']} int8 tensors of {base['ops']})"
        )
    if changed <= 0:
        nested = " (inside If/Loop subgraphs)" if base["control_flow_ops"] else ""
        raise NoEffect(
            f"no effect: {why} (the model has {base['weight_ops']} Conv/Gemm/MatMul op(s){nested} "
            f"and {base['float_weight_parameters']} float weight parameters; the variant "
            f"file is {variant['ops']} ops against {base['ops']})"
        )
    return {"claim": claim, "changed": changed, "base": base, "variant": variant}


def runs_once(
    path: Path, feed: dict[str, Any], control_flow: bool = False, inputs_hint: str = ""
) -> None:
    """One inference with onnxruntime (or LiteRT) on the controller, at the plan's shapes.
    `inputs_hint` ends the error: which seeded inputs may be the cause."""
    if path.suffix == ".tflite":
        from harness.runner.runtimes import TFLiteSession

        try:
            session = TFLiteSession(str(path), "xnnpack", 1)
            session.set_inputs(feed)
            session.infer_callable()()
        except Exception as exc:
            raise CompressionFailed(
                f"built, but LiteRT cannot run it: {type(exc).__name__}: {str(exc)[:400]}"
                f"{inputs_hint}"
            ) from exc
        return
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, feed)
    except Exception as exc:
        hint = (
            "the model has control flow (If/Loop/Scan) and the strategy did not convert its "
            "subgraphs consistently; "
            if control_flow
            else ""
        )
        raise CompressionFailed(
            f"built, but it does not run on the controller's onnxruntime: {hint}"
            f"{type(exc).__name__}: {str(exc)[:400]}{inputs_hint}"
        ) from exc
