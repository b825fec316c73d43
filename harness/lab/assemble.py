"""A queued run made whole: once every job has its record in the index, one controller
(the worker that recorded the last job, or `harness wait`, whichever claims it first)
writes the run folder from the records, its views and run.json as `harness run` does, and
publishes it as one (the files, then the index row). An assembler that dies is taken over
after `ASSEMBLY_STALE_S`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import SharedStoreError
from harness.lab.ledger import Ledger, RunProgress
from harness.records import JobRecord
from harness.shared import Published, SharedStore
from harness.store import RunStore

ASSEMBLY_STALE_S = 120.0
DONE = ("finished", "spooled")


def assemble(shared: SharedStore, ledger: Ledger, run_id: str, runs_dir: Path) -> Published | None:
    """The run written and published here, if it is complete and nobody else is doing it."""
    meta = ledger.claim_assembly(run_id, ASSEMBLY_STALE_S)
    if meta is None:
        return None
    run_dir = runs_dir / run_id
    shutil.rmtree(run_dir, ignore_errors=True)  # an assembly cut short, here
    (run_dir / "jobs").mkdir(parents=True)
    store = RunStore(run_dir)
    store.begin(meta)
    for data in ledger.records(run_id):
        store.write_job(JobRecord.from_json(data, f"the index's record of {run_id}"))
    store.finalize()
    store.mark_finished()
    return shared.publish(store)


class WaitTimedOut(SharedStoreError):
    exit_status = 1


def wait_for_run(
    shared: SharedStore,
    run_id: str,
    runs_dir: Path,
    poll_s: float = 2.0,
    timeout_s: float | None = None,
    on_progress: Callable[[RunProgress], None] = lambda progress: None,
) -> RunProgress:
    """Until the run is finished (or spooled); each change of its progress is told. A run
    whose jobs are all recorded but which nobody assembled (its worker died) is assembled
    here."""
    ledger = Ledger(shared.index)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last: RunProgress | None = None
    while True:
        progress = ledger.progress(run_id)
        if progress is None:
            raise SharedStoreError(
                f"the shared store at {shared.describe()} has no run '{run_id}' "
                "(`harness store status` lists its runs)"
            )
        if progress != last:
            on_progress(progress)
            last = progress
        if progress.status in DONE:
            return progress
        if progress.jobs and progress.recorded == progress.jobs:
            assemble(shared, ledger, run_id, runs_dir)
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimedOut(
                f"run {run_id} is not finished after {timeout_s:g} s ({progress.recorded} of "
                f"{progress.jobs} jobs recorded): it goes on; wait for it again with "
                f"`harness wait {run_id}`"
            )
        time.sleep(poll_s)
