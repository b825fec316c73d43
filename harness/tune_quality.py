"""Quality on the controller, for `harness tune`: a candidate's outputs against fp32's on
the representative set, through the same runtime and the same per-output measures as a
run's fidelity pass (harness/runner/outputs.run_fidelity, harness/fidelity.py), and each
layer's sensitivity (the noise it adds at the outputs, quantized alone).

The tune never decides on random inputs: a model without `[data]` or `[eval]` is refused.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from harness.compress import (
    BuildContext,
    CompressionFailed,
    NoEffect,
    build_variant,
    tool_versions,
)
from harness.compress.prepare import prepare_base
from harness.config import ModelManifest, Variant
from harness.errors import ConfigError
from harness.fidelity import OutputQuality, compare_outputs, quality_verdict
from harness.runner.contract import JobSpec
from harness.runner.outputs import run_fidelity
from harness.runner.result_document import ResultDocument
from harness.runner.result_views import Fidelity
from harness.runner.runtimes import OnnxRuntimeSession, TFLiteSession
from harness.stored_files import write_json_atomic
from harness.tune_revert import WEIGHTED_OPS, GraphNode
from harness.tune_search import Recipe

QUALITY_SAMPLES = 256  # of the representative set, at most (the fidelity pass's own cap too)


@dataclass(frozen=True)
class Judgement:
    verdict: str | None  # ok | loss | unverified
    why: str
    outputs: list[OutputQuality]
    accuracy_drop_pts: float | None


class QualityJudge:
    """fp32's outputs on the set, computed once; every candidate judged against them."""

    def __init__(self, manifest: ModelManifest, tolerances: dict[str, float]) -> None:
        where = manifest.manifest_path or manifest.name
        if manifest.data is None and manifest.eval is None:
            raise ConfigError(
                where,
                "harness tune needs representative inputs to judge quality (a figure from "
                "random inputs never decides): add [data] (images, audio, an .npz) or [eval]",
                "data",
            )
        self.manifest = manifest
        self.tolerances = tolerances
        self._labels = _labels(manifest)
        self.reference = self.outputs(manifest.file)
        self._reference_accuracy = self._accuracy(self.reference)

    def _spec(self) -> JobSpec:
        manifest = self.manifest
        fidelity: dict[str, Any] = {
            "samples": QUALITY_SAMPLES,
            "task": manifest.task,
            "outputs": {n: o.declaration() for n, o in manifest.outputs.items()},
        }
        if manifest.data is not None and manifest.data.file is not None:
            fidelity["file"] = str(manifest.data.file)
            fidelity["whole"] = list(manifest.data.whole)
        spec: dict[str, Any] = {"fidelity": fidelity, "seed": 0}
        if manifest.eval is not None:
            spec["eval"] = {
                "file": str(manifest.eval.file),
                "inputs": dict(manifest.eval.inputs),
                "whole": list(manifest.eval.whole),
            }
        return spec  # type: ignore[return-value]  # the parts run_fidelity reads

    def outputs(self, path: Path) -> Fidelity:
        session = open_session(path)
        document = {"fidelity": run_fidelity(np, session, session.declared_inputs(), self._spec())}
        fidelity = ResultDocument(document).fidelity
        assert fidelity is not None
        return fidelity

    def judge(self, path: Path) -> Judgement:
        mine = self.outputs(path)
        declared = {n: o.declaration() for n, o in self.manifest.outputs.items()}
        compared = (
            compare_outputs(mine, self.reference, cast(Any, declared), self.manifest.task) or []
        )
        drop = None
        accuracy = self._accuracy(mine)
        if accuracy is not None and self._reference_accuracy is not None:
            drop = (self._reference_accuracy - accuracy) * 100
        verdict, why = quality_verdict(compared, self.reference.source, drop, self.tolerances)
        return Judgement(verdict, why, compared, drop)

    def noise(self, path: Path) -> float:
        """The candidate's noise at the outputs: mean squared error over fp32's power,
        averaged over the outputs (1 / SNR, linear) -- the sensitivity of a layer."""
        mine = self.outputs(path)
        ratios = []
        for index in range(len(self.reference.outputs[0])):
            ours = np.asarray([s[index] for s in mine.outputs], np.float64)
            base = np.asarray([s[index] for s in self.reference.outputs], np.float64)
            if ours.shape != base.shape or not base.size:
                return float("inf")  # a layer that changes the output's shape: never keep it
            ratios.append(float(np.mean((ours - base) ** 2)) / max(float(np.mean(base**2)), 1e-30))
        return float(np.mean(ratios))

    def _accuracy(self, outputs: Fidelity) -> float | None:
        """Top-1 accuracy against the eval set's labels, where the passes ran on it."""
        if self._labels is None or outputs.source != "eval set" or not outputs.outputs:
            return None
        scores = np.asarray([s[0] for s in outputs.outputs], np.float64)
        labels = self._labels[: len(scores)]
        return float(np.mean(np.argmax(scores.reshape(len(scores), -1), axis=1) == labels))


