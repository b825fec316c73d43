"""A job's process through harness/runner/ on the device: push the files it needs (by
content hash), write its spec, run it, read its one JSON document."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from typing import Any

from harness.errors import RunnerFailed
from harness.execute import DeviceSession
from harness.jobs import Job, parse_result_document


def run(
    job: Job, session: DeviceSession, round_index: int, timings: dict[str, Any]
) -> dict[str, Any]:
    """One process of the runner: its validated result document."""
    transport, facts = session.transport, session.file_facts
    clock = time.perf_counter()
    remote_model, pushed = transport.put_content_addressed(
        job.model_file, "models", facts[job.model_file][0]
    )
    remote_input = None
    if job.input_file is not None:
        remote_input, _ = transport.put_content_addressed(
            job.input_file, "inputs", facts[job.input_file][0]
        )
    remote_eval = None
    if job.eval_file is not None and round_index == 0:  # accuracy once per job
        remote_eval, _ = transport.put_content_addressed(
            job.eval_file, "eval", facts[job.eval_file][0]
        )
    remote_reference = None
    if job.reference_file is not None:  # a paired job: fp32 runs beside the variant
        remote_reference, _ = transport.put_content_addressed(
            job.reference_file, "models", facts[job.reference_file][0]
        )
    spec_path = session.job_path(job, ".json")
    spec = job.spec(
        remote_model, remote_input, remote_eval, spec_path.removesuffix(".json"), remote_reference
    )
    transport.put_bytes(json.dumps(spec).encode(), spec_path)
    timings.update(model_pushed=pushed, push_s=time.perf_counter() - clock)
    result = transport.run(
        [session.device.placement.python, session.runner_path, spec_path],
        timeout_s=job.timeout_s,
        interruptible=True,
    )
    timings["run_s"] = result.duration_s
    try:
        return parse_result_document(result.stdout, device=session.device.name, job_id=job.job_id)
    except RunnerFailed as exc:
        raise RunnerFailed(
            f"{exc}; the runner {exit_text(result.exit_code)}"
            + (f"; its stderr: {tail(result.stderr)}" if result.stderr.strip() else "")
        ) from None


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
