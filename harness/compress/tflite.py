"""Quantization of TFLite models through ai-edge-quantizer (Google's quantizer for LiteRT
models; it needs ai-edge-litert, not TensorFlow): fp16 weights, int8 weight-only,
dynamic-range int8, and full-integer int8 calibrated on sample inputs.

The same strategy names as for ONNX models (`fp16`, `int8-dynamic`, `int8-static`) pick
these builds for a `.tflite` base; `int8-weight-only` is TFLite's own. Like every variant,
the result is verified (harness/compress/verify.py) before it counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from harness.compress.base import BuildContext, CompressionFailed, Params, sample_inputs
from harness.jobs import VariantReport

FORMATS = ("tflite",)


class TFLiteParams(Params):
    calibration_samples: int = Field(default=32, ge=1, le=10_000)  # int8-static only
    # int8-static only, ops named by their first output tensor (as benchmark_model's op
    # profile names them): kept in float (mixed precision), or the only ones quantized
    nodes_to_exclude: tuple[str, ...] = ()
    nodes_to_quantize: tuple[str, ...] = ()


def build(
    strategy: str, base: Path, out: Path, params: Any, context: BuildContext
) -> VariantReport:
    """`strategy` applied to the TFLite model `base`, written to `out`."""
    from ai_edge_quantizer import quantizer, recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    what: dict[str, Any]
    if strategy == "fp16":
        manager = recipe_manager.RecipeManager()
        manager.add_weight_only_config(
            regex=".*",
            operation_name=TFLOperationName.ALL_SUPPORTED,
            num_bits=16,
            algorithm_key=AlgorithmName.FLOAT_CASTING,
        )
        chosen, what = manager.get_quantization_recipe(), {"weights": "float16"}
    elif strategy == "int8-weight-only":
        chosen, what = recipe.weight_only_wi8_afp32(), {"weights": "int8", "compute": "float"}
    elif strategy == "int8-dynamic":
        chosen, what = recipe.dynamic_wi8_afp32(), {"weights": "int8", "activations": "dynamic"}
    elif strategy == "int8-static":
        chosen = _static_recipe(base, params.nodes_to_exclude, params.nodes_to_quantize)
        what = {"weights": "int8", "activations": "int8"}
        if params.nodes_to_exclude:
            what["kept_in_float"] = len(params.nodes_to_exclude)
    else:
        raise CompressionFailed(f"'{strategy}' works on ONNX models, not on TFLite ones")
    model = quantizer.Quantizer(str(base), chosen)
    calibration = None
    if model.need_calibration or strategy == "int8-static":  # a per-op recipe says no
        signatures = _signatures(base)
        if not signatures:
            raise CompressionFailed(
                "full-integer int8 calibrates through the model's signature and this TFLite "
                "model has none (older converters wrote none): re-export it with a "
                "signature, or use int8-dynamic / int8-weight-only"
            )
        samples, source = sample_inputs(base, context, params.calibration_samples)
        calibration = model.calibrate({signatures[0]: _by_signature(base, signatures[0], samples)})
        what["calibration"] = source
    result = model.quantize(calibration, enable_progress_bar=False, enable_progress_report=False)
    result.export_model(str(out), overwrite=True)
    return {"tool": "ai-edge-quantizer", **what}


def op_names(path: Path) -> list[tuple[str, str, list[str], list[str]]]:
    """The model's ops in order, each named by its first output tensor: name, op type
    (CONV_2D, ...), input and output tensor names."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]

    def tensor(index: int) -> str:
        return "" if index < 0 else _text(graph.tensors[index].name)

    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        op_type = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        outputs = [tensor(int(i)) for i in op.outputs]
        ops.append((outputs[0] if outputs else "", op_type,
                    [tensor(int(i)) for i in op.inputs], outputs))  # fmt: skip
    return ops


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def _static_recipe(base: Path, exclude: tuple[str, ...], only: tuple[str, ...]) -> Any:
    """Full-integer int8 for every supported op, but for the ops kept in float (or for
    the listed ops alone). ai-edge-quantizer matches a rule's regex against an op's scope,
    its output tensors' names each followed by ';' (tfl_flatbuffer_utils.get_op_scope)."""
    import re

    from ai_edge_quantizer import recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    known = {name for name, _, _, _ in op_names(base)}
    unknown = sorted(set(exclude + only) - known)
    if unknown:
        raise CompressionFailed(
            f"no op of {base.name} writes {', '.join(map(repr, unknown[:5]))} (ops are named by "
            "their first output tensor): a stale node list keeps nothing in float"
        )
    manager = recipe_manager.RecipeManager()
    for regex in [f"^{re.escape(n)};" for n in only] or [".*"]:
        manager.add_static_config(
            regex=regex, operation_name=TFLOperationName.ALL_SUPPORTED,
            activation_num_bits=8, weight_num_bits=8,
        )  # fmt: skip
    for name in exclude:  # later rules take precedence (RecipeManager)
        manager.add_quantization_config(
            regex=f"^{re.escape(name)};", operation_name=TFLOperationName.ALL_SUPPORTED,
            algorithm_key=AlgorithmName.NO_QUANTIZE,
        )  # fmt: skip
    return manager.get_quantization_recipe()


def _by_signature(path: Path, key: str, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Samples keyed by the signature's input names (which need not be the tensors')."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensor_index = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    details = interpreter.get_signature_runner(key).get_input_details()
    signature_name = {d["index"]: name for name, d in details.items()}
    return [{signature_name[tensor_index[k]]: v for k, v in s.items()} for s in samples]


def _signatures(path: Path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return list(Interpreter(model_path=str(path)).get_signature_list())
