"""The execute seam: one process of one job on a device, whatever runs it.

    execute(job, session, round_index, notes) -> result document (harness.result/1)

Behind it, `python_runner` (harness/runner/ copied to the device, for Linux boards with
Python) and `native` (benchmark_model, onnxruntime_perf_test, trtexec: phones and
TensorRT), each in its own module. The device worker (harness/worker.py) owns the session,
the lease, retries and rounds; what runs a job lives here. A new way to run a job is a
module with a `run` of this shape, chosen in `execute`.
"""

from __future__ import annotations

from harness.execute import native, python_runner
from harness.execute.session import MIN_FREE_BYTES, DeviceSession
from harness.jobs import Job
from harness.native.commands import PYTHON_RUNNER
from harness.records import ControllerNotes
from harness.runner.contract import ResultDoc

__all__ = ["MIN_FREE_BYTES", "DeviceSession", "execute"]


def execute(
    job: Job, session: DeviceSession, round_index: int, notes: ControllerNotes
) -> ResultDoc:
    """Run one process of the job; its result document (status ok or error). Raises
    HarnessError subclasses for what went wrong around it (timeout, link, interruption)."""
    if job.tool == PYTHON_RUNNER:
        return python_runner.run(job, session, round_index, notes)
    return native.run(job, session, notes)
