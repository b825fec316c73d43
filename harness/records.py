"""Immutable job records: what the store keeps for one finished job (its JSON file is the
source of truth), and how a job's processes pool into one.

Format history:
  harness.job-record/1 -- first version.
  harness.job-record/2 -- adds eval_metrics, variant_report, variant_params (version 1
                          records still load: the new fields default to empty).
  harness.job-record/3 -- adds cores (the CPUs the job was pinned to; None: any).
  harness.job-record/4 -- adds the status `no-effect` (a variant that was built and
                          verified to change nothing its strategy claims; never measured).
  harness.job-record/5 -- adds kind: "solo" (one variant per process; the results table),
                          "paired" (a variant beside its fp32 in the same processes;
                          the comparisons table, harness/comparisons.py) or "profile"
                          (per-layer profile in a process of its own; harness/profiles.py).

The `results.parquet` row derived from a record is harness/rows.py's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, TypedDict

from harness.accuracy import EvalMetrics
from harness.errors import StoreError
from harness.job_key import JOB_KINDS, JobKind
from harness.runner.contract import JsonObject, ProcessDoc, ReportedStatsDoc, ResultDoc
from harness.runner.result_document import ResultDocument
from harness.runner.result_views import ReportedStats

if TYPE_CHECKING:
    from harness.config import Device
    from harness.jobs import Job, VariantReport

JOB_RECORD_VERSION = 5


JOB_RECORD_SCHEMA = f"harness.job-record/{JOB_RECORD_VERSION}"


class Cooldown(TypedDict):
    waited_s: float
    hottest_c: float | None
    target_c: float
    reached: bool


class ControllerNotes(TypedDict, total=False):
    """What the controller notes of a job's processes (`JobRecord.controller`): the
    executors fill one per process, the worker adds its retries, the pool sums them."""

    model_pushed: bool  # the model was sent (not on the device by its hash yet)
    push_s: float
    run_s: float  # the runner's (or tool's) process, as the transport timed it
    total_s: float
    run_s_per_process: list[float | None]  # pooled
    total_s_per_process: list[float | None]  # pooled
    runner_fallback: str  # why the Python runner ran exec-per-job here, not persistent
    cooldown: Cooldown  # the wait for the device to cool before the process
    throttle_reasons: list[str] | None  # None: nothing recorded to tell
    reruns_after_throttling: int
    attempts: int  # tries of a process after link faults
    lost: bool  # the device was lost mid-job (quarantined)
    traceback: str  # an internal error's


STATUSES = ("ok", "error", "timeout", "skipped", "interrupted", "no-effect")


# not results of the job (never run, lost with its device, or stopped by Ctrl-C/SIGTERM):
# `--resume` runs these jobs again and a merge prefers any result over them
RESUMABLE_STATUSES = ("skipped", "interrupted")


@dataclass(frozen=True)
class JobRecord:
    run_id: str
    job_id: str
    started_at: str
    finished_at: str
    device: str
    device_class: str
    transport: str
    model: str
    variant: str
    strategy: str
    runtime: str
    provider: str
    threads: int
    status: str
    error: str | None = None
    model_bytes: int | None = None
    model_sha256: str | None = None
    target_ci: float | None = None
    runner: ResultDoc = field(default_factory=lambda: ResultDoc())
    latencies_ns: tuple[int, ...] = ()
    controller: ControllerNotes = field(default_factory=lambda: ControllerNotes())
    eval_metrics: EvalMetrics = field(default_factory=lambda: EvalMetrics())
    variant_report: VariantReport = field(default_factory=dict)
    variant_params: JsonObject = field(default_factory=dict)
    cores: str | None = None
    kind: JobKind = "solo"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")
        if self.kind not in JOB_KINDS:
            raise ValueError(f"kind must be one of {JOB_KINDS}, not {self.kind!r}")

    @classmethod
    def of_job(
        cls,
        job: Job,
        device: Device,
        run_id: str,
        started_at: str,
        finished_at: str,
        status: str,
        model_facts: tuple[str, int] | None,
        *,
        error: str | None = None,
        runner: ResultDoc | None = None,
        latencies: tuple[int, ...] = (),
        controller: ControllerNotes | None = None,
        eval_metrics: EvalMetrics | None = None,
    ) -> JobRecord:
        """The record of `job` on `device`; `model_facts` is the model file's (sha256, size)."""
        sha, size = model_facts if model_facts else (None, None)
        return cls(
            run_id=run_id,
            job_id=job.job_id,
            started_at=started_at,
            finished_at=finished_at,
            device=device.name,
            device_class=device.device_class,
            transport=device.transport,
            model=job.model,
            variant=job.variant,
            strategy=job.strategy,
            runtime=job.runtime,
            provider=job.provider,
            threads=job.threads,
            status=status,
            error=error,
            model_bytes=size,
            model_sha256=sha,
            target_ci=job.target_ci,
            runner=runner.copy() if runner else ResultDoc(),
            latencies_ns=latencies,
            controller=controller.copy() if controller else ControllerNotes(),
            eval_metrics=eval_metrics or {},
            variant_report=job.variant_report,
            variant_params=job.variant_params,
            cores=job.cores,
            kind=job.kind,
        )

    def to_json(self) -> JsonObject:
        data = asdict(self)
        data["latencies_ns"] = list(self.latencies_ns)
        return {"schema": JOB_RECORD_SCHEMA, **data}

    @classmethod
    def from_json(cls, data: JsonObject, source: str = "") -> JobRecord:
        schema = str(data.get("schema", ""))
        name, _, version = schema.partition("/")
        if name != "harness.job-record" or not version.isdigit():
            raise StoreError(f"{source}: not a job record (schema {schema!r})")
        if int(version) > JOB_RECORD_VERSION:
            raise StoreError(f"{source}: written by a newer harness ({schema}); upgrade to read it")
        fields = {k: v for k, v in data.items() if k != "schema"}
        fields["latencies_ns"] = tuple(fields.get("latencies_ns", ()))
        return cls(**fields)


