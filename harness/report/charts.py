"""The report's charts as Vega-Lite specifications (built with altair): frames in, chart
out, never a file. The HTML report embeds each spec and renders it in the page (hover for
exact values and intervals, filter by device, model and strategy); `save` writes the same
spec as PNG and SVG (vl-convert, no browser) for Markdown summaries and PR comments.

Vega-Lite rather than plotly: a spec is a small JSON document that reads as what the chart
shows and can be checked as data (tests compare a chart's points with the records), and
one renderer gives both the interactive page and the static images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# fp32 is the reference: grey, so the strategies' colours stand out; each built-in strategy
# has its own colour, so a strategy looks the same in every chart of every report
REFERENCE_COLOUR = "#8c8c8c"
STRATEGY_COLOURS = {
    "fp16": "#4c78a8", "int8-dynamic": "#f58518", "int8-static": "#54a24b",
    "int8-weight-only": "#e45756", "prune-unstructured": "#72b7b2",
    "prune-structured": "#b279a2", "low-rank": "#eeca3b", "external": "#9d755d",
}  # fmt: skip
OTHER_COLOURS = ["#ff9da6", "#bab0ac", "#17becf", "#8c564b"]
FILTERS = ("device", "model", "strategy")
WIDTH_PX = 400  # a panel; the wide charts are twice that (a 1400 px page holds both)
PANEL_COLUMNS = 3


def altair() -> Any:
    """altair, imported when a chart is made (the CLI starts without it)."""
    import altair as alt

    alt.data_transformers.disable_max_rows()
    return alt


def strategy_colours(strategies: list[str]) -> Any:
    """The strategies' colour scale: fp32 grey, each built-in strategy its own colour
    whatever else the chart shows (a strategy of a plugin takes one of the others)."""
    alt = altair()
    shown = sorted(set(strategies), key=lambda s: (s != "fp32", s))
    unknown = [s for s in shown if s != "fp32" and s not in STRATEGY_COLOURS]
    colours = [
        REFERENCE_COLOUR if s == "fp32"
        else STRATEGY_COLOURS.get(s) or OTHER_COLOURS[unknown.index(s) % len(OTHER_COLOURS)]
        for s in shown
    ]  # fmt: skip
    return alt.Scale(domain=shown, range=colours)


def with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with a `label` column naming each job's row: `model/variant tN`."""
    labelled = frame.copy()
    labelled["label"] = (
        frame["model"] + "/" + frame["variant"] + " t" + frame["threads"].astype(str)
    )
    return labelled


def rows_by_device(chart: Any, params: list[Any], labels: pd.DataFrame | None = None) -> Any:
    """A chart of one row per job label, a panel per device, as wide as two panels (and
    as tall as its longest device's list when `labels` gives the rows)."""
    sized = chart.properties(width=WIDTH_PX * 2)
    if labels is not None:
        longest = int(labels.groupby("device")["label"].nunique().max())
        sized = sized.properties(height=max(18 * longest, 60))
    return sized.facet(row=altair().Row("device:N", title=None)).add_params(*params)


def speedup_axis(speedups: Any) -> Any:
    """A log axis of speedups with its ticks named where the winners are too (Vega's log
    ticks skip most values between 1 and 10): 0.5×, 1×, 1.5×, 2× ... over the range."""
    values = [float(v) for v in speedups if v is not None and v == v and v > 0]
    low, high = (min(values), max(values)) if values else (1.0, 1.0)
    ticks = [t for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 4, 6, 8, 12, 16)
             if low / 1.3 <= t <= high * 1.3]  # fmt: skip
    return altair().Axis(values=ticks or [1], format="~g", labelExpr="datum.label + '×'")


def titled(chart: Any, title: str, subtitle: str = "") -> Any:
    alt = altair()
    return chart.properties(title=alt.Title(title, subtitle=subtitle) if subtitle else title)


def filter_params(frame: pd.DataFrame, names: tuple[str, ...] = FILTERS) -> list[Any]:
    """The page's filters as the chart's signals (`<name>_filter`; null shows everything),
    set by the report's filter bar on every chart at once (report/page.py)."""
    alt = altair()
    return [alt.param(name=f"{name}_filter", value=None) for name in names if name in frame]


def filtered(chart: Any, params: list[Any]) -> Any:
    """The chart showing only the rows the page's filters let through (on the layer, so
    its marks share one filtered copy of the data)."""
    for param in params:
        field = param.name.removesuffix("_filter")
        chart = chart.transform_filter(f"{param.name} == null || datum['{field}'] == {param.name}")
    return chart


