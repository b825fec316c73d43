"""The lab's one queue of jobs, kept by procrastinate (a PostgreSQL job queue) in the run
index's database: `submit` puts a run's jobs in it, `harness worker` (harness/lab/serve.py)
takes them.

Each device is a queue of its own (`device:NAME`) and a procrastinate lock of the same
name: a worker listens to the queues of the devices attached to it, and no two jobs of one
device are ever taken at once, whichever workers list it. Within a device, jobs go by
priority (a release gate's run before a PR's before a nightly's), then in the order they
were submitted.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import SharedStoreError
from harness.lab.job_doc import job_to_doc
from harness.lab.ledger import Ledger
from harness.shared import SharedStore, plan_name
from harness.transport import sha256_of

if TYPE_CHECKING:
    from procrastinate import App

    from harness.scheduler import PreparedRun

TASK = "harness.job"
PRIORITIES = {"release": 30, "pr": 20, "nightly": 10}
POOL_MAX = 2  # a worker's loop: one fetch, heartbeat or finish at a time


def device_queue(device: str) -> str:
    """A device's queue, and its lock: never two of its jobs at once."""
    return f"device:{device}"


def queue_app(url: str) -> App:
    """procrastinate over the run index's database (its pool checks a connection before
    use, so a PostgreSQL restart costs a reconnect)."""
    from procrastinate import App, PsycopgConnector

    connector = PsycopgConnector(
        conninfo=url, kwargs={"connect_timeout": 10}, min_size=1, max_size=POOL_MAX, timeout=30
    )
    return App(connector=connector)


@dataclass(frozen=True)
class Submitted:
    run_id: str
    jobs: int
    devices: list[str]
    priority: str
    files_uploaded: int


def submit(
    shared: SharedStore,
    prepared: PreparedRun,
    priority: str,
    log: Callable[[str], None] = lambda message: None,
) -> Submitted:
    """A prepared run into the queue: the files its jobs need into the object store (by
    content, once), the run and its jobs into the index (queued), then one queue job per
    job. The submitter's own run folder held only run.json: it is removed, the run lives
    in the shared store from here on."""
    if priority not in PRIORITIES:
        raise SharedStoreError(f"priority {priority!r}: one of {', '.join(PRIORITIES)}")
    jobs = prepared.jobs
    files = sorted({f for job in jobs for f in job.local_files() if f.is_file()})
    digests = {path: sha256_of(path) for path in files}
    uploaded = sum(shared.objects.put_blob(path, digests[path]) for path in files)
    log(f"{len(files)} file(s) the jobs need are in the object store ({uploaded} new)")
    store = prepared.store
    meta = store.read_run_meta()
    meta["queue"] = {"priority": priority, "submitted_from": shared.site}
    ledger = Ledger(shared.index)
    docs = [(job.job_id, job.device, job_to_doc(job, digests)) for job in jobs]
    ledger.add_run(store.run_id, shared.site, plan_name(meta), priority, meta, docs)
    try:
        asyncio.run(_defer(shared.url, store.run_id, [(j.job_id, j.device) for j in jobs],
                           PRIORITIES[priority]))  # fmt: skip
    except Exception as exc:  # the queue library's or the driver's: the submission is undone
        ledger.drop_run(store.run_id)
        raise SharedStoreError(
            f"the queue at {shared.describe()} did not take run {store.run_id}'s jobs "
            f"({type(exc).__name__}: {exc}); nothing was queued. Is the schema migrated "
            "(`harness store migrate`)?"
        ) from None
    shutil.rmtree(store.run_dir, ignore_errors=True)
    devices = sorted({job.device for job in jobs})
    return Submitted(store.run_id, len(jobs), devices, priority, uploaded)


async def _defer(url: str, run_id: str, jobs: list[tuple[str, str]], priority: int) -> None:
    by_device: dict[str, list[dict[str, Any]]] = {}
    for job_id, device in jobs:
        by_device.setdefault(device, []).append({"run_id": run_id, "job_id": job_id})
    app = queue_app(url)
    async with app.open_async():
        for device, arguments in by_device.items():
            deferrer = app.configure_task(
                TASK, queue=device_queue(device), lock=device_queue(device), priority=priority
            )
            await deferrer.batch_defer_async(*arguments)
