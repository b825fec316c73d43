"""Stored runs read back: show, report, gate, compare, history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from harness.gate import GateVerdict
    from harness.stored_run import Run
from harness.cli.common import (
    Baseline,
    RunRef,
    RunsDir,
    app,
    command,
    make_console,
    shown,
)
from harness.cli.display import (
    num_text,
    print_comparison,
    print_profiles,
    print_tables,
    print_warnings,
)
from harness.cli.gate_view import junit_for_run, print_verdict
from harness.cli.output import Format, FormatOption, WideOption, print_records
from harness.errors import Outcome


@command(app)
def show(
    run_ref: RunRef = "latest",
    runs_dir: RunsDir = Path("reports/runs"),
    compare: Annotated[
        bool, typer.Option("--compare", help="Each variant against fp32: speedup, size, accuracy.")
    ] = False,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile",
            help="Per-layer profiles (plan: profile = true): top layers, time by op type; "
            "with --compare, each variant's op types beside fp32's.",
        ),
    ] = False,
    warnings: Annotated[
        bool, typer.Option("--warnings", help="Every warning of every job, by kind.")
    ] = False,
    output: FormatOption = Format.table,
    wide: WideOption = False,
) -> None:
    """Print a stored run's tables (read from disk; works for a run killed half way)."""
    from harness.shared import resolve_run

    console = make_console()
    run = resolve_run(runs_dir, run_ref).load()
    if output != Format.table:
        _show_records(run, compare, output)
        return
    if warnings:
        print_warnings(console, run.results)
    elif profile:
        print_profiles(console, run.profiled, compare)
    elif compare:
        print_comparison(
            console, run.results, run.samples, comparisons=run.comparisons,
            tolerances=run.quality_tolerances,
        )  # fmt: skip
    else:
        print_tables(console, run.results, run.run_id)
    if run.meta and not run.finished:
        console.print("this run did not finish: shown are the jobs that did", style="yellow")
    console.print(f"run directory: {shown(run.run_dir)}")


def _show_records(run: Run, compare: bool, output: Format) -> None:
    """`show --format json|csv`: the results rows (results.parquet's columns), or with
    --compare the comparison rows (analysis.COMPARE_COLUMNS)."""
    from harness.analysis import COMPARE_COLUMNS, compare_variants
    from harness.rows import RESULT_COLUMNS

    if compare:
        frame = compare_variants(run.results, run.samples, run.comparisons, run.quality_tolerances)
        print_records(frame.to_dict("records"), COMPARE_COLUMNS, output)
    else:
        print_records(run.results.to_dict("records"), RESULT_COLUMNS, output)


@command(app)
def report(
    run_ref: RunRef = "latest",
    runs_dir: RunsDir = Path("reports/runs"),
    budgets: Annotated[
        Path | None, typer.Option(help="Budgets TOML: puts the gate's verdict on top.")
    ] = None,
    baseline: Baseline = None,
    image_url: Annotated[
        str | None,
        typer.Option(
            help="Where plots/ will be served (CI artifact, Pages): summary.md links there."
        ),
    ] = None,
    all_images: Annotated[
        bool,
        typer.Option(
            "--all-images",
            help="PNG and SVG of every chart (default: the two "
            "a summary shows; every chart's data is in plots/*.csv).",
        ),
    ] = False,
) -> None:
    """Write report.html (self-contained), summary.md and plots/ into the run directory."""
    from harness.report.document import write_report
    from harness.shared import resolve_run

    console = make_console()
    run = resolve_run(runs_dir, run_ref).load()
    verdict = _verdict(budgets, run, runs_dir, baseline, run.run_id) if budgets else None
    files = write_report(run, verdict, image_url, all_images)
    console.print(f"report: {shown(files.html)}")
    console.print(f"summary: {shown(files.markdown)}")
    console.print(f"plots: {len(files.plots)} in {shown(files.html.parent / 'plots')}")