def chart_records(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
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
    alt = altair()
    shown = comparison[comparison["speedup"].notna()]
    if shown.empty:
        return None
    data = chart_records(
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
    axis = speedup_axis([*shown["speedup_low"], *shown["speedup_high"]])
    y = alt.Y("speedup:Q", title="speedup vs fp32 (×, log)", scale=scale, axis=axis)
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
    layered = filtered(alt.layer(one, reference, front, interval, points, data=data), params)
    faceted = (
        layered.properties(width=WIDTH_PX, height=280)
        .facet(facet=alt.Facet("device:N", title=None), columns=PANEL_COLUMNS)
        .add_params(*params)
    )
    return titled(faceted, "Speed against fidelity, per device",
                  "fp32 the cross at (0, 1); 95 % intervals; dashed: the front; ringed: worth "
                  "shipping")  # fmt: skip


def speedup_matrix(comparison: pd.DataFrame) -> Any | None:
    """Model × variant, a panel per device: each variant's own speedup over fp32 with its
    95 % interval, `~` where the difference is within the noise. One cell answers for one
    model: nothing is averaged across models, and every filter (device, model, strategy)
    changes what is shown."""
    alt = altair()
    rows = comparison[(comparison["variant"] != "fp32") & comparison["speedup"].notna()]
    if rows.empty:
        return None
    data = chart_records(
        rows.assign(
            label=[
                f"{s:.2f}×{' ~' if sig is False else ''}\n{lo:.2f}–{hi:.2f}"
                for s, lo, hi, sig in zip(rows["speedup"], rows["speedup_low"],
                                          rows["speedup_high"], rows["significant"], strict=True)
            ]
        ),
        ["device", "model", "variant", "strategy", "setting", "speedup", "speedup_low",
         "speedup_high", "significant", "method", "label"],
    )  # fmt: skip
    params = filter_params(rows)
    base = filtered(alt.Chart(), params).encode(
        x=alt.X("variant:N", title=None, axis=alt.Axis(labelAngle=-30, orient="top")),
        y=alt.Y("model:N", title=None),
    )
    # symmetric around 1 in log space: 0.5x is as red as 2x is blue
    reach = max(max(float(s), 1 / float(s)) for s in rows["speedup"]) * 1.05
    legend_values = [v for v in (0.25, 0.5, 0.71, 1.0, 1.41, 2.0, 4.0) if 1 / reach <= v <= reach]
    colour = alt.Color(
        "speedup:Q",
        title="speedup vs fp32 (×)",
        scale=alt.Scale(type="log", scheme="redblue", domain=[1 / reach, reach], domainMid=1),
        legend=alt.Legend(values=legend_values, format=".2~f"),
    )
    tiles = base.mark_rect().encode(
        color=colour,
        tooltip=[
            "device:N", "model:N", "variant:N", "strategy:N", "setting:N",
            alt.Tooltip("speedup:Q", format=".3f", title="speedup ×"),
            alt.Tooltip("speedup_low:Q", format=".3f", title="95% CI low"),
            alt.Tooltip("speedup_high:Q", format=".3f", title="95% CI high"),
            "significant:N", "method:N",
        ],
    )  # fmt: skip
    dark = f"datum.speedup < {0.6:g} || datum.speedup > {1 / 0.6:.3g}"  # a deep red or blue
    labels = base.mark_text(fontSize=11, lineBreak="\n").encode(
        text="label:N", color=alt.condition(dark, alt.value("white"), alt.value("black"))
    )
    width = 78 * int(rows["variant"].nunique())
    height = 34 * int(rows["model"].nunique())
    return (
        alt.layer(tiles, labels, data=data)
        .properties(width=width, height=height)
        .facet(facet=alt.Facet("device:N", title=None), columns=PANEL_COLUMNS)
        .add_params(*params)
        .properties(
            title=alt.Title(
                "Speedup over fp32, per model and variant",
                subtitle="95 % interval below; ~ within noise; blue faster, red slower",
            )
        )
    )


def size_vs_speedup(comparison: pd.DataFrame) -> Any | None:
    """Model size against speedup, both relative to fp32 (fp32 itself at 1, 1)."""
    alt = altair()
    shown = comparison[comparison["speedup"].notna() & comparison["size_ratio"].notna()]
    shown = shown[shown["variant"] != "fp32"]
    if shown.empty:
        return None
    data = chart_records(shown, ["device", "model", "variant", "strategy", "setting", "speedup",
                            "size_ratio"])  # fmt: skip
    params = filter_params(shown)
    points = alt.Chart().mark_point(filled=True, size=80).encode(
        x=alt.X("size_ratio:Q", title="size vs fp32"),
        y=alt.Y("speedup:Q", title="speedup vs fp32 (×, log)", scale=alt.Scale(type="log"),
                axis=speedup_axis(shown["speedup"])),
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
    faceted = (
        filtered(alt.layer(reference, points, data=data), params)
        .properties(width=WIDTH_PX, height=250)
        .facet(facet=alt.Facet("device:N", title=None), columns=PANEL_COLUMNS)
        .add_params(*params)
    )
    return titled(faceted, "Model size against speedup, per device", "fp32 the cross at (1, 1)")


def spec(chart: Any) -> dict[str, Any]:
    """The chart's Vega-Lite JSON (data inlined)."""
    document: dict[str, Any] = chart.to_dict()
    return document


def save(chart: Any, folder: Path, name: str) -> Path:
    """PNG and SVG side by side (vl-convert, no browser); returns the PNG."""
    return save_all({name: spec(chart)}, folder)[name]


def save_all(specs: dict[str, dict[str, Any]], folder: Path) -> dict[str, Path]:
    """Each spec drawn once, as SVG, and the PNG rasterised from that SVG (not drawn
    again), the charts side by side in threads (vl-convert works outside the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    import vl_convert as vlc

    folder.mkdir(parents=True, exist_ok=True)

    def one(name: str) -> Path:
        svg = vlc.vegalite_to_svg(specs[name])
        (folder / f"{name}.svg").write_text(svg)
        png = folder / f"{name}.png"
        png.write_bytes(vlc.svg_to_png(svg, scale=2))
        return png

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(zip(specs, pool.map(one, specs), strict=True))
