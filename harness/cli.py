"""The `harness` command line: parse, call the library, print. No logic lives here.

Heavy modules (pandas, paramiko, onnx, pydantic) are imported inside the commands so that
`harness --help` stays fast.

Exit codes: 0 all jobs ok; 1 some jobs failed, timed out or were skipped (their results
are on disk); 2 bad input (configuration, unknown run); 130 interrupted (Ctrl-C), 143
terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from harness.scheduler import JobEvent

app = typer.Typer(
    help="Benchmark compressed neural networks on your own edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
devices_app = typer.Typer(help="The device inventory (devices/*.toml).", no_args_is_help=True)
models_app = typer.Typer(help="Model manifests and bundled models.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
app.add_typer(models_app, name="models")

DevicesDir = Annotated[
    Path, typer.Option(envvar="HARNESS_DEVICES_DIR", help="Folder of device TOML files.")
]
RunsDir = Annotated[
    Path, typer.Option(envvar="HARNESS_RUNS_DIR", help="Folder holding run directories.")
]
RunRef = Annotated[str, typer.Argument(metavar="RUN", help="A run id, a path, or 'latest'.")]
Baseline = Annotated[str | None, typer.Option(help="Baseline run for max_regression_pct.")]


def _console() -> Console:
    from rich.console import Console

    # Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, `kill`): stopped like Ctrl-C, exit status 143."""


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    def raise_terminated(signum: int, frame: object) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _plain(console: Console) -> Any:
    """A log function for library messages: they hold paths, device output and TOML keys
    in brackets, never rich markup."""
    return lambda text: console.print(text, markup=False, soft_wrap=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.markup import escape

    _console().print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


@app.command()
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
) -> None:
    """Run a plan: models x variants x devices x runtime settings."""
    from harness.config import parse_shard
    from harness.errors import HarnessError
    from harness.records import RESUMABLE_STATUSES
    from harness.scheduler import prepare_run, run_prepared

    console = _console()
    try:
        prepared = prepare_run(
            plan,
            only_devices=devices.split(",") if devices else None,
            log=_plain(console),
            resume=resume,
            shard=parse_shard(shard) if shard else None,
        )
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    done = prepared.store.finished_job_ids()
    pending = [job for job in prepared.jobs if job.job_id not in done]
    finished = len(prepared.jobs) - len(pending)
    console.print(
        f"run [bold]{prepared.store.run_id}[/bold]: {len(prepared.jobs)} jobs on "
        f"{len({j.device for j in prepared.jobs})} device(s)"
        + (f", {finished} already finished (kept as they are)" if finished else "")
    )
    try:
        with _Progress(console, pending) as progress, _terminated_as_interrupt():
            records = run_prepared(prepared, on_event=progress.on_event)
    except KeyboardInterrupt as exc:
        from rich.markup import escape

        signal_name = "SIGTERM" if isinstance(exc, _Terminated) else "Ctrl-C"
        console.print(
            f"[yellow]interrupted ({signal_name})[/yellow]: the running jobs were stopped and "
            "recorded as interrupted; finished jobs are in "
            + escape(
                f"{_shown(prepared.store.run_dir)}. Finish the run with: "
                f"harness run {plan} --resume {prepared.store.run_id}"
            ),
            soft_wrap=True,
        )
        raise typer.Exit(143 if isinstance(exc, _Terminated) else 130) from None
    results, samples = prepared.store.frames()
    _print_tables(console, results)
    _print_comparison(console, results, samples, only_with_variants=True)
    console.print(f"run directory: {_shown(prepared.store.run_dir)}")
    failed = [r for r in records if r.status != "ok"]
    if failed:
        for status in ("error", "timeout", "skipped", "interrupted"):
            of_status = [r for r in failed if r.status == status]
            for device in dict.fromkeys(r.device for r in of_status):
                count = sum(1 for r in of_status if r.device == device)
                reason = next(r.error for r in of_status if r.device == device)
                console.print(f"  {device}: {count} job(s) {status} ({reason})", soft_wrap=True)
        console.print(f"[red]{len(failed)} of {len(records)} jobs did not succeed[/red]")
        if any(r.status in RESUMABLE_STATUSES for r in failed):
            console.print(
                f"run the skipped jobs later: harness run {plan} --resume {prepared.store.run_id}"
            )
        raise typer.Exit(1)


