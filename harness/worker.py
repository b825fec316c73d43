"""One device's share of a run: connect, reserve, check, then its jobs in rounds.

The worker owns the device session, its lease (harness/lease.py), the health check, the
retries of link faults and the rounds of processes; what runs a process is behind the
execute seam (harness/execute/). A link fault is retried with backoff; a device still
unreachable is quarantined: its remaining jobs are recorded `skipped` with the reason.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.accuracy import EvalMetrics, eval_metrics
from harness.clock import SYSTEM_CLOCK, Clock
from harness.config import Device
from harness.data_files import eval_labels
from harness.device_start import start_device
from harness.errors import DeviceDiskFull, DeviceUnreachable, HarnessError, LeaseHeld
from harness.execute import DeviceSession
from harness.execute.attempt import Attempt, Failure, attempt
from harness.execute.session import runner_mode
from harness.jobs import Job
from harness.lease import Lease, new_lease, refresh, release
from harness.native.commands import PYTHON_RUNNER
from harness.records import JobRecord, pool_documents, pool_notes
from harness.runner.result_document import ResultDocument
from harness.store import RunStore, utc_now
from harness.transport import open_transport
from harness.transport.base import Transport

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


def with_retries(
    device: Device,
    stop: threading.Event,
    say: Callable[[str, str], None],
    what: str,
    operation: Callable[[], T],
    clock: Clock = SYSTEM_CLOCK,
) -> T:
    """`operation()`, again after backoff when the link fails (DeviceUnreachable), as
    the device's retry policy says; never for a job's own failure."""
    for retry in range(device.retry.times + 1):
        try:
            return operation()
        except DeviceUnreachable as exc:
            if retry == device.retry.times or stop.is_set():
                raise
            wait_s = device.retry.backoff_s * 2**retry
            say("retry", f"{what}: {exc}; retry {retry + 1}/{device.retry.times} in {wait_s:g} s")
            clock.wait(wait_s, stop)
    raise AssertionError("unreachable")


def job_eval_metrics(job: Job, doc: ResultDocument) -> EvalMetrics:
    """Accuracy against the eval set's labels (none when the manifest says `labels = ""`),
    or why there is none (`eval_error`): an eval that failed never takes the job's
    latencies with it."""
    evaluation = doc.eval
    if evaluation is not None and job.eval_file is not None and job.eval_labels:
        try:
            return eval_metrics(evaluation.top_k, eval_labels(job.eval_file, job.eval_labels))
        except (KeyError, ValueError, OSError) as exc:
            return {"eval_error": f"labels of {job.eval_file.name}: {exc}"}
    return {"eval_error": doc.eval_error} if doc.eval_error else {}


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
        transport: Transport | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`transport` and `clock` are the device's and the system's unless given (a unit
        test's scripted transport and a clock that moves only when waited on)."""
        self.device, self.store, self.emit, self.stop = device, store, emit, stop
        if transport is None:
            transport = open_transport(device, inventory)
        self.session = DeviceSession(
            device,
            transport,
            store.run_id,
            file_facts,
            clock=clock,
            runner_mode=runner_mode(device),
        )
        self.lease: Lease | None = None
        self.lease_ttl_s = 120.0
        self.quarantined: str | None = None  # why the device's remaining jobs are skipped

    def interrupt(self) -> None:
        """From another thread: kill the job running now (its record says `interrupted`)."""
        self.session.transport.interrupt()

    def run(self, jobs: list[Job]) -> list[JobRecord]:
        transport = self.session.transport
        cooldown_s = (
            self.device.thermal.cooldown_max_s
            if self.device.thermal.cooldown_c is not None
            else 0.0
        )
        longest_s = max(job.timeout_s for job in jobs) + cooldown_s
        self.lease_ttl_s = 2 * longest_s * (1 + self.device.thermal.rerun_throttled) + 120
        self.session.preload = sorted({job.runtime for job in jobs if job.tool == PYTHON_RUNNER})
        try:
            return self._rounds(jobs)
        finally:
            self.session.close_runner()
            if self.lease is not None:
                with contextlib.suppress(HarnessError):  # this run's job specs and scratch
                    transport.run(["rm", "-rf", self.session.run_folder()], timeout_s=30)
                with contextlib.suppress(HarnessError):
                    release(transport, self.lease)
            transport.close()

    def _rounds(self, jobs: list[Job]) -> list[JobRecord]:
        lease = new_lease(self.store.run_id, self.lease_ttl_s)
        try:
            self.lease, unusable = with_retries(
                self.device,
                self.stop,
                self._say,
                "starting",
                lambda: start_device(self.session, jobs, lease, self.stop, self._say),
                self.session.clock,
            )
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

    def _process(self, job: Job, round_index: int) -> Attempt | JobRecord:
        """One process of the job (again after a link fault, and after a cooldown when it
        throttled and the device allows reruns): its result, or the job's failure record."""
        started_at, tries = utc_now(), 0

        def once() -> Attempt | Failure:
            nonlocal tries
            if tries:
                self.session.end_job_processes(job)
            tries += 1
            clock = self.session.clock
            if self.lease and self.lease.expires_at - clock.time() < self.lease_ttl_s / 2:
                try:
                    self.lease = refresh(
                        self.session.transport, self.lease, self.lease_ttl_s, clock
                    )
                except DeviceDiskFull as exc:  # the lease file: a condition of the device
                    return Failure("skipped", f"{exc}; --resume runs this job", {})
            return attempt(job, self.session, round_index, self.stop)

        try:
            outcome = with_retries(
                self.device, self.stop, self._say, job.job_id, once, self.session.clock
            )
            reruns = 0
            while (
                isinstance(outcome, Attempt)
                and outcome.notes.get("throttle_reasons")
                and reruns < self.device.thermal.rerun_throttled
            ):
                reruns += 1
                self.emit(JobEvent("rerun", self.device.name, job.job_id, message="throttled"))
                outcome = with_retries(
                    self.device, self.stop, self._say, job.job_id, once, self.session.clock
                )
                if isinstance(outcome, Attempt):
                    outcome.notes["reruns_after_throttling"] = reruns
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
                              runner=outcome.doc, controller=outcome.notes)  # fmt: skip
        if tries > 1:
            outcome.notes["attempts"] = tries
        return outcome

    def _finish(self, job: Job, started_at: str, attempts: list[Attempt]) -> JobRecord:
        """The job's processes pooled into one record (harness/records.py)."""
        doc, latencies = pool_documents([a.doc for a in attempts])
        metrics = job_eval_metrics(job, ResultDocument(doc))
        controller = pool_notes([a.notes for a in attempts])
        return self._save(job, started_at, "ok", runner=doc, latencies=latencies,
                          controller=controller, eval_metrics=metrics)  # fmt: skip

    def _say(self, kind: str, message: str) -> None:
        self.emit(JobEvent(kind, self.device.name, message=message))

    def _save(self, job: Job, started_at: str, status: str, **outcome: Any) -> JobRecord:
        # a variant not built has no file: never the base model's size in its row
        facts = None if job.build_error else self.session.file_facts.get(job.model_file)
        record = JobRecord.of_job(
            job, self.device, self.store.run_id, started_at, utc_now(), status, facts, **outcome
        )
        self.store.write_job(record)
        self.emit(JobEvent("end", self.device.name, job.job_id, status, record.error or ""))
        return record
