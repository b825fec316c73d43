"""The report of one run: `report.html` (self-contained: plots embedded as data URIs),
`summary.md` (for a CI job summary or a PR comment) and `plots/*.png|svg`.

Built from the run directory only, never from live devices. Rendering is pure (frames and
verdict in, text out); `write_report` does the file work.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.report import plots
from harness.report.compare import compare_variants
from harness.report.table import ci_range, missing, num, pct, text

if TYPE_CHECKING:
    import pandas as pd

    from harness.gate import GateVerdict
    from harness.store import RunStore

REPORT_COLUMNS = [
    ("model", "model"), ("variant", "variant"), ("threads", "threads"), ("status", "status"),
    ("n", "n"), ("p50_ms", "p50 ms"), ("p50_ci", "p50 95% CI"), ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"), ("speedup", "speedup vs fp32"), ("size_kb", "size KB"),
    ("peak_rss_mb", "peak MB"), ("energy_mj", "energy mJ/inf"), ("accuracy", "accuracy"),
    ("top1_agreement", "top-1 agree"), ("psnr_db", "PSNR dB"),
]  # fmt: skip


PROFILE_DIFF_KEYS = ("device", "model", "variant", "setting", "changes")


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    plots: list[Path]


def write_report(
    store: RunStore,
    results: pd.DataFrame,
    samples: pd.DataFrame,
    verdict: GateVerdict | None = None,
) -> ReportFiles:
    """`results` and `samples` are the run's frames (`store.frames()`), computed once by
    the caller, who may also have judged them with the gate."""
    from harness.profiles import op_type_rows, profile_diffs

    comparison = compare_variants(results, samples, store.comparisons())
    profiled = [r for r in store.records() if r.kind == "profile"]
    folder = store.run_dir / "plots"
    figures = {
        "latency": plots.latency_by_variant(results),
        "distributions": plots.latency_distributions(results, samples),
        "accuracy_vs_latency": plots.accuracy_vs_latency(comparison),
        "size_vs_speedup": plots.size_vs_speedup(comparison),
        "memory": plots.memory_by_variant(results),
        "power": plots.power_traces(store.power()),
        "time_by_op_type": plots.time_by_op_type(op_type_rows(profiled)),
    }
    saved = {name: plots.save(figure, folder, name) for name, figure in figures.items() if figure}
    meta = store.read_run_meta()
    tables = device_tables(results, comparison)
    notes = warnings(results, comparison)
    diffs = profile_diffs(profiled)
    page = render_html(store.run_id, meta, tables, notes, saved, verdict, diffs)
    summary = render_markdown(store.run_id, tables, notes, verdict, diffs)
    html_path = store.run_dir / "report.html"
    html_path.write_text(page)
    markdown_path = store.run_dir / "summary.md"
    markdown_path.write_text(summary)
    return ReportFiles(html_path, markdown_path, list(saved.values()))


def device_tables(
    results: pd.DataFrame, comparison: pd.DataFrame
) -> dict[str, list[dict[str, str]]]:
    """Per device, display rows: model × variant × setting with the headline numbers."""
    speedups = {
        (r["device"], r["model"], r["variant"], r["provider"], r["threads"]): r
        for r in comparison.to_dict("records")
    }
    tables: dict[str, list[dict[str, str]]] = {}
    for row in results.to_dict("records"):
        key = (row["device"], row["model"], row["variant"], row["provider"], row["threads"])
        compared = speedups.get(key, {})
        ok = row["status"] == "ok"
        tables.setdefault(str(row["device"]), []).append(
            {
                "model": str(row["model"]),
                "variant": str(row["variant"]),
                "threads": text(row["threads"]),
                "status": str(row["status"]),
                "n": text(row["n"]) if ok else "",
                "p50_ms": num(row["p50_ms"]),
                "p50_ci": ci_range(row) if ok else "",
                "p90_ms": num(row["p90_ms"]),
                "p99_ms": num(row["p99_ms"]),
                "speedup": _speedup(compared),
                "size_kb": num(
                    row["model_bytes"] / 1024 if not missing(row["model_bytes"]) else None, 0
                ),
                "peak_rss_mb": num(row["peak_rss_mb"], 1),
                "energy_mj": num(row["energy_mj"], 3),
                "accuracy": pct(row["accuracy"]),
                "top1_agreement": pct(row["top1_agreement"]),
                "psnr_db": num(row.get("psnr_db"), 1),
            }
        )
    return tables


def warnings(results: pd.DataFrame, comparison: pd.DataFrame) -> list[str]:
    """What a reader must know before trusting a number."""
    notes = []
    for row in results.to_dict("records"):
        where = f"{row['device']}: {row['model']}/{row['variant']} t{row['threads']}"
        if row["status"] != "ok":
            notes.append(f"{where} did not succeed ({row['status']}): {row['error']}")
        elif not missing(row["warnings"]):
            notes.append(f"{where}: {row['warnings']}")
        if row.get("throttled") is True:
            notes.append(f"{where}: the device throttled during the job")
    for row in comparison.to_dict("records"):
        if row["notes"] and "SLOWER" in row["notes"]:
            notes.append(f"{row['device']}: {row['model']}/{row['variant']}: {row['notes']}")
    ok = results[results["status"] == "ok"]
    for device, group in ok.groupby("device"):
        arches = sorted({str(v) for v in group["arch"].dropna()})
        if len(arches) > 1:  # one device name, two machines: the file was reused
            notes.append(f"{device}: results not comparable, the architecture differs: {arches}")
    return notes


def render_html(
    run_id: str,
    meta: dict[str, Any],
    tables: dict[str, list[dict[str, str]]],
    notes: list[str],
    plot_files: dict[str, Path],
    verdict: GateVerdict | None,
    profile_diffs: list[dict[str, str]] | None = None,
) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>harness report {e(run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Benchmark report <code>{e(run_id)}</code></h1>",
    ]
    if verdict is not None:
        parts.append(
            f"<section id='verdict' class='verdict {e(verdict.outcome)}'><h2>Release gate: "
            f"<span class='outcome'>{e(verdict.outcome.upper())}</span></h2><table>"
            "<tr><th>case</th><th>metric</th><th>outcome</th><th>measured</th></tr>"
        )
        for case in verdict.cases:
            for check in case.checks:
                cells = (case.name, check.metric, check.outcome, check.message)
                parts.append(
                    f"<tr class='{e(check.outcome)}'>"
                    + "".join(f"<td>{e(cell)}</td>" for cell in cells)
                    + "</tr>"
                )
        parts.append("</table></section>")
    for device, rows in tables.items():
        parts.append(f"<section class='device'><h2>{e(device)}</h2><table class='results'><tr>")
        parts += [f"<th>{e(title)}</th>" for _, title in REPORT_COLUMNS]
        parts.append("</tr>")
        for row in rows:
            parts.append(f"<tr class='{e(row['status'])}'>")
            parts += [f"<td>{e(row[key])}</td>" for key, _ in REPORT_COLUMNS]
            parts.append("</tr>")
        parts.append("</table></section>")
    if profile_diffs:
        parts.append(
            "<section id='profiles'><h2>Where the time went, against fp32</h2><table>"
            "<tr><th>device</th><th>model</th><th>variant</th><th>setting</th>"
            "<th>largest changes by op type (ms per run)</th></tr>"
        )
        for diff in profile_diffs:
            parts.append(
                "<tr>" + "".join(f"<td>{e(diff[k])}</td>" for k in PROFILE_DIFF_KEYS) + "</tr>"
            )
        parts.append("</table></section>")
    parts.append("<section id='warnings'><h2>Warnings</h2>")
    parts.append(
        "<ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>" if notes else "<p>none</p>"
    )
    parts.append("</section><section id='plots'><h2>Plots</h2>")
    for name, path in plot_files.items():
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(
            f"<figure><img alt='{e(name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(name.replace('_', ' '))} (also {e(path.with_suffix('.svg').name)})"
            "</figcaption></figure>"
        )
    if "power" not in plot_files:
        parts.append("<p>No power samples in this run: energy per inference is not measured.</p>")
    parts.append("</section><section id='metadata'><h2>Run metadata</h2><pre>")
    shown = {
        k: meta.get(k)
        for k in ("run_id", "started_at", "finished_at", "status_counts", "controller", "devices")
    }
    parts.append(e(json.dumps(shown, indent=1, default=str)))
    parts.append("</pre></section></body></html>")
    return "".join(parts)


def render_markdown(
    run_id: str,
    tables: dict[str, list[dict[str, str]]],
    notes: list[str],
    verdict: GateVerdict | None,
    profile_diffs: list[dict[str, str]] | None = None,
) -> str:
    from harness.report.verdict import markdown_summary

    lines = [f"# Benchmark report `{run_id}`", ""]
    if verdict is not None:
        lines += [markdown_summary(verdict), ""]
    for device, rows in tables.items():
        lines += [f"## {device}", ""]
        lines.append("| " + " | ".join(title for _, title in REPORT_COLUMNS) + " |")
        lines.append("|" + "---|" * len(REPORT_COLUMNS))
        for row in rows:
            lines.append(
                "| " + " | ".join(row[key].replace("|", "/") for key, _ in REPORT_COLUMNS) + " |"
            )
        lines.append("")
    if profile_diffs:
        lines += ["## Where the time went, against fp32", ""]
        lines += ["| " + " | ".join(PROFILE_DIFF_KEYS) + " |", "|" + "---|" * 5]
        lines += ["| " + " | ".join(d[k] for k in PROFILE_DIFF_KEYS) + " |" for d in profile_diffs]
        lines.append("")
    lines += ["## Warnings", ""] + ([f"- {n}" for n in notes] or ["none"])
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:first-child,td:nth-child(2){text-align:left}
tr.error td,tr.timeout td,tr.skipped td,tr.fail td{background:#fde2e2}
tr.inconclusive td,tr.missing td{background:#fff4d6}
.verdict.pass .outcome{color:#1a7f37}.verdict.fail .outcome{color:#cf222e}
.verdict.inconclusive .outcome,.verdict.missing .outcome{color:#9a6700}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
"""


def _speedup(compared: dict[str, Any]) -> str:
    speedup = compared.get("speedup")
    if speedup is None or (isinstance(speedup, float) and math.isnan(speedup)):
        return ""
    marker = " ~" if compared.get("significant") is False else ""
    paired = f" paired: {compared['verdict']}" if compared.get("method") == "paired" else ""
    return (
        f"{speedup:.2f}x [{compared['speedup_low']:.2f}–{compared['speedup_high']:.2f}]"
        f"{marker}{paired}"
    )