@command(app)
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
    output: FormatOption = Format.table,
    wide: WideOption = False,
) -> None:
    """Decide a release: exit 0 pass, 1 fail, 2 inconclusive or incomplete."""
    from harness.gate import extendable_jobs, merge_extension
    from harness.report.verdict import CHECK_FIELDS, check_rows, markdown_summary
    from harness.scheduler import extend_run
    from harness.shared import resolve_run

    console = make_console()
    store = resolve_run(runs_dir, run_ref)
    run = store.load()
    verdict = _verdict(budgets, run, runs_dir, baseline, run.run_id)
    rerun = extendable_jobs(verdict) if extend else set()
    if rerun:
        console.print(f"re-running {len(rerun)} inconclusive job(s) with {factor}x the samples")
        extension = extend_run(store, rerun, factor)
        console.print(f"extension run: {shown(extension.run_dir)}")
        verdict = merge_extension(
            verdict, _verdict(budgets, extension.load(), runs_dir, baseline, run.run_id), rerun
        )
    if junit:
        junit.write_text(junit_for_run(verdict, run, budgets))
    if summary:
        summary.write_text(markdown_summary(verdict))
    if output == Format.table:
        print_verdict(console, verdict)
    else:  # stdout holds the records alone; the exit code says the outcome
        print_records(check_rows(verdict), CHECK_FIELDS, output)
        raise typer.Exit(verdict.exit_code)
    if verdict.exit_code:
        raise Outcome(f"the release gate did not pass: {verdict.outcome}", verdict.exit_code)


def _verdict(
    budgets_path: Path, run: Run, runs_dir: Path, baseline: str | None, gated_id: str
) -> GateVerdict:
    """The gate on a stored run (its paired comparisons too, where it has them); a
    baseline of `latest` is the newest other run of its plan than `gated_id`'s (an
    extension run is judged against the same baseline as the run it extends)."""
    from harness.config import load_budgets
    from harness.gate import evaluate
    from harness.shared import plan_name, resolve_baseline

    budgets = load_budgets(budgets_path)
    reference = baseline or budgets.baseline
    plan = plan_name(run.meta)
    base_frames = (
        resolve_baseline(
            runs_dir, reference, plan, gated_id, sorted(run.meta.get("devices") or {})
        ).frames()
        if reference
        else None
    )
    return evaluate(
        budgets, run.results, run.samples, base_frames, run.comparisons, run.placements()
    )


@command(app)
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
    output: FormatOption = Format.table,
    wide: WideOption = False,
) -> None:
    """Every stored run in one table; per-device noise floors; trend plots."""
    from harness.config import load_budgets
    from harness.gate import budget_lines
    from harness.history import consecutive_regressions, missing_floors, noise_floor
    from harness.report import charts, detail_charts
    from harness.shared import load_history

    console = make_console()
    notes: list[str] = []
    frame, samples = load_history(sources, runs_dir, with_samples=plot is not None, notes=notes)
    if output != Format.table:  # every job of every run, results.parquet's columns
        from harness.rows import RESULT_COLUMNS

        print_records(frame.to_dict("records"), RESULT_COLUMNS, output)
        return
    limits = budget_lines(load_budgets(budgets)) if budgets else {}
    for note in notes:
        console.print(f"warning: {note}")
    _print_history(console, frame)
    for device, floor in noise_floor(frame).items():
        console.print(f"noise floor of {device}: {floor:.1%} (p95 of how far apart two runs land)")
    for reason in missing_floors(frame).values():
        console.print(reason)
    if out:
        frame.to_parquet(out, index=False)
        console.print(f"wrote {out}")
    if plot:
        assert samples is not None
        marked = consecutive_regressions(frame, samples, floors=noise_floor(frame))
        chart = detail_charts.trend(frame, limits, marked)
        if chart is not None:
            console.print(f"wrote {charts.save(chart, plot, 'trend')}")


def _print_history(console: Any, frame: Any, most: int = 6) -> None:
    """p50 per job (rows) and run (columns, the latest `most`), as a table that fits."""
    from harness.cli.fit import Column, lift_uniform, print_fitted

    ok = frame[frame["status"] == "ok"]
    console.print(f"{frame['run_id'].nunique()} runs, {len(frame)} jobs; p50 ms per run:")
    if ok.empty:
        return
    keys = ["device", "model", "variant", "threads"]
    pivot = ok.pivot_table(index=keys, columns="run_id", values="p50_ms", sort=False)
    started = {r: str(ok[ok["run_id"] == r]["started_at"].min()) for r in pivot.columns}
    runs = sorted(pivot.columns, key=lambda r: started[r])[-most:]
    # a run by when it started (MM-DD HH:MM), its id under the table
    labels = [f"{started[r][5:10]} {started[r][11:16]}" for r in runs]
    columns = [Column(k, numeric=k == "threads") for k in keys]
    columns += [Column(label, numeric=True) for label in labels]
    rows = [
        [str(v) for v in index] + [num_text(pivot.loc[index, r]) for r in runs]
        for index in pivot.index
    ]
    columns, rows, lifted = lift_uniform(columns, rows, ("device", "threads"))
    if lifted:
        console.print("  " + ", ".join(f"{k} {v}" for k, v in lifted.items()))
    # the latest two runs are what a reader compares: older runs and the keys go first
    print_fitted(console, columns, rows, drop_first=[*labels[:-2], "threads", "device"])
    for label, run in zip(labels, runs, strict=True):
        console.print(f"  {label}: {run}")