def pool_documents(docs: list[ResultDoc]) -> tuple[ResultDoc, tuple[int, ...]]:
    """One job from the result documents of its processes: every latency pooled, the
    first process's document (load, first inference, memory, eval) standing for the job,
    each process summed up under `processes` (a native tool's summaries pooled)."""
    read = [ResultDocument(doc) for doc in docs]
    pooled = docs[0].copy()
    pooled.pop("latencies_ns", None)
    latencies: list[int] = []
    summaries: list[ProcessDoc] = []
    for doc in read:
        own = doc.latencies_ns
        latencies += own
        reported = doc.reported_stats
        summaries.append(
            {
                "n": len(own),
                "p50_ms": statistics.median(own) / 1e6
                if own
                else reported.p50_ms
                if reported
                else None,
                "load_ms": doc.load_ms,
                "start_ms": doc.start_ms,
                "wall_ms": doc.wall_ms,
                "stop_reason": doc.stop_reason,
                "peak_hwm_kb": doc.memory_kb("after_run").hwm_kb,
            }
        )
    reported_stats = [doc.reported_stats for doc in read]
    if not latencies and reported_stats[0] is not None:  # a native tool's summaries
        pooled["reported_stats"] = pool_reported([s for s in reported_stats if s is not None])
    paired = [doc.paired for doc in read]
    if paired[0] is not None:  # a paired job: every process's blocks and decision
        pooled["paired_processes"] = [p for p in paired if p is not None]
        pooled.pop("paired", None)
    pooled["processes"] = summaries
    return pooled, tuple(latencies)


def pool_reported(stats: Sequence[ReportedStats]) -> ReportedStatsDoc:
    """Several processes' summary statistics as one: counts add, the mean is weighted,
    min/max are the extremes; percentiles and the std cannot be pooled from summaries."""
    if len(stats) == 1:
        one: ReportedStatsDoc = {**asdict(stats[0])}  # type: ignore[typeddict-item]
        return one
    counts = [s.n or 0 for s in stats]
    total = sum(counts)
    means = [s.mean_ms or 0.0 for s in stats]
    mean = (
        sum(c * m for c, m in zip(counts, means, strict=True)) / total
        if total
        else math.fsum(means) / len(stats)
    )
    mins = [s.min_ms for s in stats if s.min_ms is not None]
    maxs = [s.max_ms for s in stats if s.max_ms is not None]
    return {"n": total or None, "mean_ms": mean, "std_ms": None, "min_ms": min(mins, default=None),
            "max_ms": max(maxs, default=None), "p50_ms": None, "p90_ms": None, "p95_ms": None,
            "p99_ms": None}  # fmt: skip


def pool_notes(notes: list[ControllerNotes]) -> ControllerNotes:
    """The controller's notes on a job's processes: the first's, each one's run time, and
    every throttling reason (any process throttled counts)."""
    pooled = notes[0].copy()
    pooled["run_s_per_process"] = [t.get("run_s") for t in notes]
    pooled["total_s_per_process"] = [t.get("total_s") for t in notes]
    recorded = [t["throttle_reasons"] for t in notes if "throttle_reasons" in t]
    if recorded and any(r is not None for r in recorded):
        pooled["throttle_reasons"] = [x for r in recorded for x in (r or [])]
    return pooled


@dataclass(frozen=True)
class FailureLine:
    """Jobs of one device that ended with one status, and the first one's reason."""

    device: str
    status: str
    count: int
    reason: str | None


def failure_summary(records: list[JobRecord]) -> list[FailureLine]:
    """What did not succeed, by status (errors first) and device: a line each."""
    lines = []
    for status in STATUSES[1:]:
        of_status = [r for r in records if r.status == status]
        for device in dict.fromkeys(r.device for r in of_status):
            mine = [r for r in of_status if r.device == device]
            lines.append(FailureLine(device, status, len(mine), mine[0].error))
    return lines
