"""One attempt at a queued job, in a lab worker's thread: claimed in the index, its files
fetched by content, its device's lease row taken, run exactly as `harness run` runs it
(scheduler.run_jobs: the session, the device's own lease, retries, rounds), recorded.

Whatever happens, the job ends with one record or goes back to the queue: a run never
waits for a job that nobody will run. The index going away is waited out
(`IndexUnreachable`); a library that crashes is the job's `error`, with what it said.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from harness.config import Device
from harness.errors import HarnessError, SharedStoreError
from harness.lab.assemble import assemble
from harness.lab.job_doc import JobDocError, job_from_doc
from harness.lab.ledger import Claimed, Ledger
from harness.records import JobRecord
from harness.scheduler import run_jobs
from harness.shared import SharedStore, cache_dir
from harness.shared.index import IndexUnreachable, RunIndex
from harness.store import RunStore, utc_now

if TYPE_CHECKING:
    from harness.jobs import Job

T = TypeVar("T")
PATIENCE_S = (1.0, 2.0, 5.0, 10.0)  # the waits between tries while the index is away
INDEX_WAIT_S = 1800.0  # then the attempt gives up; its queue job is left to the sweep
GIVEN_BACK = "todo"  # the queue job's status for a job handed back (the worker stops)
DONE = "succeeded"


@dataclass
class WorkerTally:
    ran: int = 0
    requeued: int = 0
    given_up: int = 0
    runs_assembled: list[str] = field(default_factory=list)


@dataclass
class Attempts:
    """What a worker's threads share: where things are, who it is, when to stop."""

    shared: SharedStore  # for threads: `SharedStore.for_threads`
    inventory: dict[str, Device]
    runs_dir: Path
    name: str  # the worker's, in the index: site/host:pid
    heartbeat_s: float
    stop: threading.Event
    log: Callable[[str], None]
    tally: WorkerTally = field(default_factory=WorkerTally)

    @property
    def index(self) -> RunIndex:
        return self.shared.index

    @property
    def lease_ttl_s(self) -> float:
        return 3 * self.heartbeat_s

    def patiently(self, operation: Callable[[], T], what: str) -> T:
        """`operation()`, tried again while the index is unreachable (a restart)."""
        deadline = time.monotonic() + INDEX_WAIT_S
        for retry in range(1_000_000):
            try:
                return operation()
            except IndexUnreachable as exc:
                if time.monotonic() > deadline:
                    raise
                if retry == 0:
                    self.log(f"{what}: waiting for the run index: {exc}")
                time.sleep(PATIENCE_S[min(retry, len(PATIENCE_S) - 1)])
        raise AssertionError("unreachable")

    # -- the attempt ---------------------------------------------------------------------

    def run(self, run_id: str, job_id: str, device_name: str) -> str:
        """The queue job's status: 'succeeded' (recorded, here or before), or 'todo' when
        this worker was asked to stop before the job had a record."""
        ledger = Ledger(self.index)
        claimed = self.patiently(lambda: ledger.claim(run_id, job_id, self.name), job_id)
        if claimed is not None:
            record = self._attempt(ledger, claimed, self.inventory[device_name])
            if record is None:
                return GIVEN_BACK
            self._write_record(ledger, claimed, record)
            self.tally.ran += 1
        self.assemble(ledger, run_id)  # also a run an earlier attempt did not assemble
        return DONE

    def _attempt(self, ledger: Ledger, claimed: Claimed, device: Device) -> JobRecord | None:
        job = job_from_doc(claimed.spec, lambda sha256, name: Path(name))  # for its record
        try:
            job = job_from_doc(claimed.spec, self._fetch)
        except (HarnessError, JobDocError) as exc:
            return failure_record(claimed, job, device, f"its files: {exc}")
        if not self._take_device(ledger, device.name, claimed.run_id):
            return None
        try:
            return self._run_job(claimed, job)
        except Exception as exc:  # a library that crashed: the job's error, never the worker's
            if self.stop.is_set():
                return None
            return failure_record(claimed, job, device, f"the worker failed: {exc!r}")
        finally:
            with contextlib.suppress(SharedStoreError):
                ledger.release_device(device.name, self.name)

    def _fetch(self, sha256: str | None, name: str) -> Path:
        if sha256 is None:
            return Path(name)  # a variant that was not built: its record says why
        target = cache_dir(self.runs_dir.resolve()) / "blobs" / sha256 / name
        return self.shared.objects.get_blob(sha256, target)

    def _take_device(self, ledger: Ledger, device: str, run_id: str) -> bool:
        """The device's lease row, waited for while another worker holds it."""
        said = False
        while not self.stop.is_set():
            holder = self.patiently(
                lambda: ledger.take_device(device, self.name, run_id, self.lease_ttl_s), device
            )
            if holder is None:
                return True
            if not said:
                self.log(f"{device}: waiting for its lease, held by {holder}")
                said = True
            self.stop.wait(self.heartbeat_s / 2)
        return False

    def _run_job(self, claimed: Claimed, job: Job) -> JobRecord | None:
        """The job run in its attempt's own folder (removed once the index has the record,
        which is on disk until then). None if the worker was stopped."""
        folder = self.runs_dir / ".queue" / f"{job.job_id}.{claimed.attempt}"
        shutil.rmtree(folder, ignore_errors=True)
        (folder / claimed.run_id / "jobs").mkdir(parents=True)
        spool = RunStore(folder / claimed.run_id)
        spool.begin(claimed.run_meta)
        done = threading.Event()
        beat = threading.Thread(target=self._beat_lease, args=(job.device, done), daemon=True)
        beat.start()
        try:
            records = run_jobs([job], self.inventory, spool, stop=self.stop)
        finally:
            done.set()
            beat.join()
        if self.stop.is_set():
            shutil.rmtree(folder, ignore_errors=True)  # given back: not a result
            return None
        return records[0] if records else spool.records()[0]

    def _beat_lease(self, device: str, done: threading.Event) -> None:
        ledger = Ledger(self.index)
        while not done.wait(self.heartbeat_s):
            with contextlib.suppress(SharedStoreError):
                ledger.refresh_devices([device], self.name, self.lease_ttl_s)

    def _write_record(self, ledger: Ledger, claimed: Claimed, record: JobRecord) -> None:
        """The job's one record; dropped only when a later attempt owns the job (this one
        was given up for dead)."""
        kept = self.patiently(
            lambda: ledger.record(
                claimed.run_id, claimed.job_id, claimed.attempt, record.status, record.to_json()
            ),
            claimed.job_id,
        )
        if not kept:
            self.log(
                f"{claimed.job_id}: attempt {claimed.attempt} was given up for dead and the "
                "job taken again: this attempt's record is dropped"
            )
        shutil.rmtree(self.runs_dir / ".queue" / f"{claimed.job_id}.{claimed.attempt}",
                      ignore_errors=True)  # fmt: skip

    def assemble(self, ledger: Ledger, run_id: str) -> None:
        """The run made whole here if this was its last job; if the index or the object
        store fails now, `harness wait` (or the next worker) does it."""
        try:
            published = assemble(self.shared, ledger, run_id, self.runs_dir)
        except SharedStoreError as exc:
            self.log(f"run {run_id}: not assembled here ({exc}); `harness wait` does it")
            return
        if published is not None:
            self.tally.runs_assembled.append(run_id)
            self.log(f"run {run_id}: every job recorded; {published.status} ({published.location})")

    # -- a job whose workers died ----------------------------------------------------------

    def give_up(self, run_id: str, job_id: str, device_name: str, times: int) -> None:
        """A job whose worker died on it `times` times: recorded `error` with the reason."""
        ledger = Ledger(self.index)
        found = ledger.spec(run_id, job_id)
        claimed = ledger.claim(run_id, job_id, self.name)
        if found is None or claimed is None:
            return
        why = (
            f"its worker died mid-job {times} times (the last {found[1]}): the job was "
            "given back once and is not tried again"
        )
        job = job_from_doc(claimed.spec, lambda sha256, name: Path(name))
        record = failure_record(claimed, job, self.inventory[device_name], why)
        self._write_record(ledger, claimed, record)
        self.tally.given_up += 1
        self.log(f"{device_name}: job {job_id}: {why}")
        self.assemble(ledger, run_id)


def failure_record(claimed: Claimed, job: Job, device: Device, why: str) -> JobRecord:
    now = utc_now()
    return JobRecord.of_job(job, device, claimed.run_id, now, now, "error", None, error=why)
