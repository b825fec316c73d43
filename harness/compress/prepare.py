"""The base model as every strategy receives it: prepared once, cached by its content.

ONNX: exporters such as paddle2onnx and older torch.onnx write weights as `Constant` nodes
and target opset 11-12, while the strategies look for initializers and per-channel QDQ
needs opset 13. So before any strategy the base goes through onnxruntime's own
quantization pre-processing, `quant_pre_process` (ORT's basic graph optimizations: Constant
nodes become initializers, constant subgraphs are folded, Conv+BatchNormalization fused;
then ONNX shape inference), and `onnx.version_converter` up to opset 13 where it is older.
Chosen over a separate simplifier (onnxslim, onnxsim): it is the pre-processing
onnxruntime.quantization itself asks for, and both tools are dependencies already.

TFLite: old files' operator codes are made readable to ai-edge-quantizer, weights stored
as float16 behind DEQUANTIZE ops become float32 constants (`_unfold_float16_weights`), and a file
written without a signature (older converters wrote none) gets one, `serving_default`,
naming the subgraph's inputs and outputs: full-integer int8 calibrates through a signature
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
from harness.jobs import VariantReport

PREPARE_VERSION = "2"  # bump when the preparation's output changes for the same input
DEFAULT_SIGNATURE = "serving_default"  # the key TensorFlow's converter writes
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (`axis`) needs it


@dataclass(frozen=True)
class PreparedBase:
    path: Path
    report: VariantReport  # what preparing changed: constants folded, opset, ops


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


def _prepare(base: Path, out: Path, scratch: Path) -> VariantReport:
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


def _prepare_tflite(base: Path, out: Path) -> VariantReport:
    """Files written before TFLite schema 3a keep each op in `deprecated_builtin_code` and
    leave `builtin_code` 0 (ADD); the schema reads the larger of the two, ai-edge-quantizer
    reads only `builtin_code` and so saw no conv to quantize. Both fields made agree."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(base))
    fixed = 0
    for code in model.operatorCodes:
        if code.builtinCode < code.deprecatedBuiltinCode:
            code.builtinCode = code.deprecatedBuiltinCode
            fixed += 1
    unfolded = _unfold_float16_weights(model, schema)
    signature_added = not model.signatureDefs and len(model.subgraphs) == 1
    if signature_added:
        graph = model.subgraphs[0]

        def tensor_map(index: int) -> Any:
            entry = schema.TensorMapT()
            entry.name, entry.tensorIndex = graph.tensors[index].name, int(index)
            return entry

        signature = schema.SignatureDefT()
        signature.signatureKey, signature.subgraphIndex = DEFAULT_SIGNATURE, 0
        signature.inputs = [tensor_map(i) for i in graph.inputs]
        signature.outputs = [tensor_map(i) for i in graph.outputs]
        model.signatureDefs = [signature]
    flatbuffer_utils.write_model(model, str(out))
    return {
        "tool": "ai_edge_litert.tools.flatbuffer_utils",
        "operator_codes_fixed": fixed,
        "float16_weights_unfolded": unfolded,
        "signature_added": DEFAULT_SIGNATURE if signature_added else None,
    }


def _unfold_float16_weights(model: Any, schema: Any) -> int:
    """MediaPipe and TensorFlow's fp16 export keep each weight as float16 behind a
    DEQUANTIZE op; ai-edge-quantizer quantizes only constant float32 weights (and fails on
    a bias that is an op's output). Each such weight becomes the float32 constant the op
    computed, the op removed, the float16 copy emptied. Returns how many."""
    import numpy as np

    dequantize = schema.BuiltinOperator.DEQUANTIZE
    unfolded = 0
    for graph in model.subgraphs:
        kept = []
        for op in graph.operators:
            is_dequantize = model.operatorCodes[op.opcodeIndex].builtinCode == dequantize
            source = graph.tensors[op.inputs[0]] if is_dequantize else None
            if source is None or source.type != schema.TensorType.FLOAT16:
                kept.append(op)
                continue
            buffer = model.buffers[source.buffer]
            if buffer.data is None or not len(buffer.data):  # computed, not a constant
                kept.append(op)
                continue
            weights = np.frombuffer(bytes(buffer.data), dtype=np.float16).astype(np.float32)
            unfolded_buffer = schema.BufferT()
            unfolded_buffer.data = np.frombuffer(weights.tobytes(), dtype=np.uint8)
            model.buffers.append(unfolded_buffer)
            graph.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
            unfolded += 1
        if len(kept) < len(graph.operators):
            graph.operators = kept
            _drop_unused_tensors(model, graph, subgraph_index=model.subgraphs.index(graph))
    return unfolded


def _drop_unused_tensors(model: Any, graph: Any, subgraph_index: int) -> None:
    """The tensors no op, graph input or output uses (the float16 copies) removed with
    their data, every index renumbered (ops, graph, signatures)."""
    used = set(graph.inputs) | set(graph.outputs)
    for op in graph.operators:
        used.update(op.inputs, op.outputs, op.intermediates if op.intermediates is not None else [])
    used.discard(-1)  # an optional input left out
    new_index = {old: new for new, old in enumerate(sorted(used))}
    for old, tensor in enumerate(graph.tensors):
        if old not in used and tensor.buffer:
            model.buffers[tensor.buffer].data = None
    graph.tensors = [graph.tensors[old] for old in sorted(used)]

    def renumber(indices: Any) -> Any:
        return None if indices is None else [new_index.get(int(i), -1) for i in indices]

    for op in graph.operators:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        op.intermediates = renumber(op.intermediates)
    graph.inputs, graph.outputs = renumber(graph.inputs), renumber(graph.outputs)
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == subgraph_index:
            for entry in (signature.inputs or []) + (signature.outputs or []):
                entry.tensorIndex = new_index[entry.tensorIndex]


def _default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _drop_unused_opset_imports(model: Any) -> None:
    """The optimizer declares every domain it knows (com.microsoft, ai.onnx.training, ...);
    a model that declares domains it does not use can fail to load elsewhere."""
    used = {""} | {node.domain for graph in all_graphs(model.graph) for node in graph.node}
    kept = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(kept)