@app.command()
def merge(
    runs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Runs to combine.")],
    runs_dir: RunsDir = Path("reports/runs"),
) -> None:
    """Combine runs of one plan (its shards) into a new run directory."""
    from harness.errors import HarnessError
    from harness.store import merge_runs, resolve_run

    console = _console()
    try:
        merged = merge_runs([resolve_run(runs_dir, ref) for ref in runs], runs_dir)
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    count = len(merged.records())
    console.print(f"merged {len(runs)} runs ({count} jobs) into {_shown(merged.run_dir)}")


@app.command()
def show(
    run_ref: RunRef = "latest",
    runs_dir: RunsDir = Path("reports/runs"),
    compare: Annotated[
        bool, typer.Option("--compare", help="Each variant against fp32: speedup, size, accuracy.")
    ] = False,
) -> None:
    """Print a stored run's tables (read from disk; works for a run killed half way)."""
    from harness.errors import HarnessError
    from harness.store import resolve_run

    console = _console()
    try:
        store = resolve_run(runs_dir, run_ref)
        meta = store.read_run_meta()
        results, samples = store.frames()
        if compare:
            _print_comparison(console, results, samples)
        else:
            _print_tables(console, results)
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    if meta and not meta.get("finished_at"):
        console.print("[yellow]this run did not finish: shown are the jobs that did[/yellow]")
    console.print(f"run directory: {_shown(store.run_dir)}")


@app.command()
def report(
    run_ref: RunRef = "latest",
    runs_dir: RunsDir = Path("reports/runs"),
    budgets: Annotated[
        Path | None, typer.Option(help="Budgets TOML: puts the gate's verdict on top.")
    ] = None,
    baseline: Baseline = None,
) -> None:
    """Write report.html (self-contained), summary.md and plots/ into the run directory."""
    from harness.errors import HarnessError
    from harness.report.document import write_report
    from harness.store import resolve_run

    console = _console()
    try:
        store = resolve_run(runs_dir, run_ref)
        results, samples = store.frames()
        verdict = _verdict(budgets, results, samples, runs_dir, baseline) if budgets else None
        files = write_report(store, results, samples, verdict)
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    console.print(f"report: {_shown(files.html)}")
    console.print(f"summary: {_shown(files.markdown)}")
    console.print(f"plots: {len(files.plots)} in {_shown(files.html.parent / 'plots')}")


@app.command()
def gate(
    budgets: Annotated[Path, typer.Argument(help="Budgets TOML ([[budget]] tables).")],
    run_ref: RunRef = "latest",
    runs_dir: RunsDir = Path("reports/runs"),
    baseline: Baseline = None,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here.")] = None,
    summary: Annotated[Path | None, typer.Option(help="Write the Markdown summary here.")] = None,
    extend: Annotated[
        bool, typer.Option("--extend", help="Re-run inconclusive jobs with more iterations.")
    ] = False,
    factor: Annotated[int, typer.Option(help="With --extend: times more iterations.")] = 4,
) -> None:
    """Decide a release: exit 0 pass, 1 fail, 2 inconclusive or incomplete."""
    from harness.errors import HarnessError
    from harness.gate import extendable_jobs, junit_xml, markdown_summary, merge_extension
    from harness.scheduler import extend_run
    from harness.store import resolve_run

    console = _console()
    try:
        store = resolve_run(runs_dir, run_ref)
        verdict = _verdict(budgets, *store.frames(), runs_dir, baseline)
        rerun = extendable_jobs(verdict) if extend else set()
        if rerun:
            console.print(f"re-running {len(rerun)} inconclusive job(s) with {factor}x the samples")
            extension = extend_run(store, rerun, factor)
            console.print(f"extension run: {_shown(extension.run_dir)}")
            verdict = merge_extension(
                verdict, _verdict(budgets, *extension.frames(), runs_dir, baseline), rerun
            )
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    text = markdown_summary(verdict)
    if junit:
        junit.write_text(junit_xml(verdict))
    if summary:
        summary.write_text(text)
    console.print(text, markup=False)
    raise typer.Exit(verdict.exit_code)


