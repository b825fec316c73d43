"""What an executor needs of the device it runs on, for the whole run: the device, its
transport, the run, the local files' hashes, where the runner and the native tools are."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.clock import SYSTEM_CLOCK, Clock
from harness.config import Device
from harness.errors import ControllerFileMissing, HarnessError, UsageError
from harness.execute.persistent_runner import PersistentRunner
from harness.jobs import Job
from harness.native.commands import PYTHON_RUNNER
from harness.transport.base import Transport
from harness.transport.remote_shell import KILL_BY_ARGUMENT

# below this free in the device's workdir the device counts as full: not even a job spec
# and a sampler's readings fit (the health check before the first job, a job that fails)
MIN_FREE_BYTES = 8 * 2**20

# how the Python runner runs a job's process: "persistent", a runner that stays for the
# session and forks a child per process (harness/runner/persistent.py), or "exec", a
# runner process started per process. A device file's `placement.runner_mode` decides for
# its device; otherwise this variable (the test suite runs in either mode), else the default.
RUNNER_MODE_VARIABLE = "HARNESS_RUNNER_MODE"
RUNNER_MODES = ("persistent", "exec")
DEFAULT_RUNNER_MODE = "persistent"


def runner_mode(device: Device) -> str:
    chosen = device.placement.runner_mode or os.environ.get(RUNNER_MODE_VARIABLE)
    if chosen is None or chosen == "":
        return DEFAULT_RUNNER_MODE
    if chosen not in RUNNER_MODES:
        raise UsageError(f"{RUNNER_MODE_VARIABLE}={chosen!r}: it takes {' or '.join(RUNNER_MODES)}")
    return chosen


@dataclass
class DeviceSession:
    """What an executor needs of the device it runs on, for the whole run."""

    device: Device
    transport: Transport
    run_id: str
    file_facts: dict[Path, tuple[str, int]]  # local file -> (sha256, size)
    runner_path: str = ""  # run.py on the device, once installed
    binary_paths: dict[str, str] = field(default_factory=dict)  # native tool -> device path
    clock: Clock = SYSTEM_CLOCK  # the cooldown's, the lease's and the retries' waits
    runner_mode: str = DEFAULT_RUNNER_MODE  # "persistent" or "exec" (`runner_mode`)
    preload: list[str] = field(default_factory=list)  # runtimes a persistent runner imports
    persistent: PersistentRunner | None = None  # started with the first job that needs it
    runner_fallback: str = ""  # why this device runs exec-per-job after all

    def persistent_runner(self) -> PersistentRunner:
        """The session's persistent runner, started when first needed."""
        if self.persistent is None:
            self.persistent = PersistentRunner.start(
                self.transport, self.device.placement.python, self.runner_path, self.preload
            )
        return self.persistent

    def close_runner(self) -> None:
        """End the persistent runner (the session's end, or a link that failed)."""
        runner, self.persistent = self.persistent, None
        if runner is not None:
            with contextlib.suppress(HarnessError):
                runner.close()

    def push(self, local: Path, folder: str) -> tuple[str, bool]:
        """A controller file (model, inputs, eval set) onto the device, once per content:
        (its path there, whether it was sent). A file gone since the run started is
        `ControllerFileMissing`, not the job's failure."""
        facts = self.file_facts.get(local)
        if facts is None:  # already gone when the run started
            raise ControllerFileMissing(local)
        return self.transport.put_content_addressed(local, folder, facts[0])

    def run_folder(self) -> str:
        """`<workdir>/jobs/<run>`: this run's job specs and scratch files on the device."""
        return self.transport.remote_path(f"jobs/{self.run_id}")

    def job_path(self, job: Job, suffix: str) -> str:
        """`<workdir>/jobs/<run>/<job><suffix>`: one job's spec and scratch files."""
        return self.transport.remote_path(f"jobs/{self.run_id}/{job.job_id}{suffix}")

    def end_job_processes(self, job: Job) -> None:
        """After a lost connection the job's processes may still run on the device (and
        would disturb the retry): kill every process whose command line names the job, and
        a persistent runner left from the lost connection (its children end with it)."""
        marker = (
            self.job_path(job, ".")
            if job.tool == PYTHON_RUNNER
            else self.binary_paths.get(job.tool, "")
        )
        if marker:
            self.transport.run(["sh", "-c", KILL_BY_ARGUMENT, "cleanup", marker], timeout_s=30)
        if job.tool == PYTHON_RUNNER and self.runner_mode == "persistent" and self.runner_path:
            self.close_runner()
            serving = f"{self.runner_path} --serve"
            self.transport.run(["sh", "-c", KILL_BY_ARGUMENT, "cleanup", serving], timeout_s=30)
