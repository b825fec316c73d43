"""int8 quantization through onnxruntime.quantization: dynamic, and static (QDQ)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.compress.base import (
    BuildContext,
    CompressionFailed,
    Params,
    Strategy,
    sample_inputs,
)
from harness.jobs import VariantReport


class DynamicParams(Params):
    weight_type: Literal["int8", "uint8"] = "int8"
    per_channel: bool = False


class StaticParams(Params):
    per_channel: bool = True
    calibrate_method: Literal["MinMax", "Entropy", "Percentile"] = "MinMax"
    calibration_samples: int = Field(default=64, ge=1, le=10_000)
    activation_type: Literal["int8", "uint8"] = "uint8"
    # mixed precision (what `harness tune` pins): these nodes stay in float ...
    nodes_to_exclude: tuple[str, ...] = ()
    # ... or only these are quantized (empty: every node onnxruntime can quantize)
    nodes_to_quantize: tuple[str, ...] = ()


def build_dynamic(
    base: Path, out: Path, params: DynamicParams, context: BuildContext
) -> VariantReport:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight = QuantType.QInt8 if params.weight_type == "int8" else QuantType.QUInt8
    quantize_dynamic(str(base), str(out), weight_type=weight, per_channel=params.per_channel)
    return {"weights": params.weight_type, "activations": "quantized at run time"}


def build_static(
    base: Path, out: Path, params: StaticParams, context: BuildContext
) -> VariantReport:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    samples, source = sample_inputs(base, context, params.calibration_samples)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(samples)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.remaining, None)

    activation = QuantType.QInt8 if params.activation_type == "int8" else QuantType.QUInt8
    _check_node_names(base, params.nodes_to_exclude + params.nodes_to_quantize)

    def quantize(per_channel: bool) -> None:
        with _without_preprocess_advice():
            quantize_static(
                str(base),  # prepared (harness/compress/prepare.py): quant_pre_process done
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=activation,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, params.calibrate_method),
                nodes_to_exclude=list(params.nodes_to_exclude) or None,
                nodes_to_quantize=list(params.nodes_to_quantize) or None,
            )

    report: VariantReport = {"format": "QDQ", "calibration": source}
    if params.nodes_to_exclude:
        report["kept_in_float"] = len(params.nodes_to_exclude)
    try:
        quantize(params.per_channel)
    except Exception as exc:
        if not params.per_channel:
            raise
        # per-channel fails inside onnxruntime on some real models ("The truth value of
        # an array ... is ambiguous") where per-tensor builds: build that, and say so
        quantize(False)
        report["per_channel"] = (
            f"per-channel failed ({type(exc).__name__}: {str(exc)[:160]}); built per-tensor"
        )
    return report


def _check_node_names(base: Path, names: tuple[str, ...]) -> None:
    """onnxruntime ignores a node name it does not know: a pinned recipe with a stale
    name would silently quantize what it meant to keep in float."""
    if not names:
        return
    import onnx

    known = {node.name for node in onnx.load(str(base), load_external_data=False).graph.node}
    unknown = sorted(set(names) - known)
    if unknown:
        raise CompressionFailed(
            f"the prepared model has no node(s) {unknown[:5]}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            + ": node names are those of the prepared base (harness tune lists them)"
        )


@contextmanager
def _without_preprocess_advice() -> Iterator[None]:
    """onnxruntime logs 'Please consider to run pre-processing' on the root logger even
    after quant_pre_process (it looks for a marker that the pre-processing it skips sets)."""

    def drop(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


DYNAMIC = Strategy(
    "int8-dynamic", DynamicParams, build_dynamic, "int8 weights, activations quantized at run time"
)
STATIC = Strategy(
    "int8-static",
    StaticParams,
    build_static,
    "int8 weights and activations (QDQ), calibrated",
    calibrated=True,
)
