"""The workflow: compress, run, merge, calibrate, fetch the bundled models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from harness.cli.common import (
    DevicesDir,
    RunsDir,
    Terminated,
    app,
    command,
    make_console,
    models_app,
    plain_log,
    shown,
    signals_stop_once,
    styled,
)
from harness.cli.display import Progress, brief, print_comparison, print_tables
from harness.errors import Outcome, UsageError

if TYPE_CHECKING:
    from harness.store import RunStore

T = TypeVar("T")


@command(app)
def run(
    plan: Annotated[Path, typer.Argument(help="Plan TOML, e.g. plans/quickstart.toml.")],
    devices: Annotated[
        str | None,
        typer.Option(help="A subset of the plan's devices: names and/or labels, e.g. class=pi5."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(metavar="RUN", help="Finish this run: only jobs without a result run."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(metavar="I/N", help="Only the I-th of N shares of the devices (CI matrix)."),
    ] = None,
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Also profile each job layer by layer, in its own process."),
    ] = False,
) -> None:
    """Run a plan: models x variants x devices x runtime settings."""
    from harness.config import parse_shard
    from harness.records import RESUMABLE_STATUSES, failure_summary
    from harness.scheduler import prepare_run, run_prepared
    from harness.shared import SharedStore

    console = make_console()
    shared = SharedStore.from_environment()  # a store set but unusable: exit 2 before any job
    prepared = prepare_run(
        plan,
        only_devices=devices.split(",") if devices is not None else None,
        log=plain_log(console),
        resume=resume,
        shard=parse_shard(shard) if shard else None,
        profile=profile,
    )
    if shared is not None:
        _shared_step(console, shared.begin, prepared.store)
    pending = prepared.pending_jobs()
    finished = len(prepared.jobs) - len(pending)
    console.print(
        styled(
            "run ",
            (prepared.store.run_id, "bold"),
            f": {len(prepared.jobs)} jobs on {len({j.device for j in prepared.jobs})} device(s)"
            + (f", {finished} already finished (kept as they are)" if finished else ""),
        )
    )
    try:
        with Progress(console, pending) as progress, signals_stop_once():
            records = run_prepared(prepared, on_event=progress.on_event)
    except KeyboardInterrupt as exc:
        signal_name = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        raise Outcome(
            f"interrupted ({signal_name}): the running jobs were stopped and recorded as "
            f"interrupted; finished jobs are in {shown(prepared.store.run_dir)}. Finish the "
            f"run with: harness run {plan} --resume {prepared.store.run_id}",
            143 if isinstance(exc, Terminated) else 130,
        ) from None
    results, samples = prepared.store.frames()
    print_tables(console, results, prepared.store.run_id)
    print_comparison(
        console, results, samples, only_with_variants=True,
        comparisons=prepared.store.comparisons(), tolerances=prepared.plan.quality,
    )  # fmt: skip
    console.print(f"run directory: {shown(prepared.store.run_dir)}")
    if shared is not None:
        published = _shared_step(console, shared.publish, prepared.store)
        if published is not None and published.status == "finished":
            console.print(f"shared store: {published.location} ({published.files} files)")
        elif published is not None:
            console.print(
                f"warning: the object store did not take the run ({published.why}); it stays "
                f"spooled here, and the index says so: `harness store sync` uploads it"
            )
    failures = failure_summary(records)
    for line in failures:
        console.print(f"  {line.device}: {line.count} job(s) {line.status} ({line.reason})")
    if not failures:
        run_id = prepared.store.run_id
        console.print(
            f"next: harness report {run_id}  (the page), harness show {run_id} --compare, "
            f"harness gate BUDGETS.toml {run_id}  (a release decision)"
        )
    if failures:
        failed = sum(line.count for line in failures)
        resumable = any(line.status in RESUMABLE_STATUSES for line in failures)
        later = f"; run the skipped jobs later: harness run {plan} --resume {prepared.store.run_id}"
        raise Outcome(
            f"{failed} of {len(records)} jobs did not succeed{later if resumable else ''}"
        )


def _shared_step(console: Any, step: Callable[[RunStore], T], store: RunStore) -> T | None:
    """A step of the shared store that must not cost the run: its failure is a warning;
    the run is on this controller's disk, and `harness store sync` catches up."""
    from harness.errors import SharedStoreError

    try:
        return step(store)
    except SharedStoreError as exc:
        console.print(
            f"warning: shared store: {exc}; the run is in {shown(store.run_dir)}, and "
            "`harness store sync` records it when the store is back"
        )
        return None


@command(app)
def merge(
    runs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Runs to combine.")],
    runs_dir: RunsDir = Path("reports/runs"),
) -> None:
    """Combine runs of one plan (its shards) into a new run directory."""
    from harness.shared import resolve_run
    from harness.store import merge_runs

    console = make_console()
    merged = merge_runs([resolve_run(runs_dir, ref) for ref in runs], runs_dir)
    count = len(merged.records())
    console.print(f"merged {len(runs)} runs ({count} jobs) into {shown(merged.run_dir)}")


