"""What the runner reads from a model besides its latency, after (never inside) the timed
loop: the eval set's predictions, the fidelity pass's outputs, a profile job's per-layer
profile. Stdlib + the runtime only."""

from __future__ import annotations

import time
from typing import Any

try:  # imported as harness.runner.outputs (the controller, the tests)
    from .contract import EvalDoc, EvalSpec, FidelityDoc, JobSpec, ProfileDoc, ProfileSpec
    from .op_profile import summarize_ort_trace, tflite_ops
    from .runtimes import OnnxRuntimeSession, TFLiteSession, eval_feeds, make_inputs
except ImportError:  # run on the device, where this file's folder is on sys.path
    from contract import (  # type: ignore[no-redef]
        EvalDoc,
        EvalSpec,
        FidelityDoc,
        JobSpec,
        ProfileDoc,
        ProfileSpec,
    )
    from op_profile import summarize_ort_trace, tflite_ops  # type: ignore[no-redef]
    from runtimes import (  # type: ignore[no-redef]
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
    count = int(fidelity["samples"])
    eval_spec = job.get("eval")
    if fidelity.get("file"):
        feeds = eval_feeds(np, str(fidelity["file"]), declared, {}, [], count)
        source = "representative set"
    elif eval_spec:
        feeds = eval_feeds(
            np, eval_spec["file"], declared, eval_spec.get("inputs") or {},
            eval_spec.get("whole") or [], count,
        )  # fmt: skip
        source = "eval set"
    else:
        input_file = job.get("input_file")
        feeds = []
        for k in range(1 if input_file else count):
            seed = int(job.get("seed", 0)) + 1 + k
            specs, dims = job.get("input_specs") or {}, job.get("dims") or {}
            feeds.append(make_inputs(np, declared, specs, dims, seed, input_file))
        source = "input file" if input_file else "seeded random inputs"
    outputs: list[list[list[float]]] = []
    shapes: list[list[int]] = []
    values = 0
    for feed in feeds:
        session.set_inputs(feed)
        raw = [np.asarray(o, dtype=np.float64) for o in session.outputs()]
        shapes = shapes or [list(o.shape) for o in raw]
        values += sum(int(o.size) for o in raw)
        if outputs and values > MAX_FIDELITY_VALUES:
            break  # enough to compare; the job record stays small
        outputs.append([o.ravel().tolist() for o in raw])
    return {
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
