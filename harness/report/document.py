"""The report of one run: `report.html` (self-contained: Vega-Lite charts and the
JavaScript that draws them inlined, report/page.py), `summary.md` (for a CI job summary or
a PR comment) and `plots/*.png|svg` (the same charts as images, report/charts.py).

Built from the run directory only, never from live devices. Rendering is pure (frames and
verdict in, text out); `write_report` does the file work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.analysis import compare_variants
from harness.frames import Row
from harness.gate import within_budgets
from harness.job_key import JobKey
from harness.report import charts, detail_charts
from harness.report.model import ReportModel
from harness.report.page import chart_csv, chart_values, render_html
from harness.report.summary import render_markdown
from harness.report.table import ci_range, missing, num, pct, text

if TYPE_CHECKING:
    import pandas as pd

    from harness.gate import GateVerdict
    from harness.stored_run import Run

REPORT_COLUMNS = [
    ("model", "model"), ("variant", "variant"), ("threads", "threads"), ("status", "status"),
    ("n", "n"), ("p50_ms", "p50 ms"), ("p50_ci", "p50 95% CI"), ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"), ("speedup", "speedup vs fp32"), ("size_kb", "size KB"),
    ("peak_rss_mb", "peak MB"), ("energy_mj", "energy mJ/inf"), ("accuracy", "accuracy"),
    ("top1_agreement", "top-1 agree"), ("psnr_db", "PSNR dB"), ("quality", "quality"),
]  # fmt: skip


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    plots: list[Path]


# the charts drawn as PNG and SVG by default: the ones a summary or a PR shows
IMAGE_CHARTS = ("speedup_matrix", "speedup_vs_fidelity")


def write_report(
    run: Run,
    verdict: GateVerdict | None = None,
    image_url: str | None = None,
    all_images: bool = False,
) -> ReportFiles:
    """Into the run's folder; `run` was loaded once by the caller, who may also have
    judged it with the gate (`verdict`). `image_url`: where plots/ will be served, for the
    pictures in summary.md. Every chart is in the page and its data in plots/*.csv; the
    images are drawn for IMAGE_CHARTS, or for every chart with `all_images`."""
    from harness.profiles import op_type_rows, profile_diffs

    results, samples = run.results, run.samples
    comparison = compare_variants(results, samples, run.comparisons, run.quality_tolerances)
    comparison = within_budgets(comparison, results, verdict)
    profiled = run.profiled
    folder = run.run_dir / "plots"
    built = {
        "speedup_vs_fidelity": charts.speedup_vs_fidelity(comparison),
        "speedup_matrix": charts.speedup_matrix(comparison),
        "latency": detail_charts.latency(results),
        "distributions": detail_charts.distributions(results, samples),
        "size_vs_speedup": charts.size_vs_speedup(comparison),
        "memory": detail_charts.memory(results),
        "power": detail_charts.power(run.power),
        "time_by_op_type": detail_charts.time_by_op_type(op_type_rows(profiled)),
    }
    built = {name: chart for name, chart in built.items() if chart is not None}
    specs = {name: charts.spec(chart) for name, chart in built.items()}
    drawn = {n: s for n, s in specs.items() if all_images or n in IMAGE_CHARTS}
    saved = charts.save_all(drawn, folder)
    files: dict[str, dict[str, str]] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for name, spec in specs.items():
        (folder / f"{name}.csv").write_text(chart_csv(chart_values(spec)))
        files[name] = {"CSV": f"plots/{name}.csv"}
        if name in saved:
            files[name] |= {"PNG": f"plots/{name}.png", "SVG": f"plots/{name}.svg"}
    tables = device_tables(results, comparison)
    notes = warnings(results, comparison)
    diffs = profile_diffs(profiled)
    shipping = worth_shipping(comparison)
    filters = {
        key: sorted({str(v) for v in results[key].dropna()})
        for key in ("device", "model", "strategy")
    }
    model = ReportModel(
        run.run_id, run.meta, tables, REPORT_COLUMNS, shipping, notes, verdict, filters,
        specs, files, diffs,
    )  # fmt: skip
    page = render_html(model, javascript_bundle())
    summary = render_markdown(model, image_url)
    html_path = run.run_dir / "report.html"
    html_path.write_text(page)
    markdown_path = run.run_dir / "summary.md"
    markdown_path.write_text(summary)
    return ReportFiles(html_path, markdown_path, list(saved.values()))


# what vl-convert's JavaScript bundle exposes to the page (report/page.py's RENDER uses it)
BUNDLE_SNIPPET = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"


def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (vl-convert bundles them, ~1.5 s),
    kept in the user's cache per vl-convert version: the same for every report."""
    import hashlib
    import os

    import vl_convert as vlc

    version = getattr(vlc, "__version__", "unknown")
    key = hashlib.sha256(f"{version}\n{BUNDLE_SNIPPET}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-harness"
    path = cache / f"vega-bundle-{key}.js"
    if path.is_file():
        return path.read_text()
    script = str(vlc.javascript_bundle(BUNDLE_SNIPPET))
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(script)
    partial.replace(path)  # whole or not at all, also with two reports at once
    return script


def worth_shipping(comparison: pd.DataFrame) -> dict[str, list[str]]:
    """Per device, the variants worth shipping, fastest first, a line each."""
    shipping: dict[str, list[str]] = {}
    for device, group in comparison.groupby("device", sort=False):
        chosen = group[(group["worth_shipping"] == True) & (group["variant"] != "fp32")]  # noqa: E712
        lines = []
        for row in chosen.sort_values("speedup", ascending=False).to_dict("records"):
            line = f"{row['model']}/{row['variant']} ({row['setting']}): {_speedup(row)}"
            line += (
                f", quality verified on {int(row['fidelity_n'])} samples"
                if not missing(row["fidelity_n"])
                else ", quality verified by the accuracy drop"
            )
            loss = row["fidelity_loss_pct"]
            if not missing(loss):
                line += f", fidelity loss {abs(loss) if abs(loss) < 0.005 else loss:.2f}"
                line += f" ({row['fidelity_measure']})"
            if not missing(row["size_ratio"]):
                line += f", size {row['size_ratio']:.2f}x fp32's"
            lines.append(line)
        shipping[str(device)] = lines
    return shipping


def device_tables(
    results: pd.DataFrame, comparison: pd.DataFrame
) -> dict[str, list[dict[str, str]]]:
    """Per device, display rows: model × variant × setting with the headline numbers."""
    speedups = {JobKey.of_row(r): r for r in comparison.to_dict("records")}
    tables: dict[str, list[dict[str, str]]] = {}
    for row in results.to_dict("records"):
        compared = speedups.get(JobKey.of_row(row), {})
        ok = row["status"] == "ok"
        tables.setdefault(str(row["device"]), []).append(
            {
                "device": str(row["device"]),
                "strategy": str(row["strategy"]),
                "row_class": _row_class(row, compared),
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
                "quality": _quality(compared) if row["variant"] != "fp32" else "",
            }
        )
    return tables


def _quality(compared: Row) -> str:
    """ "ok n=32", "LOSS n=12", "unverified n=32" (harness/fidelity.quality_verdict)."""
    verdict = compared.get("quality")
    if not isinstance(verdict, str):
        return ""
    n = compared.get("fidelity_n")
    count = f" n={int(n)}" if isinstance(n, (int, float)) and not missing(n) else ""
    return ("LOSS" if verdict == "loss" else verdict) + count


def _row_class(row: Row, compared: Row) -> str:
    """How a table row is coloured: a failed job, a variant slower than fp32 for sure, one
    worth shipping."""
    if row["status"] != "ok":
        return str(row["status"])
    if compared.get("significant") is True and (compared.get("speedup") or 1) < 1:
        return "slower"
    if compared.get("worth_shipping") is True and row["variant"] != "fp32":
        return "ship"
    return ""


def warnings(results: pd.DataFrame, comparison: pd.DataFrame) -> list[tuple[str, str]]:
    """What a reader must know before trusting a number: (where, what) pairs."""
    notes = []
    for row in results.to_dict("records"):
        where = f"{row['device']}: {row['model']}/{row['variant']} t{row['threads']}"
        if row["status"] != "ok":
            notes.append((where, f"did not succeed ({row['status']}): {row['error']}"))
        elif not missing(row["warnings"]):
            notes.append((where, str(row["warnings"])))
        if row.get("throttled") is True:
            notes.append((where, "the device throttled during the job"))
    for row in comparison.to_dict("records"):
        where = f"{row['device']}: {row['model']}/{row['variant']} {row['setting']}"
        if row["notes"] and "SLOWER" in row["notes"]:
            notes.append((where, str(row["notes"])))
        if row.get("quality") in ("loss", "unverified"):
            notes.append((where, f"quality {row['quality']}: {row['quality_note']}"))
    ok = results[results["status"] == "ok"]
    for device, group in ok.groupby("device"):
        arches = sorted({str(v) for v in group["arch"].dropna()})
        if len(arches) > 1:  # one device name, two machines: the file was reused
            notes.append(
                (str(device), f"results not comparable: the architecture differs: {arches}")
            )
    return notes


def _speedup(compared: Row) -> str:
    speedup = compared.get("speedup")
    if speedup is None or (isinstance(speedup, float) and math.isnan(speedup)):
        return ""
    marker = " ~" if compared.get("significant") is False else ""
    paired = f" paired: {compared['verdict']}" if compared.get("method") == "paired" else ""
    return (
        f"{speedup:.2f}x [{compared['speedup_low']:.2f}–{compared['speedup_high']:.2f}]"
        f"{marker}{paired}"
    )
