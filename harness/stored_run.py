"""A stored run read once (`RunStore.load`): its metadata, job records and the frames built
from them. The CLI loads it and hands it to the gate, the report and the printers, which
never open the run folder themselves. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.job_key import JobKey
from harness.profiles import placement
from harness.records import JobRecord

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Run:
    run_id: str
    run_dir: Path
    meta: dict[str, Any]  # run.json ({} for a run whose run.json is gone)
    records: tuple[JobRecord, ...]  # in job order
    results: pd.DataFrame  # results.parquet's rows (solo jobs)
    samples: pd.DataFrame
    comparisons: pd.DataFrame  # paired jobs
    power: pd.DataFrame

    @property
    def finished(self) -> bool:
        return bool(self.meta.get("finished_at"))

    @property
    def profiled(self) -> list[JobRecord]:
        """The profile jobs' records, whatever their status."""
        return [r for r in self.records if r.kind == "profile"]

    def placements(self) -> dict[JobKey, dict[str, Any]]:
        """Each profiled job's placement (nodes and time per provider, the CPU fallback)."""
        return {JobKey.of(r): placement(r) for r in self.profiled if r.status == "ok"}
