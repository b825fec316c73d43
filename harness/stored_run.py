"""A stored run read once (`RunStore.load`): its metadata, job records and the frames built
from them. The CLI loads it and hands it to the gate, the report and the printers, which
never open the run folder themselves. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from harness.job_key import JobKey
from harness.profiles import Placement, placement
from harness.records import JobRecord
from harness.runner.contract import JsonObject

if TYPE_CHECKING:
    import pandas as pd


class RunMeta(TypedDict, total=False):
    """run.json (`harness.run/2`), written by store.RunStore alone."""

    schema: str
    run_id: str
    started_at: str
    plan: JsonObject  # the plan as loaded (config.Plan)
    devices: dict[str, JsonObject]  # each device in its sections, secrets redacted
    models: dict[str, JsonObject]  # each manifest as loaded
    jobs: list[str]  # every job id of the run (a shard's own)
    shard: str | None  # "I/N"
    controller: dict[str, str | None]  # versions and the git commit
    resumed_at: list[str]
    finished_at: str | None
    status_counts: dict[str, int]
    merged_from: dict[str, str | None]  # run id -> its shard
    queue: dict[str, str]  # a submitted run's: priority, submitted_from (the site)


@dataclass(frozen=True)
class Run:
    run_id: str
    run_dir: Path
    meta: RunMeta  # run.json ({} for a run whose run.json is gone)
    records: tuple[JobRecord, ...]  # in job order
    results: pd.DataFrame  # results.parquet's rows (solo jobs)
    samples: pd.DataFrame
    comparisons: pd.DataFrame  # paired jobs
    power: pd.DataFrame

    @property
    def finished(self) -> bool:
        return bool(self.meta.get("finished_at"))

    @property
    def quality_tolerances(self) -> dict[str, float]:
        """The plan's [quality] table as the run stored it (harness/fidelity.py's keys)."""
        plan = self.meta.get("plan") or {}
        table = plan.get("quality") if isinstance(plan, dict) else None
        return {str(k): float(v) for k, v in (table or {}).items()}

    @property
    def profiled(self) -> list[JobRecord]:
        """The profile jobs' records, whatever their status."""
        return [r for r in self.records if r.kind == "profile"]

    def placements(self) -> dict[JobKey, Placement]:
        """Each profiled job's placement (nodes and time per provider, the CPU fallback)."""
        return {JobKey.of(r): placement(r) for r in self.profiled if r.status == "ok"}
