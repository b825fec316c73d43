"""The report's charts as Vega-Lite specifications (built with altair): frames in, chart
out, never a file. The HTML report embeds each spec and renders it in the page (hover for
exact values and intervals, filter by device, model and strategy); `save` writes the same
spec as PNG and SVG (vl-convert, no browser) for Markdown summaries and PR comments.

Vega-Lite rather than plotly: a spec is a small JSON document that reads as what the chart
shows and can be checked as data (tests compare a chart's points with the records), and
one renderer gives both the interactive page and the static images.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# fp32 is the reference: grey, so the strategies' colours stand out
REFERENCE_COLOUR = "#8c8c8c"
STRATEGY_COLOURS = [
    "#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d",
]  # fmt: skip
FILTERS = ("device", "model", "strategy")
WIDTH_PX = 330
PANEL_COLUMNS = 3


def _alt() -> Any:
    import altair as alt

    alt.data_transformers.disable_max_rows()
    return alt


def strategy_colours(strategies: list[str]) -> Any:
    """One colour per strategy, the same in every chart of a report; fp32 grey."""
    alt = _alt()
    others = sorted(s for s in set(strategies) if s != "fp32")
    domain = ["fp32", *others] if "fp32" in strategies else others
    colours = [REFERENCE_COLOUR] if "fp32" in strategies else []
    colours += [STRATEGY_COLOURS[i % len(STRATEGY_COLOURS)] for i in range(len(others))]
    return alt.Scale(domain=domain, range=colours)


def filter_params(frame: pd.DataFrame, names: tuple[str, ...] = FILTERS) -> list[Any]:
    """The page's filters as the chart's signals (`<name>_filter`; null shows everything),
    set by the report's filter bar on every chart at once (report/page.py)."""
    alt = _alt()
    return [alt.param(name=f"{name}_filter", value=None) for name in names if name in frame]


def _filtered(chart: Any, params: list[Any]) -> Any:
    for param in params:
        field = param.name.removesuffix("_filter")
        chart = chart.transform_filter(f"{param.name} == null || datum['{field}'] == {param.name}")
    return chart


