"""The base model as every strategy receives it: prepared once, cached by its content.

ONNX: exporters such as paddle2onnx and older torch.onnx write weights as `Constant` nodes
and target opset 11-12, while the strategies look for initializers and per-channel QDQ
needs opset 13. So before any strategy the base goes through onnxruntime's own
quantization pre-processing, `quant_pre_process` (ORT's basic graph optimizations: Constant
nodes become initializers, constant subgraphs are folded, Conv+BatchNormalization fused;
then ONNX shape inference), and `onnx.version_converter` up to opset 13 where it is older.
Chosen over a separate simplifier (onnxslim, onnxsim): it is the pre-processing
onnxruntime.quantization itself asks for, and both tools are dependencies already.

TFLite: old files' operator codes are made readable to ai-edge-quantizer
(`_prepare_tflite`).

The user's file is never touched; the fp32 variant is always the file as given.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.compress.base import CompressionFailed, all_graphs

PREPARE_VERSION = "1"  # bump when the preparation's output changes for the same input
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (`axis`) needs it


@dataclass(frozen=True)
class PreparedBase:
    path: Path
    report: dict[str, Any]  # what preparing changed: constants folded, opset, ops


def prepare_base(base: Path, folder: Path, base_sha256: str, tools: dict[str, Any]) -> PreparedBase:
    """The prepared base in `folder`, from the cache when its key matches."""
    payload = json.dumps(
        {"base": base_sha256, "tools": tools, "v": PREPARE_VERSION}, sort_keys=True
    )
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    target = folder / f"prepared-{key}{base.suffix}"
    report_path = target.with_suffix(".json")
    if target.is_file() and report_path.is_file():
        return PreparedBase(target, json.loads(report_path.read_text()))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        out = Path(tmp) / target.name
        if base.suffix == ".tflite":
            report = _prepare_tflite(base, out)
        else:
            report = _prepare(base, out, Path(tmp))
        report_tmp = Path(tmp) / "report.json"
        report_tmp.write_text(json.dumps(report, indent=1))
        os.replace(out, target)
        os.replace(report_tmp, report_path)
    return PreparedBase(target, report)


def _prepare(base: Path, out: Path, scratch: Path) -> dict[str, Any]:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    original = onnx.load(str(base))
    before = Counter(node.op_type for node in original.graph.node)
    optimized = scratch / "optimized.onnx"
    try:
        # symbolic shape inference needs sympy and matters for transformers, not for CNNs
        quant_pre_process(str(base), str(optimized), skip_symbolic_shape=True)
    except Exception as exc:  # the optimizer's own reason: no strategy can start from it
        raise CompressionFailed(
            f"onnxruntime cannot prepare {base.name} for compression "
            f"(quant_pre_process): {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    model = onnx.load(str(optimized))
    _drop_unused_opset_imports(model)
    opset_before = _default_opset(model)
    notes = []
    if opset_before < MIN_OPSET:
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:  # left at its opset: per-channel int8 will say so
            notes.append(
                f"opset {opset_before} could not be converted to {MIN_OPSET} "
                f"({type(exc).__name__}: {str(exc)[:200]}); per-channel int8 needs {MIN_OPSET}"
            )
    onnx.save(model, str(out))
    after = Counter(node.op_type for node in model.graph.node)
    return {
        "tool": "onnxruntime.quantization.quant_pre_process + onnx.version_converter",
        "constants_folded": before.get("Constant", 0) - after.get("Constant", 0),
        "initializers": len(model.graph.initializer),
        "opset": [_default_opset(original), _default_opset(model)],
        "nodes": [sum(before.values()), sum(after.values())],
        "fused_batch_norms": before.get("BatchNormalization", 0)
        - after.get("BatchNormalization", 0),
        "notes": notes,
    }


def _prepare_tflite(base: Path, out: Path) -> dict[str, Any]:
    """Files written before TFLite schema 3a keep each op in `deprecated_builtin_code` and
    leave `builtin_code` 0 (ADD); the schema reads the larger of the two, ai-edge-quantizer
    reads only `builtin_code` and so saw no conv to quantize. Both fields made agree."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(base))
    fixed = 0
    for code in model.operatorCodes:
        if code.builtinCode < code.deprecatedBuiltinCode:
            code.builtinCode = code.deprecatedBuiltinCode
            fixed += 1
    flatbuffer_utils.write_model(model, str(out))
    return {"tool": "ai_edge_litert.tools.flatbuffer_utils", "operator_codes_fixed": fixed}


def _default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _drop_unused_opset_imports(model: Any) -> None:
    """The optimizer declares every domain it knows (com.microsoft, ai.onnx.training, ...);
    a model that declares domains it does not use can fail to load elsewhere."""
    used = {""} | {node.domain for graph in all_graphs(model.graph) for node in graph.node}
    kept = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(kept)
