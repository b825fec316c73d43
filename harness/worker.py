"""One device's share of a run: connect, reserve, check, then its jobs in rounds.

The worker owns the device session, its lease (harness/lease.py), the health check, the
retries of link faults and the rounds of processes; what runs a process is behind the
execute seam (harness/execute/). A link fault is retried with backoff; a device still
unreachable is quarantined: its remaining jobs are recorded `skipped` with the reason.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.accuracy import eval_metrics
from harness.config import Device
from harness.deploy import install_runner
from harness.errors import DeviceUnreachable, HarnessError, LeaseHeld, TransportError
from harness.execute import DeviceSession
from harness.execute.attempt import Attempt, Failure, attempt
from harness.jobs import Job
from harness.lease import Lease, acquire, end_leftovers, new_lease, refresh, release
from harness.native.commands import PYTHON_RUNNER
from harness.probes.facts import check_device, unusable_runtimes
from harness.records import JobRecord, pool_documents, pool_timings
from harness.runner.contract import ResultDocument
from harness.store import RunStore, utc_now
from harness.transport import open_transport
from harness.transport.remote_shell import KILL_BY_ARGUMENT

MIN_FREE_BYTES = 8 * 2**20  # below this the device counts as full: not even a job spec fits
T = TypeVar("T")


@dataclass(frozen=True)
class JobEvent:
    """Progress for a display: `kind` is 'device-ready', 'device-error', 'waiting',
    'cleanup', 'start', 'retry', 'rerun', 'quarantine' or 'end'."""

    kind: str
    device: str
    job_id: str = ""
    status: str = ""
    message: str = ""


EventSink = Callable[[JobEvent], None]


class DeviceWorker:
    """A device's jobs, strictly one at a time, each in `job.processes` fresh processes,
    in rounds over all its jobs so that drifts fall on every variant alike."""

    def __init__(
        self,
        device: Device,
        inventory: Mapping[str, Device],
        store: RunStore,
        file_facts: dict[Path, tuple[str, int]],
        emit: EventSink,
        stop: threading.Event,
    ) -> None:
        self.device, self.store, self.emit, self.stop = device, store, emit, stop
        transport = open_transport(device, inventory)
        self.session = DeviceSession(device, transport, store.run_id, file_facts)
        self.lease: Lease | None = None
        self.lease_ttl_s = 120.0
        self.quarantined: str | None = None  # why the device's remaining jobs are skipped

    def interrupt(self) -> None:
        """From another thread: kill the job running now (its record says `interrupted`)."""
        self.session.transport.interrupt()

    def run(self, jobs: list[Job]) -> list[JobRecord]:
        transport = self.session.transport
        cooldown_s = self.device.cooldown_max_s if self.device.cooldown_c is not None else 0.0
        longest_s = max(job.timeout_s for job in jobs) + cooldown_s
        self.lease_ttl_s = 2 * longest_s * (1 + self.device.rerun_throttled) + 120
        try:
            return self._rounds(jobs)
        finally:
            if self.lease is not None:
                with contextlib.suppress(HarnessError):  # this run's job specs and scratch
                    transport.run(["rm", "-rf", self.session.run_folder()], timeout_s=30)
                with contextlib.suppress(HarnessError):
                    release(transport, self.lease)
            transport.close()

    def _rounds(self, jobs: list[Job]) -> list[JobRecord]:
        try:
            unusable = self._with_retries("starting", self._start(jobs))
        except HarnessError as exc:
            self.emit(JobEvent("device-error", self.device.name, message=str(exc)))
            return [self._save(job, utc_now(), "skipped", error=str(exc)) for job in jobs]
        self.emit(JobEvent("device-ready", self.device.name))
        records, started = [], {job.job_id: utc_now() for job in jobs}
        done: dict[str, list[Attempt]] = {job.job_id: [] for job in jobs}
        open_jobs = []
        for job in jobs:
            if job.tool == PYTHON_RUNNER and job.runtime in unusable:
                error = f"device '{self.device.name}' cannot run it: {unusable[job.runtime]}"
                records.append(self._save(job, utc_now(), "skipped", error=error))
            else:
                open_jobs.append(job)
        for round_index in range(max((job.processes for job in jobs), default=0)):
            for job in list(open_jobs):
                if self.stop.is_set():
                    return records
                if self.quarantined is not None:
                    open_jobs.remove(job)
                    error = f"device quarantined for this run: {self.quarantined}"
                    records.append(self._save(job, started[job.job_id], "skipped", error=error))
                    continue
                if round_index == 0:
                    self.emit(JobEvent("start", self.device.name, job.job_id))
                    started[job.job_id] = utc_now()
                outcome = self._process(job, round_index)
                if isinstance(outcome, Attempt):
                    done[job.job_id].append(outcome)
                    if len(done[job.job_id]) < job.processes:
                        continue  # more processes of this job in later rounds
                    outcome = self._finish(job, started[job.job_id], done[job.job_id])
                records.append(outcome)
                open_jobs.remove(job)
        return records

    def _start(self, jobs: list[Job]) -> Callable[[], dict[str, str]]:
        """Connect, take the lease, end what a previous controller left running, check
        the device's health, install the runner. Returns the runtimes it cannot run."""
        lease = new_lease(self.store.run_id, self.lease_ttl_s)
        transport = self.session.transport

        def start_once() -> dict[str, str]:
            transport.open()
            self.lease = acquire(
                transport,
                lease,
                self.device.lease_wait_s,
                on_wait=lambda held: self._say("waiting", f"reserved by {held.describe()}"),
                should_stop=self.stop.is_set,
            )
            ended = end_leftovers(transport)
            if ended:
                self._say("cleanup", f"ended {len(ended)} runner(s) that a previous controller "
                          f"left running on the device ({', '.join(ended)})")  # fmt: skip
            if not any(job.tool == PYTHON_RUNNER for job in jobs):
                return {}
            facts = check_device(self.device, transport)
            if facts.disk_free_bytes is not None and facts.disk_free_bytes < MIN_FREE_BYTES:
                raise TransportError(
                    self.device.name,
                    f"disk full: {facts.disk_free_bytes // 1024} KiB free in {facts.workdir}; "
                    "free space on the device or point `workdir` at a larger disk",
                )
            self.session.runner_path = install_runner(transport)
            return unusable_runtimes(facts.runtimes)

        return start_once

    def _with_retries(self, what: str, operation: Callable[[], T]) -> T:
        """`operation()`, again after backoff when the link fails (DeviceUnreachable);
        never for a job's own failure."""
        for retry in range(self.device.retries + 1):
            try:
                return operation()
            except DeviceUnreachable as exc:
                if retry == self.device.retries or self.stop.is_set():
                    raise
                wait_s = self.device.retry_backoff_s * 2**retry
                self._say("retry", f"{what}: {exc}; retry {retry + 1}/{self.device.retries} "
                          f"in {wait_s:g} s")  # fmt: skip
                self.stop.wait(wait_s)
        raise AssertionError("unreachable")

    def _process(self, job: Job, round_index: int) -> Attempt | JobRecord:
        """One process of the job (again after a link fault, and after a cooldown when it
        throttled and the device allows reruns): its result, or the job's failure record."""
        started_at, tries = utc_now(), 0

        def once() -> Attempt | Failure:
            nonlocal tries
            if tries:
                self._kill_leftovers(job)
            tries += 1
            if self.lease and self.lease.expires_at - time.time() < self.lease_ttl_s / 2:
                self.lease = refresh(self.session.transport, self.lease, self.lease_ttl_s)
            return attempt(job, self.session, round_index, self.stop)

        try:
            outcome = self._with_retries(job.job_id, once)
            reruns = 0
            while (
                isinstance(outcome, Attempt)
                and outcome.timings.get("throttle_reasons")
                and reruns < self.device.rerun_throttled
            ):
                reruns += 1
                self.emit(JobEvent("rerun", self.device.name, job.job_id, message="throttled"))
                outcome = self._with_retries(job.job_id, once)
                if isinstance(outcome, Attempt):
                    outcome.timings["reruns_after_throttling"] = reruns
        except (DeviceUnreachable, LeaseHeld) as exc:
            self.session.transport.close()
            self.quarantined = str(exc)
            self.emit(JobEvent("quarantine", self.device.name, job.job_id, message=str(exc)))
            error = (f"{exc} (tried {tries} time(s), lost mid-job; the device's remaining jobs "
                     "are skipped)")  # fmt: skip
            controller = {"lost": True, "attempts": tries}  # no result: --resume runs it again
            return self._save(job, started_at, "skipped", error=error, controller=controller)
        if isinstance(outcome, Failure):
            return self._save(job, started_at, outcome.status, error=outcome.error,
                              runner=outcome.doc, controller=outcome.timings)  # fmt: skip
        if tries > 1:
            outcome.timings["attempts"] = tries
        return outcome

    def _kill_leftovers(self, job: Job) -> None:
        """After a lost connection, the job's processes may still run on the device (and
        would disturb the retry): kill every process whose command line names the job."""
        marker = (
            self.session.job_path(job, ".")
            if job.tool == PYTHON_RUNNER
            else self.session.binary_paths.get(job.tool, "")
        )
        if marker:
            self.session.transport.run(
                ["sh", "-c", KILL_BY_ARGUMENT, "cleanup", marker], timeout_s=30
            )

    def _finish(self, job: Job, started_at: str, attempts: list[Attempt]) -> JobRecord:
        """The job's processes pooled into one record (harness/records.py)."""
        doc, latencies = pool_documents([a.doc for a in attempts])
        metrics: dict[str, Any] = {}
        evaluated = ResultDocument(doc).eval
        if evaluated and job.eval_file is not None:
            metrics = eval_metrics(evaluated["top_k"], _labels(job.eval_file, job.eval_labels))
        controller = pool_timings([a.timings for a in attempts])
        return self._save(job, started_at, "ok", runner=doc, latencies=latencies,
                          controller=controller, eval_metrics=metrics)  # fmt: skip

    def _say(self, kind: str, message: str) -> None:
        self.emit(JobEvent(kind, self.device.name, message=message))

    def _save(self, job: Job, started_at: str, status: str, **outcome: Any) -> JobRecord:
        facts = self.session.file_facts.get(job.model_file)
        record = JobRecord.of_job(
            job, self.device, self.store.run_id, started_at, utc_now(), status, facts, **outcome
        )
        self.store.write_job(record)
        self.emit(JobEvent("end", self.device.name, job.job_id, status, record.error or ""))
        return record


def _labels(path: Path, key: str) -> Any:
    import numpy as np

    with np.load(path) as data:
        return data[key]
