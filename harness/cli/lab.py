"""A lab's one queue: submit a plan's jobs, serve them from each controller, wait for a run."""

from __future__ import annotations

import signal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.cli.common import (
    DevicesDir,
    RunsDir,
    app,
    command,
    make_console,
    plain_log,
    styled,
)
from harness.errors import Outcome, SharedStoreError

if TYPE_CHECKING:
    from harness.shared import SharedStore


class Priority(StrEnum):
    release = "release"
    pr = "pr"
    nightly = "nightly"


def _shared_store() -> SharedStore:
    from harness.shared import ENV_URL, SharedStore

    shared = SharedStore.from_environment()
    if shared is None:
        raise SharedStoreError(
            f"the queue lives in a shared store: set {ENV_URL}=postgresql://USER@HOST:PORT/DB "
            "(`harness store migrate` and `harness store init` make one)"
        )
    return shared


@command(app)
def submit(
    plan: Annotated[Path, typer.Argument(help="Plan TOML, e.g. plans/nightly.toml.")],
    priority: Annotated[
        Priority, typer.Option(help="release before pr before nightly, on every device.")
    ] = Priority.pr,
    devices: Annotated[
        str | None,
        typer.Option(help="A subset of the plan's devices: names and/or labels, e.g. class=pi5."),
    ] = None,
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Also profile each job layer by layer, in its own process."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Print the run id only (for a CI step's output).")
    ] = False,
) -> None:
    """Queue a plan's jobs for the lab's workers (`harness worker`); `harness wait RUN`
    follows the run to its end."""
    from harness.lab.queue import submit as submit_run
    from harness.scheduler import prepare_run

    shared = _shared_store()
    console = make_console()
    log = (lambda text: None) if quiet else plain_log(console)
    prepared = prepare_run(
        plan,
        only_devices=devices.split(",") if devices is not None else None,
        log=log,
        profile=profile,
    )
    submitted = submit_run(shared, prepared, priority.value, log)
    if quiet:
        print(submitted.run_id)
        return
    console.print(
        styled(
            "run ",
            (submitted.run_id, "bold"),
            f": {submitted.jobs} jobs on {len(submitted.devices)} device(s) queued at "
            f"priority {submitted.priority}",
        )
    )
    console.print(f"next: harness wait {submitted.run_id}")


@command(app)
def worker(
    devices: Annotated[
        str | None,
        typer.Option(help="The devices this controller serves: names and/or labels (all)."),
    ] = None,
    devices_dir: DevicesDir = Path("devices"),
    runs_dir: RunsDir = Path("reports/runs"),
    heartbeat_s: Annotated[
        float, typer.Option(help="Seconds between heartbeats; a worker silent 3x this is dead.")
    ] = 10.0,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Stop once no job waits for these devices.")
    ] = False,
) -> None:
    """Serve the lab's queue: run the submitted jobs of the devices attached here, one at a
    time per device, until stopped (Ctrl-C, SIGTERM: the running jobs go back to the queue)."""
    from harness.config import load_inventory, select_devices
    from harness.errors import ConfigError
    from harness.lab.serve import LabWorker

    shared = _shared_store()
    problems: dict[str, ConfigError] = {}
    inventory = load_inventory(devices_dir, problems)
    targets = sorted(n for n, d in inventory.items() if d.role != "gateway")
    names = select_devices(targets, inventory, devices.split(",")) if devices else targets
    for name in names:
        if name in problems:
            raise problems[name]
    console = make_console()
    lab_worker = LabWorker(shared, inventory, names, runs_dir, heartbeat_s, until_idle,
                           plain_log(console))  # fmt: skip

    def stop(signum: int, frame: object) -> None:
        console.print("stopping: the running jobs are given back to the queue")
        lab_worker.stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    tally = lab_worker.serve()
    console.print(
        f"worker {lab_worker.name}: {tally.ran} job(s) run, {tally.requeued} given back by "
        f"dead workers, {tally.given_up} given up, {len(tally.runs_assembled)} run(s) published"
    )
    if lab_worker.stop.is_set():
        raise Outcome("stopped", 143)


@command(app)
def wait(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="A run id `harness submit` gave.")],
    runs_dir: RunsDir = Path("reports/runs"),
    timeout_s: Annotated[
        float | None, typer.Option(help="Give up waiting after this long (exit 1).")
    ] = None,
    poll_s: Annotated[float, typer.Option(help="Seconds between looks at the index.")] = 2.0,
) -> None:
    """Wait until a submitted run is complete, print it, and exit as `harness run` would:
    0 every job ok, 1 some did not succeed."""
    from harness.cli.display import print_tables
    from harness.lab.assemble import wait_for_run
    from harness.lab.ledger import RunProgress
    from harness.shared import cache_dir

    shared = _shared_store()
    console = make_console()

    def say(progress: RunProgress) -> None:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(progress.statuses.items()))
        console.print(
            f"run {run_id}: {progress.status}, {progress.recorded} of {progress.jobs} jobs "
            f"recorded" + (f" ({counts})" if counts else "")
        )

    progress = wait_for_run(shared, run_id, runs_dir, poll_s, timeout_s, say)
    if progress.status == "finished":
        store = shared.fetch(run_id, cache_dir(runs_dir))
        results, _ = store.frames()
        print_tables(console, results, run_id)
        console.print(f"shared store: {progress.location}")
    else:
        console.print(
            f"warning: run {run_id} is spooled on the controller that assembled it "
            f"({progress.location}): `harness store sync` there uploads it"
        )
    ok = progress.statuses.get("ok", 0)
    if ok < progress.jobs:
        raise Outcome(f"{progress.jobs - ok} of {progress.jobs} jobs did not succeed")
