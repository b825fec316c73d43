"""What every strategy module shares: its signature, its context, its failure."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
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
    calibrated: bool = False  # its bytes depend on sample inputs (and so its cache key)


def sample_inputs(
    base: Path, context: BuildContext, count: int
) -> tuple[list[dict[str, Any]], str]:
    """Inputs for calibration and for the check that a variant runs: the manifest's eval
    (or calibration) set when it has one, else seeded values made as the runner makes them
    (each input its own dtype, `values` for inputs that are not a range, dynamic dims from
    the plan — never invented). The source is said, so the report can say so."""
    import numpy as np

    from harness.runner.contract import JobError
    from harness.runner.runtimes import OnnxRuntimeSession, TFLiteSession, make_inputs

    try:
        session = (
            TFLiteSession(str(base), "xnnpack", 1)
            if base.suffix == ".tflite"
            else OnnxRuntimeSession(str(base), "CPUExecutionProvider", 1)
        )
        declared = session.declared_inputs()
    except Exception as exc:
        raise CompressionFailed(
            f"the runtime cannot load {base.name}: {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    manifest = context.manifest
    if manifest.eval is not None:
        source = manifest.eval.calibration_file or manifest.eval.file
        with np.load(source) as data:
            arrays = {name: data[manifest.eval.input_key(name)] for name, _, _ in declared}
        dtypes = {name: dtype for name, dtype, _ in declared}
        total = min(count, *(len(a) for a in arrays.values()))
        kind = "calibration set" if manifest.eval.calibration_file else "eval set"
        return (
            [
                {k: np.ascontiguousarray(a[n : n + 1], dtype=dtypes[k]) for k, a in arrays.items()}
                for n in range(total)
            ],
            f"{kind} {source.name} ({total} samples)",
        )
    specs = manifest.input_specs()
    try:
        samples = [
            make_inputs(np, declared, specs, context.dims, context.seed + n, None)
            for n in range(count)
        ]
    except JobError as exc:
        raise CompressionFailed(str(exc)) from None
    return samples, f"seeded random inputs ({count} samples; no eval set in the manifest)"


def all_graphs(graph: Any) -> Iterator[Any]:
    """An ONNX graph and every subgraph nested in it (the branches of If, bodies of Loop
    and Scan): what a strategy that reads only the main graph does not see."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.g.node:
                yield from all_graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from all_graphs(subgraph)


def nested_count(graph: Any, op_types: Collection[str]) -> int:
    """How many nodes of these types sit inside subgraphs (not in the main graph)."""
    return sum(
        1 for sub in list(all_graphs(graph))[1:] for node in sub.node if node.op_type in op_types
    )
