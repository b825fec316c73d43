"""fp16: weights and compute in float16 (onnxconverter-common)."""

from __future__ import annotations

import warnings
from pathlib import Path

from harness.compress.base import BuildContext, Params, Strategy
from harness.jobs import VariantReport


class FP16Params(Params):
    keep_io_types: bool = True  # inputs/outputs stay float32, so callers need not change


def build(base: Path, out: Path, params: FP16Params, context: BuildContext) -> VariantReport:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(base))
    # the converter warns once per weight it clamps to fp16's range; count them instead
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(model, keep_io_types=params.keep_io_types)
    onnx.save(converted, str(out))
    clamped = sum("truncated" in str(w.message) for w in caught)
    return {
        "io_types": "float32" if params.keep_io_types else "float16",
        "weights_clamped_to_fp16_range": clamped,
    }


STRATEGY = Strategy("fp16", FP16Params, build, "weights and compute in float16")