def _records(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Only the columns a chart shows, NaN as null (Vega reads NaN as a number)."""
    import pandas as pd

    kept = frame[[c for c in columns if c in frame.columns]].copy()
    for column in kept.columns:
        if pd.api.types.is_datetime64_any_dtype(kept[column]):
            kept[column] = kept[column].map(lambda t: None if pd.isna(t) else t.isoformat())
    return kept.astype(object).where(kept.notna(), None)


def speedup_vs_fidelity(comparison: pd.DataFrame) -> Any | None:
    """Per device: each variant's speedup over fp32 (with its 95 % interval) against what it
    costs in fidelity, coloured by strategy, shaped by model; the front of the variants no
    other beats on both (per model and setting) drawn as a dashed line."""
    alt = _alt()
    shown = comparison[comparison["speedup"].notna()]
    if shown.empty:
        return None
    data = _records(
        shown,
        ["device", "model", "variant", "strategy", "setting", "speedup", "speedup_low",
         "speedup_high", "fidelity_loss_pct", "fidelity_measure", "front", "worth_shipping",
         "size_ratio", "peak_mem_ratio", "method"],
    )  # fmt: skip
    params = filter_params(shown)
    base = alt.Chart()
    x = alt.X(
        "fidelity_loss_pct:Q",
        title="fidelity loss, % (accuracy drop, else top-1 disagreement, else 1 − cosine)",
    )
    scale = alt.Scale(type="log", nice=False, padding=12)
    y = alt.Y("speedup:Q", title="speedup vs fp32 (×, log)", scale=scale)
    colour = alt.Color("strategy:N", scale=strategy_colours(list(shown["strategy"])))
    variants = base.transform_filter("datum.variant != 'fp32'")  # fp32 is the cross at (0, 1)
    interval = variants.mark_rule(strokeWidth=2, opacity=0.6).encode(
        x=x, y=alt.Y("speedup_low:Q", scale=scale), y2="speedup_high:Q", color=colour
    )
    front = (
        base.transform_filter("datum.front")
        .mark_line(strokeDash=[5, 3], color="#555")
        .encode(x=x, y=y, detail="group:N", order="fidelity_loss_pct:Q")
        .transform_calculate(group="datum.model + ' ' + datum.setting")
    )
    points = variants.mark_point(filled=True, size=90, opacity=0.9).encode(
        x=x,
        y=y,
        color=colour,
        shape=alt.Shape("model:N"),
        stroke=alt.condition("datum.worth_shipping", alt.value("black"), alt.value(None)),
        tooltip=[
            "device:N", "model:N", "variant:N", "strategy:N", "setting:N",
            alt.Tooltip("speedup:Q", format=".3f", title="speedup ×"),
            alt.Tooltip("speedup_low:Q", format=".3f", title="95% CI low"),
            alt.Tooltip("speedup_high:Q", format=".3f", title="95% CI high"),
            alt.Tooltip("fidelity_loss_pct:Q", format=".2f", title="fidelity loss %"),
            "fidelity_measure:N", "method:N",
            alt.Tooltip("size_ratio:Q", format=".2f", title="size vs fp32"),
            alt.Tooltip("peak_mem_ratio:Q", format=".2f", title="peak memory vs fp32"),
            "worth_shipping:N",
        ],
    )  # fmt: skip
    one = alt.Chart().mark_rule(color="#999", strokeDash=[2, 2]).encode(y=alt.datum(1))
    reference = (
        alt.Chart()
        .mark_point(shape="cross", size=160, color=REFERENCE_COLOUR, filled=True)
        .encode(x=alt.datum(0), y=alt.datum(1))
    )
    layered = _filtered(alt.layer(one, reference, front, interval, points, data=data), params)
    return (
        layered.properties(width=WIDTH_PX + 90, height=260)
        .facet(facet=alt.Facet("device:N", title=None), columns=PANEL_COLUMNS)
        .add_params(*params)
    )


def speedup_matrix(comparison: pd.DataFrame) -> Any | None:
    """Strategy × device: the geometric mean speedup of each strategy's variants over fp32
    on each device (over models and settings), so a lab reads at a glance."""
    alt = _alt()
    rows = comparison[(comparison["variant"] != "fp32") & comparison["speedup"].notna()]
    if rows.empty:
        return None
    cells = [
        {"strategy": strategy, "device": device, "variants": len(group),
         "speedup": math.exp(sum(math.log(float(s)) for s in group["speedup"]) / len(group)),
         "lowest": float(group["speedup"].min()), "highest": float(group["speedup"].max()),
         "models": ", ".join(sorted({str(m) for m in group["model"]}))}
        for (strategy, device), group in rows.groupby(["strategy", "device"])
    ]  # fmt: skip
    import pandas as pd

    data = pd.DataFrame(cells)
    params = filter_params(data, ("device", "strategy"))
    base = _filtered(alt.Chart(data), params).encode(
        x=alt.X("device:N", title=None, axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("strategy:N", title=None),
    )
    # symmetric around 1 in log space: 0.5x is as red as 2x is blue
    reach = max(max(c["speedup"], 1 / c["speedup"]) for c in cells) * 1.05
    colour = alt.Color(
        "speedup:Q",
        title="speedup ×",
        scale=alt.Scale(type="log", scheme="redblue", domain=[1 / reach, reach], domainMid=1),
    )
    tiles = base.mark_rect().encode(
        color=colour,
        tooltip=[
            "strategy:N", "device:N", alt.Tooltip("speedup:Q", format=".2f", title="geo-mean ×"),
            alt.Tooltip("lowest:Q", format=".2f"), alt.Tooltip("highest:Q", format=".2f"),
            "variants:Q", "models:N",
        ],
    )  # fmt: skip
    labels = base.mark_text(fontSize=13).encode(
        text=alt.Text("speedup:Q", format=".2f"), color=alt.value("black")
    )
    width = max(90 * data["device"].nunique(), 180)
    return (
        (tiles + labels)
        .properties(width=width, height=30 * data["strategy"].nunique())
        .add_params(*params)
    )


def latency(results: pd.DataFrame) -> Any | None:
    """p50 per variant with its 95 % interval, per device, coloured by strategy."""
    alt = _alt()
    ok = results[(results["status"] == "ok") & results["p50_ms"].notna()].copy()
    if ok.empty:
        return None
    ok["label"] = ok["model"] + "/" + ok["variant"] + " t" + ok["threads"].astype(str)
    data = _records(
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
    height = 18 * int(ok.groupby("device")["label"].nunique().max())
    return (
        _filtered(alt.layer(bars, points, data=data), params)
        .properties(width=WIDTH_PX + 120, height=max(height, 60))
        .facet(row=alt.Row("device:N", title=None))
        .add_params(*params)
    )


def memory(results: pd.DataFrame) -> Any | None:
    """Peak resident memory per variant, per device, coloured by strategy."""
    alt = _alt()
    ok = results[(results["status"] == "ok") & results["peak_rss_mb"].notna()].copy()
    if ok.empty:
        return None
    ok["label"] = ok["model"] + "/" + ok["variant"] + " t" + ok["threads"].astype(str)
    data = _records(ok, ["device", "model", "variant", "strategy", "label", "peak_rss_mb",
                         "model_mem_mb", "peak_pss_mb"])  # fmt: skip
    params = filter_params(ok)
    bars = _filtered(alt.Chart(data), params).mark_bar().encode(
        x=alt.X("peak_rss_mb:Q", title="peak resident memory, MB"),
        y=alt.Y("label:N", title=None, sort=None),
        color=alt.Color("strategy:N", scale=strategy_colours(list(ok["strategy"]))),
        tooltip=["device:N", "label:N", alt.Tooltip("peak_rss_mb:Q", format=".1f"),
                 alt.Tooltip("model_mem_mb:Q", format=".1f"),
                 alt.Tooltip("peak_pss_mb:Q", format=".1f")],
    )  # fmt: skip
    height = 18 * int(ok.groupby("device")["label"].nunique().max())
    return (
        bars.properties(width=WIDTH_PX + 120, height=max(height, 60))
        .facet(row=alt.Row("device:N", title=None))
        .add_params(*params)
    )


def size_vs_speedup(comparison: pd.DataFrame) -> Any | None:
    """Model size against speedup, both relative to fp32 (fp32 itself at 1, 1)."""
    alt = _alt()
    shown = comparison[comparison["speedup"].notna() & comparison["size_ratio"].notna()]
    shown = shown[shown["variant"] != "fp32"]
    if shown.empty:
        return None
    data = _records(shown, ["device", "model", "variant", "strategy", "setting", "speedup",
                            "size_ratio"])  # fmt: skip
    params = filter_params(shown)
    points = alt.Chart().mark_point(filled=True, size=80).encode(
        x=alt.X("size_ratio:Q", title="size vs fp32"),
        y=alt.Y("speedup:Q", title="speedup vs fp32 (×, log)", scale=alt.Scale(type="log")),
        color=alt.Color("strategy:N", scale=strategy_colours(list(shown["strategy"]))),
        shape="model:N",
        tooltip=["device:N", "model:N", "variant:N", "setting:N",
                 alt.Tooltip("size_ratio:Q", format=".3f"), alt.Tooltip("speedup:Q", format=".3f")],
    )  # fmt: skip
    reference = (
        alt.Chart()
        .mark_point(shape="cross", size=150, color=REFERENCE_COLOUR)
        .encode(x=alt.datum(1), y=alt.datum(1))
    )
    return (
        _filtered(alt.layer(reference, points, data=data), params)
        .properties(width=WIDTH_PX, height=250)
        .facet(facet=alt.Facet("device:N", title=None), columns=PANEL_COLUMNS)
        .add_params(*params)
    )


def distributions(results: pd.DataFrame, samples: pd.DataFrame, most: int = 400) -> Any | None:
    """Each job's latency samples as a box (whiskers at 1.5 IQR), at most `most` samples a
    job (evenly taken), per device."""
    alt = _alt()
    if samples.empty:
        return None
    import pandas as pd

    ok = results[results["status"] == "ok"].set_index("job_id")
    kept = []
    for job_id, group in samples.groupby("job_id", sort=False):
        if job_id not in ok.index:
            continue
        step = max(1, len(group) // most)
        row = ok.loc[job_id]
        kept.append(
            pd.DataFrame({"latency_ms": group["latency_ns"].iloc[::step] / 1e6}).assign(
                device=row["device"], strategy=row["strategy"], model=row["model"],
                label=f"{row['model']}/{row['variant']} t{row['threads']}",
            )
        )  # fmt: skip
    if not kept:
        return None
    data = pd.concat(kept, ignore_index=True)
    params = filter_params(data)
    boxes = (
        _filtered(alt.Chart(data), params)
        .mark_boxplot(size=12)
        .encode(
            x=alt.X("latency_ms:Q", title="latency, ms", scale=alt.Scale(zero=False)),
            y=alt.Y("label:N", title=None, sort=None),
            color=alt.Color("strategy:N", scale=strategy_colours(list(data["strategy"]))),
        )
    )
    return (
        boxes.properties(width=WIDTH_PX + 120)
        .facet(row=alt.Row("device:N", title=None))
        .add_params(*params)
    )


def power(power_frame: pd.DataFrame, most: int = 6) -> Any | None:
    """Power over each job (the first `most`), the timed window shaded."""
    alt = _alt()
    if power_frame.empty:
        return None
    jobs = list(dict.fromkeys(power_frame["job_id"]))[:most]
    shown = power_frame[power_frame["job_id"].isin(jobs)]
    data = _records(shown, ["job_id", "t_s", "power_w", "phase", "window_s"])
    line = alt.Chart().mark_line().encode(
        x=alt.X("t_s:Q", title="seconds from the start of the timed window"),
        y=alt.Y("power_w:Q", title="W"),
        tooltip=[alt.Tooltip("t_s:Q", format=".2f"), alt.Tooltip("power_w:Q", format=".3f"),
                 "phase:N"],
    )  # fmt: skip
    shade = (
        alt.Chart()
        .mark_rect(opacity=0.15, color="#f58518")
        .encode(x=alt.datum(0), x2=alt.X2("window_s:Q", aggregate="max"))
    )
    return (
        alt.layer(shade, line, data=data)
        .properties(width=WIDTH_PX * 2, height=90)
        .facet(row=alt.Row("job_id:N", title=None))
        .resolve_scale(x="independent")
    )


def time_by_op_type(rows: list[dict[str, Any]], top: int = 7) -> Any | None:
    """Stacked bars per device: each profiled model/variant's time per run by op type (the
    `top` largest op types over the run, the rest as "other")."""
    alt = _alt()
    if not rows:
        return None
    import pandas as pd

    frame = pd.DataFrame(rows)
    leaders = list(frame.groupby("op_type")["ms_per_run"].sum().nlargest(top).index)
    frame["op_type"] = frame["op_type"].where(frame["op_type"].isin(leaders), "other")
    frame["label"] = frame["model"] + "/" + frame["variant"] + " t" + frame["threads"].astype(str)
    data = frame.groupby(["device", "label", "model", "variant", "op_type"], as_index=False)[
        "ms_per_run"
    ].sum()
    params = filter_params(data, ("device", "model"))
    bars = (
        _filtered(alt.Chart(data), params)
        .mark_bar()
        .encode(
            x=alt.X("ms_per_run:Q", title="ms per run (profiled)", stack="zero"),
            y=alt.Y("label:N", title=None, sort=None),
            color=alt.Color("op_type:N", title="op type", sort=[*leaders, "other"]),
            tooltip=["device:N", "label:N", "op_type:N", alt.Tooltip("ms_per_run:Q", format=".3f")],
        )
    )
    return (
        bars.properties(width=WIDTH_PX + 120)
        .facet(row=alt.Row("device:N", title=None))
        .add_params(*params)
    )


def trend(
    history: pd.DataFrame,
    budgets: dict[tuple[str, str], tuple[str, float]] | None = None,
    regressions: set[tuple[str, str, str, str]] | None = None,
) -> Any | None:
    """Per metric (p50, and p90 where a budget is on p90), a panel per model/variant with
    each device over runs, every panel of a metric on one y scale (so a small change looks
    small), the budget on that metric drawn in its panel, regressions circled."""
    alt = _alt()
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
        data = _records(frame, ["run_id", "started_at", "series", "case", "value_ms", "limit_ms",
                                "regression"])  # fmt: skip
        name = metric.removesuffix("_ms")
        line = (
            alt.Chart()
            .mark_line(point=True)
            .encode(
                x=alt.X("started_at:T", title=None),
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
        )
    return alt.vconcat(*charts)


def spec(chart: Any) -> dict[str, Any]:
    """The chart's Vega-Lite JSON (data inlined)."""
    document: dict[str, Any] = chart.to_dict()
    return document


def save(chart: Any, folder: Path, name: str) -> Path:
    """PNG and SVG side by side (vl-convert, no browser); returns the PNG."""
    import vl_convert as vlc

    folder.mkdir(parents=True, exist_ok=True)
    document = spec(chart)
    png = folder / f"{name}.png"
    png.write_bytes(vlc.vegalite_to_png(document, scale=2))
    (folder / f"{name}.svg").write_text(vlc.vegalite_to_svg(document))
    return png
