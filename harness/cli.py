"""The `harness` command line: parse, call the library, print. No logic lives here.

Heavy modules (pandas, paramiko, onnx, pydantic) are imported inside the commands so that
`harness --help` stays fast.

Exit codes: 0 all jobs ok; 1 some jobs failed, timed out or were skipped (their results
are on disk); 2 bad input (configuration, unknown run); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
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


def _console() -> Console:
    from rich.console import Console

    # Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _console().print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code)


@app.command()
def run(
    plan: Annotated[Path, typer.Argument(help="Plan TOML, e.g. plans/quickstart.toml.")],
    devices: Annotated[
        str | None, typer.Option(help="Comma-separated device names: a subset of the plan's.")
    ] = None,
) -> None:
    """Run a plan: models x variants x devices x runtime settings."""
    from harness.errors import HarnessError
    from harness.scheduler import prepare_run, run_prepared

    console = _console()
    try:
        prepared = prepare_run(
            plan, only_devices=devices.split(",") if devices else None, log=console.print
        )
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"run [bold]{prepared.store.run_id}[/bold]: {len(prepared.jobs)} jobs on "
        f"{len({j.device for j in prepared.jobs})} device(s)"
    )
    try:
        with _Progress(console, prepared.jobs) as progress:
            records = run_prepared(prepared, on_event=progress.on_event)
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted[/yellow]; finished jobs are in {prepared.store.run_dir}"
        )
        raise typer.Exit(130) from None
    _print_tables(console, prepared.store)
    _print_comparison(console, prepared.store, only_with_variants=True)
    console.print(f"run directory: {_shown(prepared.store.run_dir)}")
    failed = [r for r in records if r.status != "ok"]
    if failed:
        console.print(f"[red]{len(failed)} of {len(records)} jobs did not succeed[/red]")
        raise typer.Exit(1)


@app.command()
def show(
    run_ref: Annotated[
        str, typer.Argument(metavar="RUN", help="A run id, a path, or 'latest'.")
    ] = "latest",
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
        if compare:
            _print_comparison(console, store)
        else:
            _print_tables(console, store)
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    meta = store.read_run_meta()
    if meta and not meta.get("finished_at"):
        console.print("[yellow]this run did not finish: shown are the jobs that did[/yellow]")
    console.print(f"run directory: {_shown(store.run_dir)}")


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
            [manifest], None, variant_cache_dir(path.parent), BuildContext, log=console.print
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

    from harness.config import load_inventory
    from harness.errors import HarnessError

    try:
        inventory = load_inventory(devices_dir)
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    table = Table("name", "transport", "address", "role", "labels", "python", "source")
    for device in inventory.values():
        address = (
            (
                device.ssh_alias
                or f"{device.user + '@' if device.user else ''}{device.host}"
                + (f":{device.port}" if device.port else "")
            )
            if device.transport == "ssh"
            else "-"
        )
        if device.proxy_jump:
            address += f" via {device.proxy_jump}"
        labels = ", ".join(f"{k}={v}" for k, v in device.labels.items())
        table.add_row(
            device.name,
            device.transport,
            address,
            device.role,
            labels,
            device.python,
            device.source,
        )
    _console().print(table)


@devices_app.command("check")
def devices_check(
    name: Annotated[str, typer.Argument(help="Device name (file stem in devices/).")],
    devices_dir: DevicesDir = Path("devices"),
) -> None:
    """Connect and report what the device is and which runtimes it can run."""
    from harness.config import load_inventory
    from harness.errors import HarnessError
    from harness.probes.facts import check_device
    from harness.transport import open_transport

    console = _console()
    try:
        inventory = load_inventory(devices_dir)
        if name not in inventory:
            raise _fail(f"no device '{name}'; known: {', '.join(sorted(inventory))}")
        device = inventory[name]
        with open_transport(device, inventory) as transport:
            facts = check_device(device, transport)
    except HarnessError as exc:
        raise _fail(str(exc), 1) from None
    free = f"{facts.disk_free_bytes / 2**30:.1f} GiB" if facts.disk_free_bytes else "unknown"
    console.print(f"[bold]{name}[/bold]: reachable")
    for label, value in [
        ("arch", facts.arch),
        ("os", f"{facts.os} (kernel {facts.kernel})"),
        ("python", facts.python),
        ("numpy", facts.numpy or "missing"),
        ("cpus", facts.cpu_count),
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


@models_app.command("fetch")
def models_fetch(
    models_dir: Annotated[Path, typer.Option(help="Folder of model manifests.")] = Path("models"),
) -> None:
    """Create the bundled model files the manifests describe (generate or extract)."""
    from harness.bundled import fetch_all
    from harness.errors import HarnessError

    console = _console()
    try:
        made = fetch_all(models_dir, log=console.print)
    except HarnessError as exc:
        raise _fail(str(exc)) from None
    console.print(f"{len(made)} model file(s) created; the others were up to date")


def _print_tables(console: Console, store: Any) -> None:
    from rich import box
    from rich.table import Table

    from harness.report.table import TABLE_COLUMNS, latency_tables

    results, _ = store.frames()
    if results.empty:
        console.print("no finished jobs yet")
        return
    for model, rows in latency_tables(results):
        table = Table(title=model, title_justify="left", box=box.SIMPLE_HEAD)
        for column in TABLE_COLUMNS:
            header = "p50 95% CI" if column == "p50_ci" else column
            left = column in ("variant", "device", "runtime", "provider", "status")
            table.add_column(header, justify="left" if left else "right", no_wrap=left)
        for row in rows:
            style = None if row["status"] == "ok" else "red"
            table.add_row(*(str(row[c]) for c in TABLE_COLUMNS), style=style)
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


def _print_comparison(console: Console, store: Any, only_with_variants: bool = False) -> None:
    from rich import box
    from rich.table import Table

    from harness.report.compare import GROUP, compare_variants

    results, _ = store.frames()
    comparison = compare_variants(results)
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
        task = self.tasks[event.device]
        if event.kind == "device-error":
            self.progress.print(f"[red]device {event.device} skipped:[/red] {event.message}")
        elif event.kind == "start":
            self.progress.update(task, current=event.job_id)
        elif event.kind == "end":
            self.progress.update(task, advance=1, current="")
            if event.status != "ok":
                self.progress.print(f"[red]{event.job_id}: {event.status}[/red] {event.message}")


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # e.g. `harness show | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
