"""The report page as data (harness/report/page.py): warnings grouped by kind, tables
that drop empty columns and align text left and numbers right, the filter bar, and no
network in the page."""

from __future__ import annotations

import dataclasses

from harness.report.model import ReportModel
from harness.report.page import (
    grouped_warnings,
    render_html,
    split_warnings,
    warning_kind,
    warning_summary,
)

COLUMNS = [("model", "model"), ("variant", "variant"), ("p50_ms", "p50 ms"),
           ("energy_mj", "energy mJ/inf"), ("p50_ci", "p50 95% CI")]  # fmt: skip


def test_warnings_split_outside_parentheses_and_group_by_kind() -> None:
    text = "unstable: CV 43.4% > 10.0%; throttled (cpu0; cpu1); processes disagree: 4.2%"
    assert split_warnings(text) == [
        "unstable: CV 43.4% > 10.0%", "throttled (cpu0; cpu1)", "processes disagree: 4.2%",
    ]  # fmt: skip
    assert warning_kind("SLOWER than fp32 on this device (0.80x)") == (
        "SLOWER than fp32 on this device (…)"
    )
    groups = grouped_warnings(
        [("pi: m/int8 t1", "unstable: CV 43% > 10%; processes disagree: 4%"),
         ("pi: m/fp16 t1", "unstable: CV 21% > 10%"), ("pi", "accuracy -1.9 pts")]
    )  # fmt: skip
    assert list(groups) == ["unstable", "processes disagree", "accuracy … pts"]
    assert groups["unstable"] == ["pi: m/int8 t1: unstable: CV 43% > 10%",
                                  "pi: m/fp16 t1: unstable: CV 21% > 10%"]  # fmt: skip


def test_the_page_drops_empty_columns_filters_and_needs_no_network() -> None:
    rows = [
        {"device": "pi", "model": "m", "variant": "fp32", "strategy": "fp32", "p50_ms": "1.000",
         "energy_mj": "", "p50_ci": "0.990–1.010", "row_class": ""},
        {"device": "pi", "model": "m", "variant": "int8", "strategy": "int8-static",
         "p50_ms": "2.000", "energy_mj": "", "p50_ci": "1.980–2.020", "row_class": "slower"},
    ]  # fmt: skip
    model = ReportModel(
        "r1", {"run_id": "r1", "devices": {"pi": {"transport": "ssh"}}}, {"pi": rows}, COLUMNS,
        {"pi": []}, [("pi: m/int8 t1", "unstable: CV 43% > 10%")],
        filters={"device": ["pi"], "model": ["m"], "strategy": ["fp32", "int8-static"]},
    )  # fmt: skip
    page = render_html(model, "/* vega */")
    assert "energy mJ/inf" not in page  # an empty column is dropped
    assert "<th class='text'>model</th>" in page and "<th class='num'>p50 ms</th>" in page
    assert "<td class='num ci'>0.990–1.010</td>" in page
    assert "<tr class='slower' data-device='pi' data-model='m' data-strategy='int8-static'>" in page
    assert "<select id='filter-strategy' data-filter='strategy'>" in page
    assert "<summary>unstable <span class='count'>(1)</span></summary>" in page
    assert "none beats fp32 here" in page and "<td class='text'>pi (ssh)</td>" in page
    assert "http://" not in page and "https://" not in page
    shipping = dataclasses.replace(model, shipping={"pi": ["m/int8 (CPU t1): 1.4x [1.2–1.6]"]})
    # a variant worth shipping is listed under its model: the model filter hides it
    assert "<li data-model='m'>m/int8 (CPU t1): 1.4x [1.2–1.6]</li>" in render_html(shipping, "")


def test_a_strategy_has_one_colour_in_every_chart() -> None:
    """A chart without fp32 (size vs speedup) or with a strategy another lacks gives each
    strategy the colour it has everywhere."""
    from harness.report.charts import REFERENCE_COLOUR, STRATEGY_COLOURS, strategy_colours

    def colours(strategies: list[str]) -> dict[str, str]:
        scale = strategy_colours(strategies)
        return dict(zip(scale.domain, scale.range, strict=True))

    everything = colours(["fp32", "fp16", "int8-static", "low-rank"])
    assert everything["fp32"] == REFERENCE_COLOUR
    assert colours(["int8-static"])["int8-static"] == everything["int8-static"]
    assert colours(["low-rank", "int8-static"]) == {
        "int8-static": STRATEGY_COLOURS["int8-static"], "low-rank": STRATEGY_COLOURS["low-rank"],
    }  # fmt: skip
    assert colours(["my-plugin"])["my-plugin"] not in STRATEGY_COLOURS.values()


def test_a_warning_wall_becomes_a_line_per_kind_with_its_worst_case() -> None:
    """62 warnings of 22 jobs read as three lines: the kind, how many, the worst."""
    notes = [
        (f"pi: m/v{i} CPU t1", f"unstable: CV {10 + i}.0% > 10.0%; CI of median ±{i}.5% wider "
         f"than target ±1.0%; processes disagree: their p50s spread {i}%, wider than the CI "
         f"(2% wide) (between-process noise)")
        for i in range(1, 21)
    ] + [("pi: m/v9 CPU t4", "the device throttled during the job")]  # fmt: skip
    summary = warning_summary(notes)
    assert [(kind, count) for kind, count, _ in summary][:3] == [
        ("unstable", 20), ("CI of median … wider than target …", 20), ("processes disagree", 20)
    ]  # fmt: skip
    assert summary[0][2] == "pi: m/v20 CPU t1: unstable: CV 30.0% > 10.0%"
    assert summary[3] == ("the device throttled during the job", 1,
                          "pi: m/v9 CPU t4: the device throttled during the job")  # fmt: skip