@command(app, "compare")
def compare_command(
    before: Annotated[str, typer.Argument(help="The earlier run (id, path).")],
    after: Annotated[str, typer.Argument(help="The later run (id, path, or 'latest').")] = "latest",
    runs_dir: RunsDir = Path("reports/runs"),
    threshold: Annotated[float, typer.Option(help="Smallest change that counts, percent.")] = 3.0,
    output: FormatOption = Format.table,
    wide: WideOption = False,
) -> None:
    """Per matching job: ratio of medians [95% CI], p-value, verdict. Exit 1 when a job is
    slower beyond the threshold (never below the device's noise floor)."""
    from harness.calibration_store import read_calibrations
    from harness.cli.fit import Column, lift_uniform, print_fitted
    from harness.errors import HarnessError
    from harness.history import RUN_COMPARISON_COLUMNS, compare_runs, noise_floor
    from harness.shared import load_history, resolve_run

    console = make_console()
    a, b = resolve_run(runs_dir, before), resolve_run(runs_dir, after)
    notes: list[str] = []
    try:
        floors = noise_floor(load_history(None, runs_dir, False, notes)[0])
    except HarnessError as exc:
        notes.append(f"no noise floors from the history: {exc}")
        floors = {}
    for note in notes:
        console.print(f"warning: {note}")
    calibrated = read_calibrations(runs_dir.parent / "calibration")
    table_frame = compare_runs(a.frames(), b.frames(), threshold / 100, floors, calibrated)
    slower = int((table_frame["verdict"] == "slower").sum())
    if output != Format.table:
        print_records(table_frame.to_dict("records"), RUN_COMPARISON_COLUMNS, output)
        raise typer.Exit(1 if slower else 0)
    # the decision (verdict, ratio, why) before the figures it rests on
    columns = [Column("device"), Column("model", prose=True, narrowest=14), Column("variant"),
               Column("verdict"),
               Column("ratio [95% CI]", numeric=True), Column("why", prose=True),
               Column("p50 before", numeric=True), Column("p50 after", numeric=True),
               Column("t", numeric=True), Column("p", numeric=True)]  # fmt: skip
    rows, styles = [], []
    for row in table_frame.to_dict("records"):
        ratio = (
            f"{row['ratio']:.3f} [{row['ratio_low']:.3f}-{row['ratio_high']:.3f}]"
            if row["ratio"] is not None and row["ratio"] == row["ratio"]
            else ""
        )
        styles.append(
            {"slower": "red", "faster": "green", "not comparable": "yellow"}.get(row["verdict"])
        )
        rows.append(
            [str(row["device"]), str(row["model"]), str(row["variant"]), row["verdict"], ratio,
             row["reason"], num_text(row["p50_a_ms"]), num_text(row["p50_b_ms"]),
             str(row["threads"]), num_text(row["p_value"], ".2g")]
        )  # fmt: skip
    columns, rows, lifted = lift_uniform(columns, rows, ("device", "t"))
    if lifted:
        console.print("  " + ", ".join(f"{k} {v}" for k, v in lifted.items()))
    drop = ("p", "t", "p50 before", "p50 after", "device", "ratio [95% CI]")
    print_fitted(console, columns, rows, styles=styles, drop_first=drop)
    console.print("p50 before/after: the pooled samples' medians, ms")
    tests = sorted(set(table_frame["test"].dropna())) if "test" in table_frame else []
    for test in tests:  # the ratio's estimator need not be the p50 columns' (pooled samples)
        console.print(f"ratio and p by: {test}")
    if slower:
        raise Outcome(f"{slower} job(s) slower in {after} than in {before}")
