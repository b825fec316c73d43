"""`harness worker`: a controller serving the queue for the devices attached to it.

The loop (asyncio, on procrastinate's job manager) takes the next job for each idle device
of its own, runs it in a thread exactly as `harness run` does (scheduler.run_jobs: the
session, the device's own lease, retries, rounds), records it in the index, and tells the
queue. It beats every `heartbeat_s`: procrastinate's worker heartbeat, and the index's
device leases of the jobs it runs.

A worker that dies stops beating. Any live worker serving the same device then finds the
job stalled (no heartbeat for `3 x heartbeat_s`) and puts it back in the queue once; the
second time it is recorded `error` with the reason. The next worker waits for the dead
one's device lease to expire, and the device's own lease ends what the dead controller
left running there before the job runs again; a record is accepted only from the job's
current attempt (harness/lab/ledger.py). So a job has one record, and never two runners.

A PostgreSQL that goes away is waited for: the loop reconnects, the worker keeps its
identity, and a record not yet written stays on disk and is written when the index is back.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import Device
from harness.errors import SharedStoreError
from harness.lab.attempt import GIVEN_BACK, Attempts, WorkerTally
from harness.lab.queue import TASK, device_queue, queue_app
from harness.shared import SharedStore
from harness.shared.index import RunIndex

if TYPE_CHECKING:
    import psycopg
    from procrastinate.jobs import Job as QueueJob
    from procrastinate.manager import JobManager

RECONNECT_S = (1.0, 2.0, 5.0, 10.0)
SWEEP_LOCK = 7_210_001  # the advisory lock one sweeper at a time holds (any constant)
GIVE_UP_AFTER = 1  # a job whose worker died goes back to the queue this many times


class LabWorker:
    def __init__(
        self,
        shared: SharedStore,
        inventory: dict[str, Device],
        devices: list[str],
        runs_dir: Path,
        heartbeat_s: float = 10.0,
        until_idle: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.shared, self.devices, self.until_idle, self.log = shared, devices, until_idle, log
        self.heartbeat_s, self.stalled_s = heartbeat_s, 3 * heartbeat_s
        self.name = f"{shared.site}/{socket.gethostname()}:{os.getpid()}"
        self.stop = threading.Event()
        threads = shared.for_threads()  # the jobs' threads share a pool of connections
        self.attempts = Attempts(threads, inventory, runs_dir, self.name, heartbeat_s, self.stop,
                                 log)  # fmt: skip
        self.tally = self.attempts.tally
        self._sweep_lock = RunIndex(shared.url)  # the connection that holds the sweep's lock
        self._pending_finish: list[tuple[QueueJob, str]] = []

    # -- the loop ------------------------------------------------------------------------

    def serve(self) -> WorkerTally:
        try:
            asyncio.run(self._serve())
        finally:
            self._sweep_lock.close()
            self.attempts.index.close()
        return self.tally

    async def _serve(self) -> None:
        import psycopg
        import psycopg_pool
        from procrastinate.exceptions import ConnectorException

        app = queue_app(self.shared.url)
        worker_id: int | None = None
        running: dict[str, asyncio.Task[str]] = {}
        failures = 0
        while True:
            try:
                async with app.open_async():
                    manager = app.job_manager
                    if worker_id is None:
                        worker_id = await manager.register_worker()
                        self.log(f"worker {self.name}: serving {', '.join(self.devices)}")
                    failures = 0
                    await self._loop(manager, worker_id, running)
                    await manager.unregister_worker(worker_id)
                    return
            except (ConnectorException, psycopg.OperationalError, psycopg.InterfaceError,
                    psycopg_pool.PoolTimeout, SharedStoreError) as exc:  # fmt: skip
                wait_s = RECONNECT_S[min(failures, len(RECONNECT_S) - 1)]
                failures += 1
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                self.log(f"the run index is unreachable ({first}): reconnecting in {wait_s:g} s")
                await asyncio.sleep(wait_s)

    async def _loop(
        self, manager: JobManager, worker_id: int, running: dict[str, asyncio.Task[str]]
    ) -> None:
        last_beat = 0.0
        while True:
            for device, task in list(running.items()):
                if task.done():
                    del running[device]
            await self._finish_pending(manager)
            if time.monotonic() - last_beat >= self.heartbeat_s:
                await manager.update_heartbeat(worker_id)
                await self._sweep(manager)
                last_beat = time.monotonic()
            # the next job of any idle device: one query however many devices are idle
            idle = {device_queue(d): d for d in self.devices if d not in running}
            took = False
            while idle and not self.stop.is_set():
                job = await manager.fetch_job(queues=list(idle), worker_id=worker_id)
                if job is None:
                    break
                took = True
                device = idle.pop(job.queue)
                running[device] = asyncio.create_task(self._run(job, device))
            if self.stop.is_set() or (self.until_idle and not running and not took):
                if running:
                    await asyncio.wait(list(running.values()))
                    running.clear()
                await self._finish_pending(manager)
                return
            await asyncio.sleep(min(0.5, self.heartbeat_s / 2))

    async def _run(self, job: QueueJob, device: str) -> str:
        arguments = dict(job.task_kwargs)
        try:
            status = await asyncio.to_thread(
                self.attempts.run, str(arguments["run_id"]), str(arguments["job_id"]), device
            )
        except Exception as exc:  # a defect of ours: the queue job fails, the worker goes on
            import traceback

            self.log(f"{device}: job {arguments.get('job_id')} failed in the worker: {exc!r}")
            self.log(traceback.format_exc())  # for the report of a defect
            status = "failed"
        self._pending_finish.append((job, status))
        return status

    async def _finish_pending(self, manager: JobManager) -> None:
        from procrastinate.jobs import Status

        while self._pending_finish:
            job, status = self._pending_finish[0]
            if status == GIVEN_BACK:  # the worker was asked to stop
                await manager.retry_job(job)
            else:
                await manager.finish_job(job, Status(status), delete_job=False)
            self._pending_finish.pop(0)

    async def _sweep(self, manager: JobManager) -> None:
        """The jobs of this worker's devices whose worker stopped beating: back in the
        queue once, then recorded `error`. One sweeper at a time in the lab (a session
        advisory lock, released at the end, or with the connection if this worker dies)."""
        lock = self._sweep_lock

        def take(db: psycopg.Connection[Any]) -> bool:
            row = db.execute("SELECT pg_try_advisory_lock(%s)", (SWEEP_LOCK,)).fetchone()
            return bool(row and row[0])

        if not await asyncio.to_thread(lock.transact, take):
            return
        try:
            mine = {device_queue(d): d for d in self.devices}
            stalled = await manager.get_stalled_jobs(
                task_name=TASK, seconds_since_heartbeat=self.stalled_s
            )
            for job in stalled:
                if job.queue in mine:
                    await self._reclaim(manager, job, mine[job.queue])
            await manager.prune_stalled_workers(self.stalled_s)
        finally:
            await asyncio.to_thread(
                lock.transact, lambda db: db.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK,))
            )

    async def _reclaim(self, manager: JobManager, job: QueueJob, device: str) -> None:
        from procrastinate.jobs import Status

        arguments = dict(job.task_kwargs)
        run_id, job_id = str(arguments["run_id"]), str(arguments["job_id"])
        if job.attempts < GIVE_UP_AFTER:
            await manager.retry_job(job)
            self.tally.requeued += 1
            self.log(f"{device}: job {job_id}'s worker stopped beating: back in the queue")
            return
        await asyncio.to_thread(self.attempts.give_up, run_id, job_id, device, job.attempts + 1)
        await manager.finish_job(job, Status.FAILED, delete_job=False)
