"""Plots of stored results (matplotlib, no pyplot state): frames in, figures out.

Each function returns a `Figure`, or None when the data needed for it is not there.
`save` writes PNG and SVG side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _label(row: Any) -> str:
    return f"{row['model']}/{row['variant']} t{row['threads']}"


def latency_by_variant(results: pd.DataFrame) -> Figure | None:
    """p50 with its 95% CI per model/variant, one panel per device."""
    ok = results[results["status"] == "ok"]
    if ok.empty:
        return None
    devices = list(dict.fromkeys(ok["device"]))
    height = 0.35 * ok.groupby("device").size().max() + 1.5
    figure = _figure(7 * len(devices), height)
    for axis, device in zip(
        figure.subplots(1, len(devices), squeeze=False)[0], devices, strict=True
    ):
        rows = ok[ok["device"] == device]
        labels = [_label(r) for _, r in rows.iterrows()]
        p50 = rows["p50_ms"].to_numpy()
        errors = [p50 - rows["p50_ci_low_ms"].to_numpy(), rows["p50_ci_high_ms"].to_numpy() - p50]
        axis.errorbar(p50, labels, xerr=errors, fmt="o", color="#4C72B0", capsize=3)
        axis.invert_yaxis()
        wide = p50.max() / max(p50.min(), 1e-9) > 20
        axis.set_xscale("log" if wide else "linear")
        axis.set_xlabel(f"p50 latency, ms{' (log)' if wide else ''}; bars: 95% CI")
        axis.grid(axis="x", alpha=0.3)
        axis.set_title(f"latency on {device}")
    return figure


def latency_distributions(results: pd.DataFrame, samples: pd.DataFrame) -> Figure | None:
    """Box plots of every timed latency, per job, one panel per device."""
    ok = results[results["status"] == "ok"]
    if ok.empty or samples.empty:
        return None
    devices = list(dict.fromkeys(ok["device"]))
    height = 0.35 * ok.groupby("device").size().max() + 1.5
    figure = _figure(7 * len(devices), height)
    by_job = {job: group["latency_ns"].to_numpy() / 1e6 for job, group in samples.groupby("job_id")}
    for axis, device in zip(
        figure.subplots(1, len(devices), squeeze=False)[0], devices, strict=True
    ):
        rows = ok[ok["device"] == device]
        data = [by_job.get(job_id, []) for job_id in rows["job_id"]]
        axis.boxplot(
            data,
            orientation="horizontal",
            tick_labels=[_label(r) for _, r in rows.iterrows()],
            showfliers=False,
            whis=(1, 99),
        )
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_xlabel("latency, ms (log; whiskers p1–p99)")
        axis.set_title(f"latency distribution on {device}")
    return figure


def accuracy_vs_latency(comparison: pd.DataFrame) -> Figure | None:
    """Accuracy against p50 per device and model, with the Pareto front drawn."""
    rows = comparison[comparison["accuracy"].notna()]
    if rows.empty:
        return None
    groups = list(rows.groupby(["device", "model"], sort=False))
    figure = _figure(5.5 * len(groups), 4)
    for axis, ((device, model), group) in zip(
        figure.subplots(1, len(groups), squeeze=False)[0], groups, strict=True
    ):
        axis.scatter(group["p50_ms"], group["accuracy"] * 100, color="#4C72B0")
        for _, row in group.iterrows():
            axis.annotate(
                row["variant"],
                (row["p50_ms"], row["accuracy"] * 100),
                fontsize=8,
                xytext=(4, 2),
                textcoords="offset points",
            )
        front = group[group["pareto"] == True].sort_values("p50_ms")  # noqa: E712 - nullable
        axis.plot(
            front["p50_ms"],
            front["accuracy"] * 100,
            color="#C44E52",
            drawstyle="steps-post",
            label="Pareto front",
        )
        axis.set_xlabel("p50 latency, ms")
        axis.set_ylabel("accuracy on the device, %")
        axis.set_title(f"{model} on {device}")
        axis.legend(loc="lower right")
    return figure


def size_vs_speedup(comparison: pd.DataFrame) -> Figure | None:
    rows = comparison[comparison["speedup"].notna() & comparison["size_ratio"].notna()]
    if rows.empty:
        return None
    figure = _figure(6.5, 4.5)
    axis = figure.subplots()
    for model, group in rows.groupby("model", sort=False):
        axis.scatter(group["size_ratio"], group["speedup"], label=str(model))
        for _, row in group.iterrows():
            axis.annotate(
                row["variant"],
                (row["size_ratio"], row["speedup"]),
                fontsize=7,
                xytext=(3, 2),
                textcoords="offset points",
            )
    axis.axhline(1.0, color="grey", linewidth=0.8)
    axis.set_xlabel("model size vs fp32")
    axis.set_ylabel("speedup vs fp32 (p50)")
    axis.set_title("size vs speedup")
    axis.legend(fontsize=8)
    return figure


def memory_by_variant(results: pd.DataFrame) -> Figure | None:
    ok = results[(results["status"] == "ok") & results["peak_rss_mb"].notna()]
    if ok.empty:
        return None
    figure = _figure(7, 0.35 * len(ok) + 1.5)
    axis = figure.subplots()
    labels = [f"{r['device']}: {_label(r)}" for _, r in ok.iterrows()]
    axis.barh(labels, ok["peak_rss_mb"], color="#55A868", label="peak RSS")
    axis.barh(
        labels, ok["model_mem_mb"].fillna(0), color="#8172B2", label="model (after load − before)"
    )
    axis.invert_yaxis()
    axis.set_xlabel("MB")
    axis.set_title("memory per variant")
    axis.legend(fontsize=8)
    return figure


def power_traces(power: pd.DataFrame, most: int = 6) -> Figure | None:
    """Power over each job (the first `most`), the timed window shaded, the idle baseline
    and the rest (load, warm-up) drawn as they came."""
    if power.empty:
        return None
    jobs = list(dict.fromkeys(power["job_id"]))[:most]
    figure = _figure(7, 1.6 * len(jobs) + 0.6)
    axes = figure.subplots(len(jobs), 1, squeeze=False, sharex=False)[:, 0]
    for axis, job in zip(axes, jobs, strict=True):
        trace = power[power["job_id"] == job].sort_values("t_s")
        axis.axvspan(
            0, float(trace["window_s"].iloc[0]), color="#DD8452", alpha=0.2, label="timed window"
        )
        axis.plot(trace["t_s"], trace["power_w"], color="#4C72B0", linewidth=1)
        idle = trace[trace["phase"] == "idle"]
        if not idle.empty:
            axis.axhline(idle["power_w"].mean(), color="grey", linestyle=":", label="idle mean")
        axis.set_title(job, fontsize=8)
        axis.set_ylabel("W")
        axis.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("seconds from the start of the timed window")
    return figure


def trend(
    history: pd.DataFrame,
    budgets: dict[tuple[str, str], float] | None = None,
    regressions: set[tuple[str, str, str, str]] | None = None,
) -> Figure | None:
    """p50 over runs per device × model × variant; budget lines (p50 or p90 limits keyed by
    (model, variant)) and regressions (run_id, device, model, variant) marked."""
    ok = history[history["status"] == "ok"]
    if ok.empty:
        return None
    keys = list(ok.groupby(["model", "variant"], sort=False).groups)
    figure = _figure(6.5, 2.6 * len(keys))
    axes = figure.subplots(len(keys), 1, squeeze=False)[:, 0]
    for axis, (model, variant) in zip(axes, keys, strict=True):
        series = ok[(ok["model"] == model) & (ok["variant"] == variant)]
        for (device, threads), line in series.groupby(["device", "threads"]):
            line = line.sort_values("started_at")
            axis.errorbar(
                line["started_at"],
                line["p50_ms"],
                yerr=[
                    line["p50_ms"] - line["p50_ci_low_ms"],
                    line["p50_ci_high_ms"] - line["p50_ms"],
                ],
                marker="o",
                capsize=2,
                label=f"{device} t{threads}",
            )
            marked = line[
                [(r, device, model, variant) in (regressions or set()) for r in line["run_id"]]
            ]
            axis.scatter(
                marked["started_at"],
                marked["p50_ms"],
                s=120,
                facecolors="none",
                edgecolors="#C44E52",
                linewidths=2,
                label="regression" if len(marked) else None,
            )
        limit = (budgets or {}).get((str(model), str(variant)))
        if limit is not None:
            axis.axhline(limit, color="#C44E52", linestyle="--", label="budget")
        axis.set_title(f"{model}/{variant}: p50 over runs")
        axis.set_ylabel("ms")
        axis.legend(fontsize=7)
    return figure


def save(figure: Figure, folder: Path, name: str) -> Path:
    """PNG and SVG side by side; returns the PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    figure.savefig(png, dpi=110)
    figure.savefig(folder / f"{name}.svg")
    return png