def _verdict(
    budgets_path: Path, results: Any, samples: Any, runs_dir: Path, baseline: str | None
) -> Any:
    from harness.config import load_budgets
    from harness.gate import evaluate
    from harness.store import resolve_run

    budgets = load_budgets(budgets_path)
    reference = baseline or budgets.baseline
    base_frames = resolve_run(runs_dir, reference).frames() if reference else None
    return evaluate(budgets, results, samples, base_frames)


@app.command()
def history(
    sources: Annotated[list[str] | None, typer.Argument(help="Run folders or globs.")] = None,
    runs_dir: RunsDir = Path("reports/runs"),
    out: Annotated[
        Path | None, typer.Option(help="Write the stacked results here (.parquet).")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write trend plots into this folder.")] = None,
    budgets: Annotated[
        Path | None, typer.Option(help="Budgets TOML: p50/p90 limits drawn in the plots.")
    ] = None,
) -> None:
    """Every stored run in one table; per-device noise floors; trend plots."""
    from harness.config import load_budgets
    from harness.errors import HarnessError
    from harness.gate import budget_lines
    from harness.history import consecutive_regressions, noise_floor
    from harness.report import plots
    from harness.store import load_history

    console = _console()
    notes: list[str] = []
    try:
        frame, samples = load_history(
            sources or [runs_dir], with_samples=plot is not None, notes=notes
        )
        limits = budget_lines(load_budgets(budgets)) if budgets else {}
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    for note in notes:
        console.print(f"warning: {note}", markup=False, soft_wrap=True)
    ok = frame[frame["status"] == "ok"]
    pivot = ok.pivot_table(
        index=["device", "model", "variant", "threads"], columns="run_id", values="p50_ms"
    )
    console.print(f"{frame['run_id'].nunique()} runs, {len(frame)} jobs; p50 ms per run:")
    console.print(pivot.iloc[:, -6:].round(4).to_string(), markup=False)
    for device, floor in noise_floor(frame).items():
        console.print(f"noise floor of {device}: ±{floor:.1%} (p95 of |p50 / median − 1|)")
    if out:
        frame.to_parquet(out, index=False)
        console.print(f"wrote {out}")
    if plot:
        assert samples is not None
        marked = consecutive_regressions(frame, samples, floors=noise_floor(frame))
        figure = plots.trend(frame, limits, marked)
        if figure is not None:
            console.print(f"wrote {plots.save(figure, plot, 'trend')}")


@app.command("compare")
def compare_command(
    before: Annotated[str, typer.Argument(help="The earlier run (id, path).")],
    after: Annotated[str, typer.Argument(help="The later run (id, path, or 'latest').")] = "latest",
    runs_dir: RunsDir = Path("reports/runs"),
    threshold: Annotated[float, typer.Option(help="Smallest change that counts, percent.")] = 3.0,
) -> None:
    """Per matching job: ratio of medians [95% CI], p-value, verdict. Exit 1 when a job is
    slower beyond the threshold (never below the device's noise floor)."""
    from rich.table import Table

    from harness.errors import HarnessError
    from harness.history import compare_runs, noise_floor
    from harness.store import load_history, read_calibrations, resolve_run

    console = _console()
    try:
        a, b = resolve_run(runs_dir, before), resolve_run(runs_dir, after)
        notes: list[str] = []
        try:
            floors = noise_floor(load_history([runs_dir], notes=notes)[0])
        except HarnessError as exc:
            notes.append(f"no noise floors from the history: {exc}")
            floors = {}
        for note in notes:
            console.print(f"warning: {note}", markup=False, soft_wrap=True)
        calibrated = read_calibrations(runs_dir.parent / "calibration")
        table_frame = compare_runs(a.frames(), b.frames(), threshold / 100, floors, calibrated)
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    table = Table(
        "device",
        "model",
        "variant",
        "t",
        "p50 before",
        "p50 after",
        "ratio [95% CI]",
        "p",
        "verdict",
        "why",
    )
    for row in table_frame.to_dict("records"):
        ratio = (
            f"{row['ratio']:.3f} [{row['ratio_low']:.3f}-{row['ratio_high']:.3f}]"
            if row["ratio"] is not None and row["ratio"] == row["ratio"]
            else ""
        )
        style = {"slower": "red", "faster": "green", "not comparable": "yellow"}.get(row["verdict"])
        table.add_row(
            str(row["device"]),
            str(row["model"]),
            str(row["variant"]),
            str(row["threads"]),
            _num_text(row["p50_a_ms"]),
            _num_text(row["p50_b_ms"]),
            ratio,
            _num_text(row["p_value"], ".2g"),
            row["verdict"],
            row["reason"],
            style=style,
        )
    console.print(table)
    if (table_frame["verdict"] == "slower").any():
        raise typer.Exit(1)


def _num_text(value: Any, spec: str = ".4f") -> str:
    return "" if value is None or value != value else format(value, spec)


@app.command()
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
    from harness.errors import HarnessError
    from harness.history import calibration_floors
    from harness.scheduler import calibration_run
    from harness.store import write_calibration

    console = _console()
    if processes < 2:
        raise _fail(
            f"a noise floor compares processes: run with --processes 2 or more (got {processes};"
            " 20 gives floors for jobs of up to 10 processes)"
        )
    try:
        store, records = calibration_run(
            device, model, processes, iterations, devices_dir, models_dir, runs_dir
        )
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    failed = [r for r in records if r.status != "ok"]
    if failed:
        raise _fail(f"calibration job failed: {failed[0].error}", 1)
    floors = calibration_floors(store.frames()[1])
    out = write_calibration(runs_dir.parent / "calibration", device, floors, model=model,
                            processes=processes, run_id=store.run_id)  # fmt: skip
    console.print(
        f"noise floor of {device} (p95 of how far apart two identical jobs land), by processes "
        f"per job: " + ", ".join(f"{n}: ±{floor:.1%}" for n, floor in floors.items())
    )
    console.print(f"wrote {_shown(out)}")


@app.command()
def compress(
    model: Annotated[str, typer.Argument(help="Model manifest name (in models/) or path.")],
    models_dir: Annotated[Path, typer.Option(help="Folder of model manifests.")] = Path("models"),
) -> None:
    """Build the model's variants (cached: only what changed is rebuilt)."""
    from rich.table import Table

    from harness.compress import BuildContext, build_all
    from harness.config import load_manifest
    from harness.errors import HarnessError
    from harness.scheduler import variant_cache_dir

    console = _console()
    path = Path(model) if model.endswith(".toml") else models_dir / f"{model}.toml"
    try:
        manifest = load_manifest(path)
        built = build_all(
            [manifest], None, variant_cache_dir(path.parent), BuildContext, log=_plain(console)
        )
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    table = Table("variant", "file", "bytes", "what it did")
    for (_, variant), result in built.items():
        if result.error:
            table.add_row(variant, "[red]not built[/red]", "", result.error)
            continue
        assert result.path is not None
        summary = {k: v for k, v in result.report.items() if k not in ("params", "base_sha256")}
        table.add_row(variant, str(result.path), str(result.path.stat().st_size), _brief(summary))
    console.print(table)
    if any(r.error for r in built.values()):
        raise typer.Exit(1)


def _brief(report: dict[str, Any]) -> str:
    parts = []
    for key, value in report.items():
        if key in ("strategy", "bytes"):
            continue
        if isinstance(value, list):
            value = f"{len(value)} layer(s)"
        elif isinstance(value, dict):
            value = f"{len(value)} entries"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


@devices_app.command("list")
def devices_list(devices_dir: DevicesDir = Path("devices")) -> None:
    """Show the inventory."""
    from rich.table import Table

    from harness.errors import HarnessError

    try:
        inventory = _inventory(devices_dir, [])
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    table = Table("name", "transport", "address", "role", "labels", "runner", "source")
    for device in inventory.values():
        labels = ", ".join(f"{k}={v}" for k, v in device.labels.items())
        runner = device.python if device.runner_kind == "python" else "native"
        table.add_row(
            device.name,
            device.transport,
            device.address,
            device.role,
            labels,
            runner,
            device.source,
        )
    _console().print(table)


@devices_app.command("check")
def devices_check(
    name: Annotated[str, typer.Argument(help="Device name (file stem in devices/).")],
    devices_dir: DevicesDir = Path("devices"),
) -> None:
    """Connect and report what the device is and which runtimes it can run."""
    from harness.errors import HarnessError
    from harness.probes.facts import check_device, check_phone
    from harness.transport import open_transport

    console = _console()
    try:
        inventory = _inventory(devices_dir, [name])
        if name not in inventory:
            raise _fail(f"no device '{name}'; known: {', '.join(sorted(inventory))}")
        device = inventory[name]
        with open_transport(device, inventory) as transport:
            if device.transport == "adb":
                _print_phone(console, check_phone(device, transport))
                return
            facts = check_device(device, transport)
    except HarnessError as exc:
        raise _fail(str(exc), _exit_code(exc)) from None
    free = f"{facts.disk_free_bytes / 2**30:.1f} GiB" if facts.disk_free_bytes else "unknown"
    console.print(f"[bold]{name}[/bold]: reachable")
    for label, value in [
        ("arch", facts.arch),
        ("os", f"{facts.os} (kernel {facts.kernel})"),
        ("python", facts.python),
        ("numpy", facts.numpy or "missing"),
        ("cpus", facts.cpu_count),
        ("cpu", _cpu_text(facts.identity)),
        ("ram", f"{facts.identity['ram_mb']} MB" if facts.identity.get("ram_mb") else "?"),
        ("board", facts.identity.get("board") or facts.identity.get("l4t") or "-"),
        ("workdir", f"{facts.workdir} ({free} free)"),
    ]:
        console.print(f"  {label:8} {value}")
    for runtime, info in facts.runtimes.items():
        if "error" in info:
            console.print(f"  {runtime:16} [dim]not usable: {info['error']}[/dim]")
        else:
            extras = info.get("providers") or info.get("delegates") or []
            console.print(f"  {runtime:16} [green]{info['version']}[/green] {', '.join(extras)}")
    if not facts.usable_runtimes:
        console.print(
            "[red]no inference runtime imports there: install onnxruntime or ai-edge-litert[/red]"
        )
        raise typer.Exit(1)


@devices_app.command("lock")
def devices_lock(
    name: Annotated[str, typer.Argument(help="Device name.")],
    hours: Annotated[float, typer.Option(help="How long the reservation lasts.")] = 8.0,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a current holder.")] = 0.0,
    devices_dir: DevicesDir = Path("devices"),
) -> None:
    """Reserve a device by hand (benchmark runs wait for it, or skip it)."""
    from harness.lease import acquire, new_lease

    with _device_transport(name, devices_dir) as transport:
        lease = acquire(transport, new_lease("manual", hours * 3600), wait)
    _console().print(f"{name}: reserved by {lease.describe()}")


@devices_app.command("unlock")
def devices_unlock(
    name: Annotated[str, typer.Argument(help="Device name.")],
    force: Annotated[
        bool, typer.Option("--force", help="Remove another holder's lease too.")
    ] = False,
    devices_dir: DevicesDir = Path("devices"),
) -> None:
    """Release a reservation taken with `devices lock` (by you on this host)."""
    from harness.lease import current_owner, read_lease, release

    with _device_transport(name, devices_dir) as transport:
        held = read_lease(transport)
        mine = held is not None and held.purpose == "manual" and held.owner == current_owner()
        removed = release(transport, held, force=True) if (mine or force) else None
    if held is None:
        _console().print(f"{name}: not reserved")
    elif removed is None:
        raise _fail(f"{name} is reserved by {held.describe()}; use --force to remove it", 1)
    else:
        _console().print(f"{name}: released (was {removed.describe()})")


@devices_app.command("who")
def devices_who(
    name: Annotated[str, typer.Argument(help="Device name.")],
    devices_dir: DevicesDir = Path("devices"),
) -> None:
    """Who holds the device's reservation, and until when."""
    from harness.lease import read_lease

    with _device_transport(name, devices_dir) as transport:
        held = read_lease(transport)
    _console().print(f"{name}: " + (held.describe() if held else "not reserved"))


@contextlib.contextmanager
def _device_transport(name: str, devices_dir: Path) -> Iterator[Any]:
    """An open transport to a device of the inventory; errors become exit codes."""
    from harness.errors import HarnessError
    from harness.transport import open_transport

    try:
        inventory = _inventory(devices_dir, [name])
        if name not in inventory:
            raise _fail(f"no device '{name}'; known: {', '.join(sorted(inventory))}")
        with open_transport(inventory[name], inventory) as transport:
            yield transport
    except HarnessError as exc:
        raise _fail(str(exc), _exit_code(exc)) from None


def _inventory(devices_dir: Path, needed: list[str]) -> dict[str, Any]:
    """The inventory; a device file that does not load stops the command only when the
    command needs that device, and is a warning otherwise."""
    from harness.config import load_inventory, needed_devices
    from harness.errors import ConfigError

    problems: dict[str, ConfigError] = {}
    inventory = load_inventory(devices_dir, problems)
    console = _console()
    needed_devices(needed, problems, lambda text: console.print(text, markup=False))
    return inventory


def _exit_code(exc: Exception) -> int:
    """2 for bad input (a configuration or run directory to fix), 1 for a device or job
    that failed: the same in every command."""
    from harness.errors import ConfigError, StoreError

    return 2 if isinstance(exc, ConfigError | StoreError) else 1


def _cpu_text(identity: dict[str, Any]) -> str:
    parts = identity.get("cpu_parts") or []
    cores = f" (core parts {', '.join(parts)})" if len(parts) > 1 else ""
    return f"{identity.get('cpu_model') or '?'}{cores}"


def _print_phone(console: Console, facts: Any) -> None:
    props = facts.props
    free = f"{facts.disk_free_bytes / 2**30:.1f} GiB" if facts.disk_free_bytes else "unknown"
    battery = (
        f"{facts.battery_percent}% ({facts.battery_status or 'status unknown'})"
        if facts.battery_percent is not None
        else "unknown"
    )
    console.print(f"[bold]{facts.device}[/bold]: reachable over adb")
    for label, value in [
        ("model", " ".join(filter(None, [props.get("manufacturer"), props.get("model")]))),
        ("android", f"{props.get('android', '?')} (SDK {props.get('sdk', '?')})"),
        ("abi", props.get("abi", "?")),
        ("soc", props.get("soc") or props.get("platform") or "?"),
        ("battery", battery),
        ("workdir", f"{facts.workdir} ({free} free)"),
    ]:
        console.print(f"  {label:8} {value or '?'}")
    for tool, state in facts.binaries.items():
        style = "red" if state == "missing" else "green"
        console.print(f"  {tool:22} [{style}]{state}[/{style}]")
    if not facts.binaries:
        console.print("  [yellow]no benchmark binaries configured ([binaries.*])[/yellow]")
    if "missing" in facts.binaries.values():
        console.print(
            "[red]a configured binary is not on the phone:[/red] `adb push` it to that path, "
            'or set `local = "path/on/this/machine"` under [binaries.<tool>] to have it pushed'
        )
        raise typer.Exit(1)


@models_app.command("fetch")
def models_fetch(
    models_dir: Annotated[Path, typer.Option(help="Folder of model manifests.")] = Path("models"),
) -> None:
    """Create the bundled model files the manifests describe (generate or extract)."""
    from harness.bundled import fetch_all
    from harness.errors import HarnessError

    console = _console()
    try:
        made = fetch_all(models_dir, log=_plain(console))
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    console.print(f"{len(made)} model file(s) created; the others were up to date")


def _print_tables(console: Console, results: Any) -> None:
    from rich import box
    from rich.table import Table

    from harness.report.table import TERMINAL_COLUMNS, latency_tables

    if results.empty:
        console.print("no finished jobs yet")
        return
    for model, rows in latency_tables(results):
        table = Table(title=model, title_justify="left", box=box.SIMPLE_HEAD)
        for column in TERMINAL_COLUMNS:
            header = "p50 95% CI" if column == "p50_ci" else column
            left = column in ("variant", "device", "runtime", "provider", "status")
            table.add_column(header, justify="left" if left else "right", no_wrap=left)
        for row in rows:
            style = None if row["status"] == "ok" else "red"
            table.add_row(*(str(row[c]) for c in TERMINAL_COLUMNS), style=style)
        console.print(table)
        for row in rows:
            if row["note"]:
                marker = "[yellow]warning[/yellow]" if row["status"] == "ok" else "[red]error[/red]"
                where = f"{row['variant']} {row['device']} {row['provider']} t{row['threads']}"
                console.print(f"  {marker} {where}: {row['note']}", soft_wrap=True)


def _shown(path: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def _print_comparison(
    console: Console, results: Any, samples: Any, only_with_variants: bool = False
) -> None:
    from rich import box
    from rich.table import Table

    from harness.report.compare import GROUP, compare_variants

    comparison = compare_variants(results, samples)
    if comparison.empty:
        console.print("no successful jobs to compare")
        return
    for key, group in comparison.groupby(GROUP, sort=False, dropna=False):
        if only_with_variants and len(group) < 2:
            continue
        device, model, runtime, provider, threads = key
        table = Table(
            title=f"{model} on {device} ({runtime} {provider}, {threads} threads) vs fp32",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        columns = ["variant", "strategy", "p50 ms", "speedup [95% CI]", "size", "peak mem"]
        columns += ["accuracy", "Δ acc pts", "top-1 agree", "pareto"]
        for column in columns:
            left = column in ("variant", "strategy")
            table.add_column(column, justify="left" if left else "right", no_wrap=True)
        rows = group.to_dict("records")
        for row in rows:
            table.add_row(
                row["variant"],
                row["strategy"],
                f"{row['p50_ms']:.3f}",
                _times(row["speedup"], row["speedup_low"], row["speedup_high"])
                + ("" if row["significant"] is not False else " ~"),
                _times(row["size_ratio"]),
                _times(row["peak_mem_ratio"]),
                _pct(row["accuracy"]),
                _points(row["accuracy_delta"]),
                _pct(row["top1_agreement"]),
                "*" if row["pareto"] else "",
                style="red" if "SLOWER" in row["notes"] else None,
            )
        console.print(table)
        if any(row["significant"] is False for row in rows):
            console.print("  ~ : not distinguishable from fp32 (CI or process-to-process noise)")
        for row in rows:
            if row["notes"]:
                console.print(
                    f"  [yellow]{row['variant']}[/yellow]: {row['notes']}", soft_wrap=True
                )


def _times(value: float | None, low: float | None = None, high: float | None = None) -> str:
    if value is None or value != value:
        return ""
    text = f"{value:.2f}x"
    return text + (f" [{low:.2f}-{high:.2f}]" if low is not None and high is not None else "")


def _points(value: float | None) -> str:
    return "" if value is None or value != value else f"{value * 100:+.1f}"


def _pct(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.1%}"


class _Progress:
    """Rich progress: one bar per device, advanced as its jobs end."""

    def __init__(self, console: Console, jobs: list[Any]) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[current]}"),
            console=console,
            transient=False,
            disable=not console.is_terminal and os.environ.get("HARNESS_PROGRESS") != "1",
        )
        self.console = console
        self.tasks = {}
        for device in dict.fromkeys(j.device for j in jobs):
            count = sum(1 for j in jobs if j.device == device)
            self.tasks[device] = self.progress.add_task(device, total=count, current="")

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_event(self, event: JobEvent) -> None:
        from rich.markup import escape

        task = self.tasks[event.device]
        message = escape(event.message)  # device output and paths: never rich markup
        if event.kind == "device-error":
            self.progress.print(f"[red]device {event.device} skipped:[/red] {message}")
        elif event.kind == "start":
            self.progress.update(task, current=event.job_id)
        elif event.kind in ("retry", "waiting", "quarantine", "cleanup"):
            self.progress.print(f"[yellow]{event.device} {event.kind}:[/yellow] {message}")
        elif event.kind == "rerun":
            self.progress.print(f"[yellow]{event.job_id}: {message}, once more[/yellow]")
        elif event.kind == "end":
            self.progress.update(task, advance=1, current="")
            if event.status != "ok":
                self.progress.print(f"[red]{event.job_id}: {event.status}[/red] {message}")


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # e.g. `harness show | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
