"""The report's detail charts (latency, memory, distributions, power, time by op type)
and the history's trend, as Vega-Lite specs: frames in, chart out (report/charts.py has
the shared parts, the "which variant to ship" charts, and `save`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.report.charts import (
    PANEL_COLUMNS,
    WIDTH_PX,
    altair,
    chart_records,
    filter_params,
    filtered,
    rows_by_device,
    strategy_colours,
    titled,
    with_labels,
)

if TYPE_CHECKING:
    import pandas as pd


def latency(results: pd.DataFrame) -> Any | None:
    """p50 per variant with its 95 % interval, per device, coloured by strategy."""
    alt = altair()
    ok = results[(results["status"] == "ok") & results["p50_ms"].notna()]
    if ok.empty:
        return None
    ok = with_labels(ok)
    data = chart_records(
        ok,
        ["device", "model", "variant", "strategy", "label", "provider", "p50_ms",
         "p50_ci_low_ms", "p50_ci_high_ms", "p90_ms", "p99_ms", "n"],
    )  # fmt: skip
    params = filter_params(ok)
    scale = alt.Scale(type="log", nice=False, padding=8)
    x = alt.X("p50_ms:Q", title="p50 latency, ms (log)", scale=scale)
    colour = alt.Color("strategy:N", scale=strategy_colours(list(ok["strategy"])))
    y = alt.Y("label:N", title=None, sort=None)
    base = alt.Chart()
    bars = base.mark_rule(strokeWidth=2).encode(
        x=alt.X("p50_ci_low_ms:Q", scale=scale), x2="p50_ci_high_ms:Q", y=y, color=colour
    )
    points = base.mark_point(filled=True, size=60).encode(
        x=x, y=y, color=colour,
        tooltip=["device:N", "label:N", "provider:N", "n:Q"]
        + [alt.Tooltip(f"{k}:Q", format=".4f")
           for k in ("p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", "p90_ms", "p99_ms")],
    )  # fmt: skip
    chart = rows_by_device(filtered(alt.layer(bars, points, data=data), params), params, ok)
    return titled(chart, "p50 latency per job, with its 95 % interval")


def memory(results: pd.DataFrame) -> Any | None:
    """The model's own memory per variant (peak resident memory less what the process held
    before it loaded the model: the interpreter and the runtime are the same ~80 MB for
    every variant and would hide the differences), per device, coloured by strategy."""
    alt = altair()
    ok = results[(results["status"] == "ok") & results["model_mem_mb"].notna()]
    if ok.empty:
        return None
    ok = with_labels(ok)
    data = chart_records(ok, ["device", "model", "variant", "strategy", "label", "peak_rss_mb",
                         "model_mem_mb", "peak_pss_mb"])  # fmt: skip
    params = filter_params(ok)
    bars = filtered(alt.Chart(data), params).mark_bar().encode(
        x=alt.X("model_mem_mb:Q", title="model memory: peak RSS − RSS before loading, MB"),
        y=alt.Y("label:N", title=None, sort=None),
        color=alt.Color("strategy:N", scale=strategy_colours(list(ok["strategy"]))),
        tooltip=["device:N", "label:N", alt.Tooltip("peak_rss_mb:Q", format=".1f"),
                 alt.Tooltip("model_mem_mb:Q", format=".1f"),
                 alt.Tooltip("peak_pss_mb:Q", format=".1f")],
    )  # fmt: skip
    return titled(rows_by_device(bars, params, ok), "Model memory per job, MB",
                  "peak resident memory less the process before the model was loaded")  # fmt: skip


QUANTILES = (1, 25, 50, 75, 99)


def distributions(results: pd.DataFrame, samples: pd.DataFrame) -> Any | None:
    """Each job's latency distribution from its quantiles (p1–p99 line, p25–p75 box, p50
    tick), per device: a row a job, whatever its sample count (the raw samples are in
    samples.parquet)."""
    alt = altair()
    if samples.empty:
        return None
    import numpy as np
    import pandas as pd

    ok = with_labels(results[results["status"] == "ok"]).set_index("job_id")
    rows = []
    for job_id, group in samples.groupby("job_id", sort=False):
        if job_id not in ok.index:
            continue
        row = ok.loc[job_id]
        marks = np.percentile(group["latency_ns"].to_numpy() / 1e6, QUANTILES)
        quantiles = {f"p{q}_ms": float(v) for q, v in zip(QUANTILES, marks, strict=True)}
        rows.append({"device": row["device"], "strategy": row["strategy"], "model": row["model"],
                     "label": row["label"], "n": len(group), **quantiles})  # fmt: skip
    if not rows:
        return None
    data = pd.DataFrame(rows)
    params = filter_params(data)
    y = alt.Y("label:N", title=None, sort=None)
    colour = alt.Color("strategy:N", scale=strategy_colours(list(data["strategy"])))
    x_scale = alt.Scale(zero=False)
    whiskers = (
        alt.Chart()
        .mark_rule()
        .encode(
            x=alt.X("p1_ms:Q", title="latency, ms", scale=x_scale), x2="p99_ms:Q", y=y, color=colour
        )
    )
    boxes = alt.Chart().mark_bar(size=10).encode(
        x=alt.X("p25_ms:Q", scale=x_scale), x2="p75_ms:Q", y=y, color=colour,
        tooltip=["device:N", "label:N", "n:Q",
                 *(alt.Tooltip(f"p{q}_ms:Q", format=".4f") for q in QUANTILES)],
    )  # fmt: skip
    medians = (
        alt.Chart()
        .mark_tick(color="black", thickness=2, size=12)
        .encode(x=alt.X("p50_ms:Q", scale=x_scale), y=y)
    )
    chart = rows_by_device(
        filtered(alt.layer(whiskers, boxes, medians, data=data), params), params, data
    )
    subtitle = "line p1–p99, box p25–p75, tick the median; raw samples in samples.parquet"
    return titled(chart, "Latency distribution per job", subtitle)


def power(power_frame: pd.DataFrame, most: int = 6) -> Any | None:
    """Power over each job (the first `most`), the timed window shaded."""
    alt = altair()
    if power_frame.empty:
        return None
    jobs = list(dict.fromkeys(power_frame["job_id"]))[:most]
    shown = power_frame[power_frame["job_id"].isin(jobs)]
    data = chart_records(shown, ["job_id", "t_s", "power_w", "phase", "window_s"])
    line = alt.Chart().mark_line().encode(
        x=alt.X("t_s:Q", title="seconds from the start of the timed window"),
        y=alt.Y("power_w:Q", title="W"),
        tooltip=[alt.Tooltip("t_s:Q", format=".2f"), alt.Tooltip("power_w:Q", format=".3f"),
                 "phase:N"],
    )  # fmt: skip
    shade = (
        alt.Chart()
        .transform_aggregate(window_s="max(window_s)", groupby=["job_id"])
        .transform_calculate(start="0")
        .mark_rect(opacity=0.15, color="#f58518")
        .encode(x="start:Q", x2="window_s:Q")
    )
    chart = (
        alt.layer(shade, line, data=data)
        .properties(width=WIDTH_PX * 2, height=90)
        .facet(row=alt.Row("job_id:N", title=None))
        .resolve_scale(x="independent")
    )
    return titled(chart, "Power over each job, W", "the timed window shaded")


def time_by_op_type(rows: list[dict[str, Any]], top: int = 7) -> Any | None:
    """Stacked bars per device: each profiled model/variant's time per run by op type (the
    `top` largest op types over the run, the rest as "other")."""
    alt = altair()
    if not rows:
        return None
    import pandas as pd

    frame = with_labels(pd.DataFrame(rows))
    leaders = list(frame.groupby("op_type")["ms_per_run"].sum().nlargest(top).index)
    frame["op_type"] = frame["op_type"].where(frame["op_type"].isin(leaders), "other")
    data = frame.groupby(["device", "label", "model", "variant", "op_type"], as_index=False)[
        "ms_per_run"
    ].sum()
    params = filter_params(data, ("device", "model"))
    bars = (
        filtered(alt.Chart(data), params)
        .mark_bar()
        .encode(
            x=alt.X("ms_per_run:Q", title="ms per run (profiled)", stack="zero"),
            y=alt.Y("label:N", title=None, sort=None),
            color=alt.Color("op_type:N", title="op type", sort=[*leaders, "other"]),
            tooltip=["device:N", "label:N", "op_type:N", alt.Tooltip("ms_per_run:Q", format=".3f")],
        )
    )
    return titled(rows_by_device(bars, params), "Where the time goes, by op type")


def trend(
    history: pd.DataFrame,
    budgets: dict[tuple[str, str], tuple[str, float]] | None = None,
    regressions: set[tuple[str, str, str, str]] | None = None,
) -> Any | None:
    """Per metric (p50, and p90 where a budget is on p90), a panel per model/variant with
    each device over runs, each panel on its own y scale (models differ a hundredfold), the
    budget on that metric drawn in its panel, regressions circled; 24-hour times."""
    alt = altair()
    ok = history[history["status"] == "ok"].copy()
    if ok.empty:
        return None
    ok["series"] = ok["device"] + " t" + ok["threads"].astype(str)
    ok["case"] = ok["model"] + "/" + ok["variant"]
    ok["regression"] = [
        (r.run_id, r.device, r.model, r.variant) in (regressions or set()) for r in ok.itertuples()
    ]
    on_p90 = any(metric == "p90_ms" for metric, _ in (budgets or {}).values())
    charts = []
    for metric in ["p50_ms", "p90_ms"] if on_p90 else ["p50_ms"]:
        frame = ok.assign(
            value_ms=ok[metric],
            limit_ms=[
                limit if on == metric else None
                for on, limit in (
                    (budgets or {}).get((m, v), (None, None))
                    for m, v in zip(ok["model"], ok["variant"], strict=True)
                )
            ],
        )
        shown = ["run_id", "started_at", "series", "case", "value_ms", "limit_ms", "regression"]
        data = chart_records(frame, shown)
        name = metric.removesuffix("_ms")
        line = (
            alt.Chart()
            .mark_line(point=True)
            .encode(
                x=alt.X("started_at:T", title=None, axis=alt.Axis(format="%m-%d %H:%M")),
                y=alt.Y("value_ms:Q", title=f"{name}, ms"),
                color=alt.Color("series:N", title="device"),
                tooltip=["run_id:N", "series:N", alt.Tooltip("value_ms:Q", format=".4f")],
            )
        )
        circles = (
            alt.Chart()
            .transform_filter("datum.regression")
            .mark_point(size=250, color="#c44e52", strokeWidth=2)
            .encode(x="started_at:T", y="value_ms:Q")
        )
        limit = (
            alt.Chart()
            .mark_rule(color="#c44e52", strokeDash=[6, 4])
            .encode(y=alt.Y("limit_ms:Q", aggregate="max"))
        )
        charts.append(
            alt.layer(line, circles, limit, data=data)
            .properties(width=WIDTH_PX, height=140)
            .facet(
                facet=alt.Facet("case:N", title=f"{name} over runs (budget dashed)"),
                columns=PANEL_COLUMNS,
            )
            .resolve_scale(y="independent")
        )
    return alt.vconcat(*charts)
