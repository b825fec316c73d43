"""The shared store of a lab: migrate its run index, name its object store, show it, and
upload what this controller holds back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.cli.common import RunsDir, command, make_console, shown, store_app, styled
from harness.errors import Outcome, SharedStoreError

if TYPE_CHECKING:
    from harness.shared import SharedStore


def _url() -> str:
    from harness.shared import ENV_URL, configured_url

    url = configured_url()
    if url is None:
        raise SharedStoreError(
            f"no shared store: set {ENV_URL}=postgresql://USER@HOST:PORT/DATABASE (the "
            "password from PGPASSWORD or ~/.pgpass)"
        )
    return url


def _opened() -> SharedStore:
    """The configured store, its schema checked."""
    from harness.shared import SharedStore

    _url()  # says how to set it when it is not
    store = SharedStore.from_environment()
    assert store is not None
    return store


@command(store_app, "migrate")
def store_migrate() -> None:
    """Create the run index, or bring its schema to this harness's version."""
    from harness.shared import SharedStore

    store = SharedStore(_url())
    before, after = store.index.migrate()
    console = make_console()
    if before == after:
        console.print(f"run index at {store.describe()}: schema {after}, nothing to do")
    else:
        console.print(f"run index at {store.describe()}: schema {before or 'none'} -> {after}")


@command(store_app, "init")
def store_init(
    objects: Annotated[
        str,
        typer.Option(help="s3://BUCKET/PREFIX?endpoint=http://HOST:PORT (no credentials)."),
    ],
) -> None:
    """Name the object store that holds the lab's run files (checked before it is kept)."""
    from harness.shared import SharedStore

    store = SharedStore(_url())
    store.index.check()
    location = store.init(objects)
    make_console().print(f"run index at {store.describe()}: run files in {location.url()}")


@command(store_app, "status")
def store_status(
    plan: Annotated[str | None, typer.Option(help="Only this plan's runs.")] = None,
) -> None:
    """The runs the index holds: where each is, running, spooled or finished."""
    store = _opened()
    console = make_console()
    runs = store.index.runs(plan=plan)
    console.print(f"run index at {store.describe()}: {len(runs)} run(s)")
    for run in runs:
        console.print(
            f"  {run['run_id']}  {run['status']:8}  {run['site']}  {run['location'] or ''}"
        )


@command(store_app, "sync")
def store_sync(runs_dir: RunsDir = Path("reports/runs")) -> None:
    """Upload the runs this controller holds back (spooled while the object store was
    down, or finished while the index was)."""
    store = _opened()
    console = make_console()
    published = store.sync(runs_dir)
    for item in published:
        console.print(
            styled((item.run_id, "bold"), f": {item.status} ({item.location})")
            if item.status == "finished"
            else styled((item.run_id, "bold"), f": still spooled: {item.why}")
        )
    if not published:
        console.print(f"nothing to upload from {shown(runs_dir)}")
    if any(p.status != "finished" for p in published):
        raise Outcome(
            "some runs are still spooled on this controller: run `harness store sync` again"
        )