def time_by_op_type(rows: list[dict[str, Any]], top: int = 7) -> Figure | None:
    """Stacked bars per device: each profiled model/variant's time per run by op type (the
    `top` largest op types over the run, the rest as "other")."""
    import pandas as pd

    if not rows:
        return None
    frame = pd.DataFrame(rows)
    leaders = list(frame.groupby("op_type")["ms_per_run"].sum().nlargest(top).index)
    frame["op_type"] = frame["op_type"].where(frame["op_type"].isin(leaders), "other")
    devices = list(dict.fromkeys(frame["device"]))
    height = 0.4 * frame.groupby("device")[["model", "variant"]].nunique().max().max() + 2
    figure = _figure(7 * len(devices), max(height, 2.5))
    for axis, device in zip(
        figure.subplots(1, len(devices), squeeze=False)[0], devices, strict=True
    ):
        table = (
            frame[frame["device"] == device]
            .assign(
                label=lambda f: f["model"] + "/" + f["variant"] + " t" + f["threads"].astype(str)
            )
            .pivot_table(index="label", columns="op_type", values="ms_per_run", aggfunc="sum")
            .fillna(0.0)
        )
        left = [0.0] * len(table)
        for op_type in [c for c in [*leaders, "other"] if c in table.columns]:
            values = table[op_type].tolist()
            axis.barh(table.index, values, left=left, label=op_type)
            left = [a + b for a, b in zip(left, values, strict=True)]
        axis.invert_yaxis()
        axis.set_xlabel("ms per run (profiled)")
        axis.set_title(f"time by op type on {device}")
        axis.legend(fontsize=7, loc="lower right")
    return figure
