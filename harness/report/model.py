"""What a report says, computed once from a loaded run (report/document.py) and rendered
twice: as `report.html` (report/page.py) and as `summary.md` (report/summary.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.gate import GateVerdict
    from harness.stored_run import RunMeta

# a device's display rows: column key -> the cell's text
DisplayRow = dict[str, str]


@dataclass(frozen=True)
class ReportModel:
    run_id: str
    meta: RunMeta
    tables: dict[str, list[DisplayRow]]  # per device: model x variant x setting
    columns: list[tuple[str, str]]  # (key, title) of the tables' columns
    shipping: dict[str, list[str]]  # per device, the variants worth shipping
    notes: list[tuple[str, str]]  # (where, warning)
    verdict: GateVerdict | None = None
    filters: dict[str, list[str]] = field(default_factory=dict)  # key -> values to pick
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)  # Vega-Lite specs
    chart_files: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> format -> file
    profile_diffs: list[DisplayRow] = field(default_factory=list)
