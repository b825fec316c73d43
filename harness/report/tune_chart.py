"""The chart of a tune: each trial's speedup on the device against its quality on the
representative set, the quality budget drawn, the chosen trial marked. Pure: rows in, a
Vega-Lite spec out (harness/tune.py writes it as SVG beside the trials' CSV)."""

from __future__ import annotations

from typing import Any


def trials_chart(rows: list[dict[str, Any]], limit: float | None, measure: str) -> dict[str, Any]:
    import altair as alt
    import pandas as pd

    frame = pd.DataFrame(
        [r for r in rows if r["speedup"] is not None and r["quality_value"] is not None]
    )
    if frame.empty:
        frame = pd.DataFrame(
            {
                "quality_value": [],
                "speedup": [],
                "speedup_low": [],
                "speedup_high": [],
                "quality": [],
                "chosen": [],
                "recipe": [],
                "trial": [],
            }
        )
    points = (
        alt.Chart(frame)
        .mark_point(filled=True, size=80)
        .encode(
            x=alt.X(
                "quality_value:Q",
                title=f"quality: {measure or 'worst output'} vs fp32",
                scale=alt.Scale(zero=False),
            ),
            y=alt.Y(
                "speedup:Q", title="speedup vs fp32 on the device (x)", scale=alt.Scale(zero=False)
            ),
            color=alt.Color("quality:N", title="quality"),
            shape=alt.Shape("chosen:N", title="chosen"),
            tooltip=["trial", "recipe", "speedup", "speedup_low", "speedup_high", "quality_value"],
        )
    )
    bars = (
        alt.Chart(frame)
        .mark_rule()
        .encode(x="quality_value:Q", y="speedup_low:Q", y2="speedup_high:Q")
    )
    layers: list[Any] = [bars, points]
    if limit is not None:
        layers.append(
            alt.Chart(pd.DataFrame({"limit": [limit]})).mark_rule(strokeDash=[4, 4], color="red")
            .encode(x="limit:Q")
        )  # fmt: skip
    one = alt.Chart(pd.DataFrame({"speedup": [1.0]})).mark_rule(color="gray").encode(y="speedup:Q")
    chart = alt.layer(*layers, one).properties(
        title="tune: speedup on the device against quality (dashed: the quality budget)",
        width=480,
        height=320,
    )
    spec: dict[str, Any] = chart.to_dict()
    return spec
