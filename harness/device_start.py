"""Taking a device for a run, before its first job: connect, reserve it (the lease), end
what an earlier controller left running there, check its health, install the runner.

The device worker (harness/worker.py) calls `start_device` under its retry policy; a link
fault here is retried, anything else makes the device's jobs `skipped` with the reason.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence

from harness.device_check import check_device
from harness.errors import DeviceDiskFull, HarnessError
from harness.execute import MIN_FREE_BYTES, DeviceSession
from harness.jobs import Job
from harness.lease import Lease, acquire, end_leftovers, release
from harness.native.commands import PYTHON_RUNNER
from harness.probes.facts import unusable_runtimes


def start_device(
    session: DeviceSession,
    jobs: Sequence[Job],
    lease: Lease,
    stop: threading.Event,
    say: Callable[[str, str], None],
) -> tuple[Lease, dict[str, str]]:
    """The lease it holds, and the runtimes it cannot run (runtime -> why). When a step
    after the reservation fails, the lease is released before the error goes on."""
    transport, device = session.transport, session.device
    transport.open()
    held = acquire(
        transport,
        lease,
        device.retry.lease_wait_s,
        on_wait=lambda holder: say("waiting", f"reserved by {holder.describe()}"),
        should_stop=stop.is_set,
        clock=session.clock,
    )
    try:
        ended = end_leftovers(transport)
        if ended:
            say("cleanup", f"ended {len(ended)} runner(s) that a previous controller left "
                f"running on the device ({', '.join(ended)})")  # fmt: skip
        if not any(job.tool == PYTHON_RUNNER for job in jobs):
            return held, {}
        facts = check_device(device, transport)
        if facts.disk_free_bytes is not None and facts.disk_free_bytes < MIN_FREE_BYTES:
            files = {f for job in jobs for f in job.local_files()}
            sent_mb = sum(session.file_facts.get(f, ("", 0))[1] for f in files) / 2**20
            raise DeviceDiskFull(
                device.name,
                f"disk full: {facts.disk_free_bytes // 1024} KiB free in {facts.workdir}; the "
                f"jobs need {MIN_FREE_BYTES // 2**20} MiB for their scratch files and up to "
                f"{sent_mb:.1f} MiB for the {len(files)} file(s) they send. Free space on the "
                "device or point `workdir` (under [placement]) at a larger disk",
            )
        session.runner_path = facts.runner_path
        return held, unusable_runtimes(facts.runtimes)
    except BaseException:
        with contextlib.suppress(HarnessError):  # not kept for a device it cannot use
            release(transport, held)
        raise
