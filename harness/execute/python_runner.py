"""A job's process through harness/runner/ on the device: push the files it needs (by
content hash), write its spec, run it, read its one JSON document. The process is a child
forked by the session's persistent runner (persistent_runner.py), or, exec-per-job, a
runner started for it."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from typing import cast

from harness.errors import DeviceUnreachable, RunnerFailed
from harness.execute.persistent_runner import Unavailable
from harness.execute.session import DeviceSession
from harness.jobs import Job
from harness.records import ControllerNotes
from harness.runner.contract import ResultDoc
from harness.runner.persistent import ForkedResult
from harness.runner.result_document import result_problem


def run(job: Job, session: DeviceSession, round_index: int, notes: ControllerNotes) -> ResultDoc:
    """One process of the runner: its validated result document."""
    transport = session.transport
    clock = time.perf_counter()
    remote_model, pushed = session.push(job.model_file, "models")
    remote_input = None
    if job.input_file is not None:
        remote_input, _ = session.push(job.input_file, "inputs")
    remote_eval = remote_fidelity = None
    if job.eval_file is not None and round_index == 0:  # accuracy once per job
        remote_eval, _ = session.push(job.eval_file, "eval")
    if job.fidelity_file is not None and round_index == 0:  # fidelity too
        remote_fidelity, _ = session.push(job.fidelity_file, "eval")
    remote_reference = None
    if job.reference_file is not None:  # a paired job: fp32 runs beside the variant
        remote_reference, _ = session.push(job.reference_file, "models")
    spec_path = session.job_path(job, ".json")
    spec = job.spec(
        remote_model, remote_input, remote_eval, spec_path.removesuffix(".json"),
        remote_reference, remote_fidelity, first_round=round_index == 0,
    )  # fmt: skip
    transport.put_bytes(json.dumps(spec).encode(), spec_path)
    notes["model_pushed"], notes["push_s"] = pushed, time.perf_counter() - clock
    if session.runner_mode == "persistent" and not session.runner_fallback:
        try:
            return run_forked(job, session, spec_path, notes)
        except Unavailable as exc:  # this device cannot keep one: exec-per-job from now
            session.runner_fallback = str(exc)
    if session.runner_fallback:
        notes["runner_fallback"] = session.runner_fallback
    result = transport.run(
        [session.device.placement.python, session.runner_path, spec_path],
        timeout_s=job.timeout_s,
        interruptible=True,
    )
    notes["run_s"] = result.duration_s
    try:
        return parse_result_document(result.stdout, device=session.device.name, job_id=job.job_id)
    except RunnerFailed as exc:
        raise RunnerFailed(
            f"{exc}; the runner {exit_text(result.exit_code)}"
            + (f"; its stderr: {tail(result.stderr)}" if result.stderr.strip() else "")
        ) from None


def run_forked(
    job: Job, session: DeviceSession, spec_path: str, notes: ControllerNotes
) -> ResultDoc:
    """The job's process as a child of the session's persistent runner."""
    clock = time.perf_counter()
    runner = session.persistent_runner()
    try:
        answer = runner.run(spec_path, job.timeout_s)
    except DeviceUnreachable:
        session.close_runner()  # the retry starts a new one
        raise
    notes["run_s"] = time.perf_counter() - clock
    return forked_document(answer, device=session.device.name, job_id=job.job_id)


def forked_document(answer: ForkedResult, *, device: str, job_id: str) -> ResultDoc:
    """The child's validated document; RunnerFailed saying how it ended when it wrote none
    (a segfault in the runtime: the job's error, the runner stays)."""
    doc = answer.get("document")
    if doc is None:
        how = (
            f"was killed by {answer['signal']}"
            if answer.get("signal")
            else f"exited with status {answer.get('exit_code')}"
        )
        stderr = answer.get("stderr") or ""
        raise RunnerFailed(
            f"job {job_id} on '{device}': the runner's process {how} before it wrote its "
            "result" + (f"; its stderr: {tail(stderr)}" if stderr.strip() else "")
        )
    problem = result_problem(doc)
    if problem:
        raise RunnerFailed(f"job {job_id} on '{device}': {problem}")
    return doc


def tail(text: str, lines: int = 5) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


def exit_text(code: int) -> str:
    """`exited with status 1`, or `was killed by SIGSEGV` (a shell reports 128 + N)."""
    number = -code if code < 0 else code - 128 if 128 < code < 160 else None
    if number is not None:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(number).name} (exit status {code})"
    return f"exited with status {code}"


def parse_result_document(stdout: str, *, device: str, job_id: str) -> ResultDoc:
    """The runner's one JSON document, validated; RunnerFailed quoting what came instead."""
    text = stdout.strip()
    if not text:
        raise RunnerFailed(f"job {job_id} on '{device}': the runner printed nothing on stdout")
    try:
        doc = json.loads(text.splitlines()[-1])
    except json.JSONDecodeError:
        raise RunnerFailed(
            f"job {job_id} on '{device}': the runner's output is not JSON: {_excerpt(text)}"
        ) from None
    problem = result_problem(doc)
    if problem:
        raise RunnerFailed(f"job {job_id} on '{device}': {problem}")
    return cast(ResultDoc, doc)


def _excerpt(text: str, limit: int = 300) -> str:
    text = text.strip().replace("\n", " | ")
    return repr(text if len(text) <= limit else text[:limit] + "…")
