"""What the runner reads from a model besides its latency, after (never inside) the timed
loop: the eval set's predictions, the fidelity pass's outputs, a profile job's per-layer
profile. Stdlib + the runtime only."""

from __future__ import annotations

import base64
import time
from typing import Any

try:  # imported as harness.runner.outputs (the controller, the tests)
    from .contract import (
        EvalDoc,
        EvalSpec,
        FidelityDoc,
        JobSpec,
        OutputDeclarationDoc,
        ProfileDoc,
        ProfileSpec,
    )
    from .op_profile import summarize_ort_trace, tflite_ops
    from .runtimes import Arrays, OnnxRuntimeSession, TFLiteSession, eval_feeds, make_inputs
except ImportError:  # run on the device, where this file's folder is on sys.path
    from contract import (  # type: ignore[no-redef]
        EvalDoc,
        EvalSpec,
        FidelityDoc,
        JobSpec,
        OutputDeclarationDoc,
        ProfileDoc,
        ProfileSpec,
    )
    from op_profile import summarize_ort_trace, tflite_ops  # type: ignore[no-redef]
    from runtimes import (  # type: ignore[no-redef]
        Arrays,
        OnnxRuntimeSession,
        TFLiteSession,
        eval_feeds,
        make_inputs,
    )

MAX_EVAL_VALUES = 2000000  # raw outputs returned for deviation checks, at most this many
# outputs returned for fidelity (the first fixed input's always): ~12 MB of JSON in the
# job record at most -- 32 samples of a 128x128 detector's maps, a classifier's many more
MAX_FIDELITY_VALUES = 600000


def profile_of(session: OnnxRuntimeSession | TFLiteSession, spec: ProfileSpec) -> ProfileDoc:
    if isinstance(session, OnnxRuntimeSession):
        path = session.end_profiling()
        return summarize_ort_trace(path, int(spec["runs"]), int(spec["top_n"]))
    return tflite_ops(session.interpreter._get_ops_details())


def run_fidelity(
    np: Any,
    session: OnnxRuntimeSession | TFLiteSession,
    declared: list[tuple[str, str, list[Any]]],
    job: JobSpec,
) -> FidelityDoc:
    """Every output of fixed inputs, after the timed loop: the representative set's
    first `samples`, else the eval set's, else the plan's input file, else seeded inputs
    (seeds other than the timed loop's) -- the same for every variant of the model, so the
    controller can compare each variant's outputs with fp32's, labels or not."""
    fidelity = job["fidelity"]
    assert fidelity is not None
    started = time.perf_counter()
    feeds, source = _fidelity_feeds(np, job, declared, int(fidelity["samples"]))
    masks = {
        index: spec
        for index, name in enumerate(session.output_names)
        for spec in [(fidelity.get("outputs") or {}).get(name) or {}]
        if spec.get("kind") == "mask"
    }
    outputs: list[list[list[float]]] = []
    packed: list[dict[str, str]] = []
    shapes: list[list[int]] = []
    values = 0
    for feed in feeds:
        session.set_inputs(feed)
        raw = [np.asarray(o, dtype=np.float64) for o in session.outputs()]
        shapes = shapes or [list(o.shape) for o in raw]
        # a mask travels as its bits at the declared threshold: 1/64 of its floats
        values += sum(int(o.size) // (64 if i in masks else 1) for i, o in enumerate(raw))
        if outputs and values > MAX_FIDELITY_VALUES:
            break  # enough to compare; the job record stays small
        outputs.append([[] if i in masks else o.ravel().tolist() for i, o in enumerate(raw)])
        packed.append({str(i): _mask_bits(np, raw[i], spec) for i, spec in masks.items()})
    doc: FidelityDoc = {
        "n": len(outputs),
        "source": source,
        "outputs": outputs,
        "shapes": shapes,
        "names": list(session.output_names),
        "classification": bool(fidelity.get("classification")),
        "task": str(fidelity.get("task") or ""),
        "declared": dict(fidelity.get("outputs") or {}),
        "elapsed_s": time.perf_counter() - started,
    }
    if masks:
        doc["masks"] = packed
    return doc


def _fidelity_feeds(
    np: Any, job: JobSpec, declared: list[tuple[str, str, list[Any]]], count: int
) -> tuple[list[Arrays], str]:
    """The fidelity pass's inputs and what they are: the representative set's first
    `count`, else the eval set's, else the plan's input file, else seeded inputs."""
    fidelity = job["fidelity"] or {}
    eval_spec = job.get("eval")
    if fidelity.get("file"):
        whole = list(fidelity.get("whole") or [])
        feeds = eval_feeds(np, str(fidelity["file"]), declared, {}, whole, count)
        return feeds, "representative set"
    if eval_spec:
        feeds = eval_feeds(
            np, eval_spec["file"], declared, eval_spec.get("inputs") or {},
            eval_spec.get("whole") or [], count,
        )  # fmt: skip
        return feeds, "eval set"
    input_file = job.get("input_file")
    feeds = []
    for k in range(1 if input_file else count):
        seed = int(job.get("seed", 0)) + 1 + k
        specs, dims = job.get("input_specs") or {}, job.get("dims") or {}
        feeds.append(make_inputs(np, declared, specs, dims, seed, input_file))
    return feeds, "input file" if input_file else "seeded random inputs"


def _mask_bits(np: Any, values: Any, spec: OutputDeclarationDoc) -> str:
    """A mask output at its threshold (after a sigmoid for logits), bit-packed, base64."""
    if spec.get("logits"):
        values = 1 / (1 + np.exp(-np.clip(values, -60, 60)))
    on = np.asarray(values >= float(spec.get("threshold", 0.5)), dtype=np.uint8).ravel()
    return base64.b64encode(np.packbits(on).tobytes()).decode("ascii")


def run_eval(
    np: Any,
    session: OnnxRuntimeSession | TFLiteSession,
    declared: list[tuple[str, str, list[Any]]],
    spec: EvalSpec,
) -> EvalDoc:
    """Every eval sample, one at a time, after (never inside) the timed loop: the top-k
    indices of the first output, and its raw values while they stay under a cap."""
    feeds = eval_feeds(
        np, spec["file"], declared, spec.get("inputs") or {}, spec.get("whole") or []
    )
    top_k = int(spec.get("top_k", 5))
    predictions: list[list[int]] = []
    outputs: list[list[float]] | None = []
    values = 0
    for feed in feeds:
        session.set_inputs(feed)
        first = np.asarray(session.outputs()[0], dtype=np.float64).ravel()
        predictions.append(np.argsort(-first, kind="stable")[:top_k].tolist())
        values += first.size
        if outputs is not None and values <= MAX_EVAL_VALUES:
            outputs.append(first.tolist())
        else:
            outputs = None
    return {"n": len(feeds), "top_k": predictions, "outputs": outputs}
