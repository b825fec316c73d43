"""What every strategy module shares: its signature, its context, its failure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.config import ModelManifest
from harness.errors import HarnessError


class Params(BaseModel):
    """Base of every strategy's parameters: unknown keys are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CompressionFailed(HarnessError):
    """A strategy could not be applied to this model; the other variants go on."""


@dataclass(frozen=True)
class BuildContext:
    """What a strategy may need besides the base file: calibration/eval data, input specs."""

    manifest: ModelManifest
    dims: dict[str, int] = field(default_factory=dict)
    seed: int = 0


@dataclass(frozen=True)
class Strategy:
    name: str
    params: type[BaseModel]
    build: Callable[[Path, Path, Any, BuildContext], dict[str, Any]]
    description: str


def sample_inputs(
    base: Path, context: BuildContext, count: int
) -> tuple[list[dict[str, Any]], str]:
    """Inputs for calibration: the manifest's eval set when it has one, else seeded random
    values from the input specs (and the source is said, so the report can say so)."""
    import numpy as np
    import onnx

    graph = onnx.load(str(base), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    manifest = context.manifest
    if manifest.eval is not None:
        source = manifest.eval.calibration_file or manifest.eval.file
        with np.load(source) as data:
            arrays = {i.name: data[manifest.eval.input_key(i.name)] for i in inputs}
        total = min(count, *(len(a) for a in arrays.values()))
        kind = "calibration set" if manifest.eval.calibration_file else "eval set"
        return (
            [{k: a[n : n + 1].astype(np.float32) for k, a in arrays.items()} for n in range(total)],
            f"{kind} {source.name} ({total} samples)",
        )
    specs = {s.name: s for s in manifest.inputs}
    rng = np.random.default_rng(context.seed)
    samples = []
    for _ in range(count):
        feed = {}
        for tensor in inputs:
            spec = specs.get(tensor.name)
            dims = (
                spec.shape
                if spec
                else [d.dim_param or d.dim_value for d in tensor.type.tensor_type.shape.dim]
            )
            shape = [
                d if isinstance(d, int) and d > 0 else context.dims.get(str(d), 1) for d in dims
            ]
            low, high = (spec.low, spec.high) if spec else (0.0, 1.0)
            feed[tensor.name] = rng.uniform(low, high, size=shape).astype(np.float32)
        samples.append(feed)
    return samples, f"seeded random inputs ({count} samples; no eval set in the manifest)"
