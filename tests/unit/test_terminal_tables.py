"""Terminal tables within 120 columns (harness/cli/fit.py): prose wraps, the least needed
columns go first and are named, nothing is cut."""

from __future__ import annotations

import io

from rich.console import Console

from harness.cli.fit import PIPED_WIDTH, Column, print_fitted


def _printed(
    columns: list[Column], rows: list[list[str]], **options: object
) -> tuple[str, list[str]]:
    out = io.StringIO()
    console = Console(file=out, width=PIPED_WIDTH, force_terminal=False, color_system=None)
    dropped = print_fitted(console, columns, rows, **options)  # type: ignore[arg-type]
    return out.getvalue(), dropped


def test_a_wide_table_drops_the_named_columns_first_and_says_so() -> None:
    columns = [Column("variant"), Column("device")]
    columns += [Column(f"metric_{i}_ms", numeric=True) for i in range(12)]
    rows = [["int8-static", "jetson-orin-nano-01"] + [f"{1000 + i:.3f}" for i in range(12)]]
    text, dropped = _printed(columns, rows, drop_first=["metric_11_ms", "metric_10_ms",
                                                        "metric_9_ms", "metric_8_ms"])  # fmt: skip
    # the named ones first, then from the right until it fits
    assert dropped[:4] == ["metric_11_ms", "metric_10_ms", "metric_9_ms", "metric_8_ms"]
    assert len(dropped) > 4 and "metric_0_ms" in text
    assert max(len(line) for line in text.splitlines()) <= PIPED_WIDTH
    assert "…" not in text and "1000.000" in text and "jetson-orin-nano-01" in text
    assert f"not shown at {PIPED_WIDTH} columns: {', '.join(dropped)}" in " ".join(text.split())


def test_prose_wraps_instead_of_widening_and_a_narrow_table_keeps_everything() -> None:
    reason = "slower beyond the 3% threshold and outside the device's noise floor " * 3
    columns = [Column("model"), Column("verdict"), Column("why", prose=True)]
    text, dropped = _printed(columns, [["digits_cnn", "slower", reason.strip()]])
    assert dropped == [] and max(len(line) for line in text.splitlines()) <= PIPED_WIDTH
    assert "noise floor" in text and "…" not in text
