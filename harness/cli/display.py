"""How the commands print: result tables, comparisons, a phone's facts, progress."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from harness.cli.common import styled

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from harness.runner.result_views import Profile
    from harness.scheduler import JobEvent


def num_text(value: Any, spec: str = ".4f") -> str:
    return "" if value is None or value != value else format(value, spec)


def brief(report: dict[str, Any]) -> str:
    parts = [report["effect"]["claim"]] if report.get("effect") else []
    for key, value in report.items():
        if key in ("strategy", "bytes", "effect", "prepared", "verified"):
            continue
        if isinstance(value, list):
            value = f"{len(value)} layer(s)"
        elif isinstance(value, dict):
            value = f"{len(value)} entries"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def cpu_text(identity: dict[str, Any]) -> str:
    parts = identity.get("cpu_parts") or []
    cores = f" (core parts {', '.join(parts)})" if len(parts) > 1 else ""
    return f"{identity.get('cpu_model') or '?'}{cores}"


def print_phone(console: Console, facts: Any) -> None:
    props = facts.props
    free = f"{facts.disk_free_bytes / 2**30:.1f} GiB" if facts.disk_free_bytes else "unknown"
    battery = (
        f"{facts.battery_percent}% ({facts.battery_status or 'status unknown'})"
        if facts.battery_percent is not None
        else "unknown"
    )
    console.print(styled((facts.device, "bold"), ": reachable over adb"))
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
        console.print(styled(f"  {tool:22} ", (state, style)))
    if not facts.binaries:
        console.print("  no benchmark binaries configured ([binaries.*])", style="yellow")


def print_tables(console: Console, results: Any, run_id: str = "RUN") -> None:
    """A table per model; a failed job's error under its table; the warnings once, a line
    per kind (`show --warnings` has each of them)."""
    from harness.cli.fit import Column, print_fitted
    from harness.report.table import TERMINAL_COLUMNS, latency_tables

    if results.empty:
        console.print("no finished jobs yet")
        return
    headers = {"p50_ci": "p50 95% CI", "peak_rss_mb": "peak MB", "load_ms": "load ms"}
    text_columns = ("variant", "device", "runtime", "provider", "status")
    columns = [
        Column(headers.get(c, c.replace("_ms", " ms")), numeric=c not in text_columns)
        for c in TERMINAL_COLUMNS
    ]
    warned: list[tuple[str, str]] = []
    for model, rows in latency_tables(results):
        print_fitted(
            console,
            columns,
            [[str(row[c]) for c in TERMINAL_COLUMNS] for row in rows],
            title=model,
            drop_first=("load ms", "runtime", "p99 ms", "peak MB", "p90 ms"),
            styles=[None if row["status"] == "ok" else "red" for row in rows],
        )
        for row in rows:
            if row["note"] and row["status"] == "ok":
                warned.append((_where(model, row), row["note"]))
            elif row["note"]:
                console.print(
                    styled("  ", ("error", "red"), f" {_where(model, row)}: {row['note']}")
                )
    print_warning_summary(console, warned, run_id)


def _where(model: str, row: dict[str, str]) -> str:
    """A job in a warning or an error: `pi: tiny_mbv2/int8-static CPU t1`."""
    return f"{row['device']}: {model}/{row['variant']} {row['provider']} t{row['threads']}"


def print_warning_summary(console: Console, notes: list[tuple[str, str]], run_id: str) -> None:
    """`warnings: 3 kinds in 22 jobs`, then per kind its count and its worst case."""
    from harness.report.page import warning_summary

    summary = warning_summary(notes)
    if not summary:
        return
    console.print(f"warnings: {sum(n for _, n, _ in summary)} in {len(notes)} jobs, a line per "
                  f"kind (each of them: harness show {run_id} --warnings)")  # fmt: skip
    for kind, count, worst in summary:
        console.print(styled("  ", (f"{count}x", "yellow"), f" {kind}; worst: {worst}"))


def print_warnings(console: Console, results: Any) -> None:
    """`show --warnings`: every warning of every job, by kind."""
    from harness.report.page import grouped_warnings
    from harness.report.table import latency_tables

    notes = [
        (_where(model, row), row["note"])
        for model, rows in latency_tables(results) for row in rows
        if row["note"] and row["status"] == "ok"
    ]  # fmt: skip
    groups = grouped_warnings(notes)
    if not groups:
        console.print("no warnings")
    for kind, items in groups.items():
        console.print(styled((f"{kind} ({len(items)})", "yellow")))
        for item in items:
            console.print(f"  {item}")


def print_comparison(
    console: Console,
    results: Any,
    samples: Any,
    only_with_variants: bool = False,
    comparisons: Any = None,
    tolerances: dict[str, float] | None = None,
) -> None:
    from harness.analysis import GROUP, METHODS, PARETO_OBJECTIVES, compare_variants
    from harness.cli.fit import Column, print_fitted

    comparison = compare_variants(results, samples, comparisons, tolerances)
    if comparison.empty:
        console.print("no successful jobs to compare")
        return
    for key, group in comparison.groupby(GROUP, sort=False, dropna=False):
        if only_with_variants and len(group) < 2:
            continue
        device, model, runtime, provider, threads = key
        headers = ["variant", "strategy", "p50 ms", "speedup [95% CI]", "by", "size", "peak mem"]
        headers += ["accuracy", "Δ acc pts", "top-1 agree", "quality", "pareto"]
        columns = [Column(h, numeric=h not in ("variant", "strategy", "by")) for h in headers]
        rows = group.to_dict("records")
        cells = [
            [
                row["variant"],
                row["strategy"],
                f"{row['p50_ms']:.3f}",
                _times(row["speedup"], row["speedup_low"], row["speedup_high"])
                + ("" if row["significant"] is not False else " ~"),
                row["method"] if row["variant"] != "fp32" else "",
                _times(row["size_ratio"]),
                _times(row["peak_mem_ratio"]),
                _pct(row["accuracy"]),
                _points(row["accuracy_delta"]),
                _pct(row["top1_agreement"]),
                _quality(row),
                "*" if row["pareto"] else "",
            ]
            for row in rows
        ]
        print_fitted(
            console,
            columns,
            cells,
            title=f"{model} on {device} ({runtime} {provider}, {threads} threads) vs fp32",
            # what decides (speedup, quality, the accuracy change, pareto) goes last
            drop_first=("strategy", "by", "peak mem", "top-1 agree", "p50 ms", "accuracy", "size"),
            styles=[
                "red" if "SLOWER" in row["notes"] or row["quality"] == "loss" else None
                for row in rows
            ],
        )
        if any(row["significant"] is False for row in rows):
            console.print("  ~ : not distinguishable from fp32 (CI or process-to-process noise)")
        for method in dict.fromkeys(r["method"] for r in rows if r["variant"] != "fp32"):
            console.print(f"  by {method}: {METHODS[method]}; p50 ms: pooled samples")
        objectives = ", ".join(PARETO_OBJECTIVES)
        console.print(f"  pareto: over {objectives}, among variants of verified quality")
        for row in rows:
            if row["notes"]:
                console.print(styled("  ", (row["variant"], "yellow"), f": {row['notes']}"))
            if row["quality"] in ("loss", "unverified"):
                note = f": quality {row['quality']}: {row['quality_note']}"
                console.print(styled("  ", (row["variant"], "yellow"), note))


def print_profiles(console: Console, records: list[Any], compare: bool, top: int = 10) -> None:
    """Each profile job: its top layers and its time by op type; with `compare`, each
    variant's op types beside fp32's on the same device and setting (harness/profiles.py)."""
    from harness.profiles import with_fp32
    from harness.runner.result_document import ResultDocument

    if not records:
        console.print("no profiles in this run: set profile = true under [measure]")
        return
    for record, reference in with_fp32(records):
        doc = ResultDocument(record.runner).profile
        where = f"{record.model}/{record.variant} on {record.device}"
        where += f" ({record.provider}, t{record.threads})"
        if record.status != "ok" or doc is None:
            console.print(f"{where}: no profile ({record.status}: {record.error})")
        elif not doc.timed:  # LiteRT: the op list only
            console.print(f"{where}: {doc.op_counts}; {doc.timing}")
        elif not compare:
            _print_profile(console, record, doc, where, top)
        else:
            fp32 = ResultDocument(reference.runner).profile if reference is not None else None
            if fp32 is not None:
                _print_profile_diff(console, fp32, doc, where, record.variant, top)


def _print_profile(console: Console, record: Any, doc: Profile, where: str, top: int) -> None:
    from rich import box
    from rich.table import Table

    from harness.profiles import placement

    table = Table("layer", "op type", "provider", "us per run", box=box.SIMPLE_HEAD,
                  title=f"{where}: top layers", title_justify="left")  # fmt: skip
    for node in doc.nodes[:top]:
        table.add_row(node["node"], node["op_type"], node["provider"], f"{node['us']:.1f}")
    console.print(table)
    by_type = sorted(doc.op_types.items(), key=lambda item: -item[1])
    console.print(
        "  by op type (us per run): " + ", ".join(f"{op} {us:.0f}" for op, us in by_type),
    )
    shares = placement(record)
    text = ", ".join(
        f"{name} {p['nodes']} nodes ({_pct(p['share'])})" for name, p in shares["providers"].items()
    )
    if shares["cpu_fallback_share"] is not None:
        text += f"; CPU fallback {_pct(shares['cpu_fallback_share'])} of the time"
    console.print(f"  placement: {text}")


def _print_profile_diff(
    console: Console, fp32: Profile, doc: Profile, where: str, variant: str, top: int
) -> None:
    from rich import box
    from rich.table import Table

    from harness.profiles import op_type_diff, slower_layers

    table = Table("op type", "fp32 ms", f"{variant} ms", "change ms", "share of change",
                  title=f"{where} vs fp32, time per run by op type", title_justify="left",
                  box=box.SIMPLE_HEAD)  # fmt: skip
    for row in op_type_diff(fp32, doc):
        table.add_row(
            row["op_type"],
            f"{row['before_ms']:.3f}",
            f"{row['after_ms']:.3f}",
            f"{row['delta_ms']:+.3f}",
            _pct(row["share_of_change"]),
        )
    console.print(table)
    for layer in slower_layers(fp32, doc)[:top]:
        console.print(
            f"  slower (by name): {layer['node']} ({layer['op_type']}) "
            f"{layer['before_us']:.0f} -> {layer['after_us']:.0f} us",
        )


def _times(value: float | None, low: float | None = None, high: float | None = None) -> str:
    if value is None or value != value:
        return ""
    text = f"{value:.2f}x"
    return text + (f" [{low:.2f}-{high:.2f}]" if low is not None and high is not None else "")


def _points(value: float | None) -> str:
    return "" if value is None or value != value else f"{value * 100:+.1f}"


def _quality(row: dict[str, Any]) -> str:
    """ok / LOSS / unverified, with the samples it rests on."""
    verdict = row.get("quality")
    if not verdict or row["variant"] == "fp32":
        return ""
    n = row.get("fidelity_n")
    count = "" if n is None or n != n else f" n={int(n)}"
    return ("LOSS" if verdict == "loss" else verdict) + count


def _pct(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.1%}"


class Progress:
    """On a terminal: one bar per device and one for the run, with jobs done/total and an
    ETA. Piped (CI logs): one line per finished job, with the count and the ETA."""

    def __init__(self, console: Console, jobs: list[Any]) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.live = console.is_terminal or os.environ.get("HARNESS_PROGRESS") == "1"
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}"),
            console=console,
            transient=False,
            disable=not self.live,
        )
        self.console = console
        self.total, self.done = len(jobs), 0
        self.started = time.monotonic()
        self.overall = self.progress.add_task("all devices", total=self.total, current="")
        self.tasks = {}
        for device in dict.fromkeys(j.device for j in jobs):
            count = sum(1 for j in jobs if j.device == device)
            self.tasks[device] = self.progress.add_task(device, total=count, current="")

    def __enter__(self) -> Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _say(self, text: str | Text) -> None:
        if self.live:
            self.progress.print(text)
        else:
            self.console.print(text)

    def eta(self) -> str:
        """The time left at the pace so far (jobs of a run take alike long, roughly)."""
        if not self.done or self.done >= self.total:
            return ""
        left = (time.monotonic() - self.started) / self.done * (self.total - self.done)
        return f", ETA {left / 60:.0f} min" if left >= 90 else f", ETA {left:.0f} s"

    def on_event(self, event: JobEvent) -> None:
        task = self.tasks[event.device]
        message = event.message
        if event.kind == "device-error":
            self._say(styled((f"device {event.device} skipped:", "red"), f" {message}"))
        elif event.kind == "start":
            self.progress.update(task, current=event.job_id)
        elif event.kind in ("retry", "waiting", "quarantine", "cleanup"):
            self._say(styled((f"{event.device} {event.kind}:", "yellow"), f" {message}"))
        elif event.kind == "rerun":
            self._say(styled((f"{event.job_id}: {message}, once more", "yellow")))
        elif event.kind == "end":
            self.done += 1
            self.progress.update(task, advance=1, current="")
            self.progress.update(self.overall, advance=1)
            failed = ((event.status, "red"), f" {message}") if event.status != "ok" else ("ok",)
            if not self.live:
                where = f"[{self.done}/{self.total}] {event.job_id}: "
                self._say(styled(where, *failed, self.eta()))
            elif event.status != "ok":
                self._say(styled((f"{event.job_id}: {event.status}", "red"), f" {message}"))
