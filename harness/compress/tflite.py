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


def build(
    strategy: str, base: Path, out: Path, params: Any, context: BuildContext
) -> VariantReport:
    """`strategy` applied to the TFLite model `base`, written to `out`."""
    from ai_edge_quantizer import quantizer, recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

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
        chosen, what = recipe.static_wi8_ai8(), {"weights": "int8", "activations": "int8"}
    else:
        raise CompressionFailed(f"'{strategy}' works on ONNX models, not on TFLite ones")
    model = quantizer.Quantizer(str(base), chosen)
    calibration = None
    if model.need_calibration:
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