def _labels(manifest: ModelManifest) -> np.ndarray | None:
    evaluation = manifest.eval
    if evaluation is None or not evaluation.labels or manifest.task != "classification":
        return None
    with np.load(evaluation.file) as data:
        return np.asarray(data[evaluation.labels]) if evaluation.labels in data else None


def open_session(path: Path) -> OnnxRuntimeSession | TFLiteSession:
    if path.suffix == ".tflite":
        return TFLiteSession(str(path), "xnnpack", 1)
    return OnnxRuntimeSession(str(path), "CPUExecutionProvider", 1)


def layer_noise(
    judge: QualityJudge, plain: Recipe, context: BuildContext, folder: Path, deadline: float
) -> tuple[dict[str, float], bool]:
    """Each weighted layer of the prepared base quantized alone (int8-static's
    `nodes_to_quantize`, the rest of `plain`'s parameters kept) and the noise it adds at
    the outputs; stored as it goes (`sensitivity-<recipe key>.json`), so a tune run again
    measures no layer twice. False with the layers measured when `deadline` (monotonic)
    came first."""
    manifest = judge.manifest
    cache = folder / "sensitivity"
    path = folder / f"sensitivity-{plain.key}.json"
    noise: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}
    for layer in weighted_layers(prepared_base(manifest, folder)):
        if layer in noise:
            continue
        if time.monotonic() >= deadline:
            return noise, False
        params = dict(plain.params, nodes_to_quantize=[layer])
        variant = Variant(name="sensitivity", strategy="int8-static", params=params)
        try:
            built = build_variant(manifest, variant, cache, context)
        except (CompressionFailed, NoEffect):
            continue  # the layer alone cannot be quantized: nothing to put back
        noise[layer] = judge.noise(built.path)
        write_json_atomic(path, noise)
    return noise, True


def prepared_base(manifest: ModelManifest, folder: Path) -> Path:
    """The base as int8-static quantizes it (quant_pre_process), whose node names the
    recipes' node lists use; cached under the tune's folder."""
    base_sha = hashlib.sha256(manifest.file.read_bytes()).hexdigest()
    cache = folder / "sensitivity" / manifest.name
    return prepare_base(manifest.file, cache, base_sha, tool_versions()).path


def graph_nodes(model: Path) -> list[GraphNode]:
    """The model's nodes in graph order: name, op type, inputs, outputs (a TFLite op is
    named by its first output tensor)."""
    if model.suffix == ".tflite":
        from harness.compress.tflite import op_names

        return op_names(model)
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return [(n.name, n.op_type, list(n.input), list(n.output)) for n in graph.node]


def weighted_layers(prepared: Path) -> list[str]:
    """The prepared base's nodes whose quantization buys time, in graph order."""
    return [name for name, op, _, _ in graph_nodes(prepared) if op in WEIGHTED_OPS and name]
