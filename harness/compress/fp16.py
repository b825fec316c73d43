"""fp16: weights and compute in float16 (onnxconverter-common)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from harness.compress.base import BuildContext, CompressionFailed, Params, Strategy
from harness.jobs import VariantReport


class FP16Params(Params):
    keep_io_types: bool = True  # inputs/outputs stay float32, so callers need not change
    node_block_list: tuple[str, ...] = ()  # nodes kept in float32 (mixed precision)


MAX_RETRIES = 8  # conversions retried with the nodes onnxruntime refused kept in float32
# onnxruntime's load error names the node whose types do not match: "... of node (NAME) ..."
_REFUSED_NODE = re.compile(r"node \(([^)]+)\)|Node \(([^)]+)\)|node ([\w./:-]+) ")


def build(base: Path, out: Path, params: FP16Params, context: BuildContext) -> VariantReport:
    """Convert; where onnxruntime refuses the result at load (a `Cast` to float that the
    converter left typed float16, seen on two real models), convert again with the node
    it names in `node_block_list`, and say which nodes stayed float32."""
    import onnx
    import onnxruntime as ort
    from onnxconverter_common import float16

    blocked: list[str] = list(params.node_block_list)
    for _ in range(MAX_RETRIES + 1):
        model = onnx.load(str(base))
        # the converter warns once per weight it clamps to fp16's range; count them instead
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            converted = float16.convert_float_to_float16(
                model, keep_io_types=params.keep_io_types, node_block_list=blocked or None
            )
        onnx.save(converted, str(out))
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
            break
        except Exception as exc:  # noqa: BLE001 -- the runtime's own refusal, read for a node
            match = _REFUSED_NODE.search(str(exc))
            node = next((g for g in match.groups() if g), None) if match else None
            if node is None or node in blocked:
                raise CompressionFailed(
                    "onnxruntime refuses the float16 model: "
                    f"{type(exc).__name__}: {str(exc).replace(str(out), out.name)[:300]}"
                    + (f" (already kept in float32: {blocked})" if blocked else "")
                ) from None
            blocked.append(node)
    else:
        raise CompressionFailed(f"onnxruntime still refuses it with {blocked} kept in float32")
    clamped = sum("truncated" in str(w.message) for w in caught)
    return {
        "io_types": "float32" if params.keep_io_types else "float16",
        "weights_clamped_to_fp16_range": clamped,
        **({"kept_in_float32": blocked} if blocked else {}),
    }


STRATEGY = Strategy("fp16", FP16Params, build, "weights and compute in float16")
