"""What every strategy module shares: its signature, its context, its failure."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.config import ModelManifest
from harness.errors import HarnessError
from harness.jobs import VariantReport


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
    build: Callable[[Path, Path, Any, BuildContext], VariantReport]
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
    from harness.runner.runtimes import (
        OnnxRuntimeSession,
        TFLiteSession,
        eval_feeds,
        make_inputs,
    )

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
    found = calibration_file(context.manifest)
    if found is not None:
        kind, source, keys, whole = found
        try:
            samples = eval_feeds(np, str(source), declared, keys, whole, count)
        except JobError as exc:
            raise CompressionFailed(str(exc)) from None
        return samples, f"{kind} {source.name} ({len(samples)} samples)"
    manifest = context.manifest
    specs = manifest.input_specs()
    try:
        samples = [
            make_inputs(np, declared, specs, context.dims, context.seed + n, None)
            for n in range(count)
        ]
    except JobError as exc:  # the runner's words name the plan; `compress` alone takes --dims
        raise CompressionFailed(f"{exc} (`harness compress` takes it as --dims NAME=N)") from None
    return samples, f"{RANDOM_CALIBRATION} ({count} samples; no [data] or eval set in the manifest)"


RANDOM_CALIBRATION = "seeded random inputs"


def calibration_file(manifest: ModelManifest) -> tuple[str, Path, dict[str, str], list[str]] | None:
    """(what it is, .npz, input -> array, inputs passed whole) of the real samples a
    calibrated strategy uses: the eval set's calibration file, the representative set
    (`[data]`), the eval set; None: only seeded random inputs are left."""
    evaluation, data = manifest.eval, manifest.data
    if evaluation is not None and evaluation.calibration_file is not None:
        return "calibration set", evaluation.calibration_file, evaluation.inputs, evaluation.whole
    if data is not None and data.file is not None:
        return "representative set", data.file, {}, data.whole
    if evaluation is not None:
        return "eval set", evaluation.file, evaluation.inputs, evaluation.whole
    return None


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


@contextlib.contextmanager
def library_output_to(path: Path, title: str) -> Iterator[None]:
    """Everything the compression libraries say while building one variant -- Python
    logging, warnings, progress bars, and their C++ cores' own stdout/stderr -- goes to the
    log file `path` (appended), not to the user's terminal: onnxruntime's quantizer alone
    printed 611 lines for one model. Used only while no device thread prints."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n")
        log.flush()
        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        root.handlers = [logging.StreamHandler(log)]
        root.setLevel(logging.INFO)  # (setLevel, not .level: it clears the loggers' caches)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved_fds = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with (
                warnings.catch_warnings(),
                contextlib.redirect_stdout(log),
                contextlib.redirect_stderr(log),
            ):
                warnings.simplefilter("always")
                logging.captureWarnings(True)
                yield
        finally:
            logging.captureWarnings(False)
            log.flush()
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
            root.handlers = saved_handlers
            root.setLevel(saved_level)