@command(app)
def calibrate(
    device: Annotated[str, typer.Argument(help="Device name.")],
    model: Annotated[str, typer.Option(help="Model manifest to time.")] = "tiny_mbv2",
    processes: Annotated[
        int, typer.Option(help="Fresh runner processes: floors for jobs of up to half as many.")
    ] = 20,
    iterations: Annotated[int, typer.Option(help="Timed iterations per process.")] = 200,
    devices_dir: DevicesDir = Path("devices"),
    models_dir: Annotated[Path, typer.Option(help="Folder of model manifests.")] = Path("models"),
    runs_dir: RunsDir = Path("reports/runs"),
) -> None:
    """Measure the device's noise floor: how far apart identical jobs of 1 .. processes/2
    processes land. `harness compare` never uses a threshold below it for this device."""
    from harness.calibration_store import write_calibration
    from harness.history import calibration_floors
    from harness.scheduler import calibration_run

    console = make_console()
    if processes < 2:
        raise UsageError(
            f"a noise floor compares processes: run with --processes 2 or more (got {processes};"
            " 20 gives floors for jobs of up to 10 processes)"
        )
    store, records = calibration_run(
        device, model, processes, iterations, devices_dir, models_dir, runs_dir
    )
    failed = [r for r in records if r.status != "ok"]
    if failed:
        raise Outcome(f"calibration job failed: {failed[0].error}")
    floors = calibration_floors(store.frames()[1])
    out = write_calibration(runs_dir.parent / "calibration", device, floors, model=model,
                            processes=processes, run_id=store.run_id)  # fmt: skip
    console.print(
        f"noise floor of {device} (p95 of how far apart two identical jobs land), by processes "
        f"per job: " + ", ".join(f"{n}: ±{floor:.1%}" for n, floor in floors.items())
    )
    console.print(f"wrote {shown(out)}")


@command(app)
def compress(
    model: Annotated[str, typer.Argument(help="Model manifest name (in models/) or path.")],
    models_dir: Annotated[Path, typer.Option(help="Folder of model manifests.")] = Path("models"),
    dims: Annotated[
        str,
        typer.Option(help="Dynamic dims for calibration and the check run: batch=1,height=640."),
    ] = "",
) -> None:
    """Build the model's variants (cached: only what changed is rebuilt), each verified:
    it loads, runs one inference and changed what its strategy claims."""
    from harness.cli.fit import Column, print_fitted
    from harness.compress import BuildContext, build_all
    from harness.config import load_manifest, manifest_path, parse_dims
    from harness.representative import with_representative_sets
    from harness.scheduler import variant_cache_dir

    console = make_console()
    path = manifest_path(model, models_dir)
    manifest = load_manifest(path)
    given = parse_dims(dims)
    [manifest] = with_representative_sets(
        [manifest], variant_cache_dir(path.parent), plain_log(console)
    )
    built = build_all(
        [manifest],
        None,
        variant_cache_dir(path.parent),
        lambda manifest: BuildContext(manifest, given),
        log=plain_log(console),
    )
    rows: list[list[str]] = []
    styles: list[str | None] = []
    for (_, variant), result in built.items():
        if result.error:
            status = "no effect" if result.status == "no-effect" else "not built"
            rows.append([variant, status, "", "", result.error])
            styles.append("red")
            continue
        assert result.path is not None
        summary = {k: v for k, v in result.report.items() if k not in ("params", "base_sha256")}
        cache = {True: "cached", False: "rebuilt", None: "as given"}[result.cached]
        rows.append(
            [variant, cache, result.path.name, str(result.path.stat().st_size), brief(summary)]
        )
        styles.append(None)
    columns = [Column("variant"), Column("cache"), Column("file"), Column("bytes", numeric=True),
               Column("what it did", prose=True)]  # fmt: skip
    print_fitted(console, columns, rows, styles=styles, drop_first=("file",))
    console.print(f"files in {shown(variant_cache_dir(path.parent))}")
    not_built = [f"{model}/{variant}" for (model, variant), r in built.items() if r.error]
    if not_built:
        raise Outcome(f"{len(not_built)} variant(s) not built: {', '.join(not_built)}")


@command(models_app, "fetch")
def models_fetch(
    models_dir: Annotated[Path, typer.Option(help="Folder of model manifests.")] = Path("models"),
) -> None:
    """Create the bundled model files the manifests describe (generate or extract), and
    the sample data their [data] tables read (models/data/*.toml)."""
    from harness.bundled import fetch_all
    from harness.sample_data import fetch_sample_data

    console = make_console()
    made = fetch_all(models_dir, log=plain_log(console))
    data = fetch_sample_data(models_dir, log=plain_log(console))
    console.print(
        f"{len(made)} model file(s) and {len(data)} sample data file(s) created; the others "
        "were up to date"
    )
