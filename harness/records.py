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

import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import StoreError
from harness.runner.contract import ResultDocument

if TYPE_CHECKING:
    from harness.config import Device
    from harness.jobs import Job

JOB_RECORD_VERSION = 5


JOB_RECORD_SCHEMA = f"harness.job-record/{JOB_RECORD_VERSION}"


# the columns that identify a job across runs (history, comparisons, the gate)
JOB_KEY = ["device", "model", "variant", "runtime", "provider", "threads"]


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
    runner: dict[str, Any] = field(default_factory=dict)
    latencies_ns: tuple[int, ...] = ()
    controller: dict[str, Any] = field(default_factory=dict)
    eval_metrics: dict[str, Any] = field(default_factory=dict)
    variant_report: dict[str, Any] = field(default_factory=dict)
    variant_params: dict[str, Any] = field(default_factory=dict)
    cores: str | None = None
    kind: str = "solo"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

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
        runner: dict[str, Any] | None = None,
        latencies: tuple[int, ...] = (),
        controller: dict[str, Any] | None = None,
        eval_metrics: dict[str, Any] | None = None,
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
            runner=dict(runner or {}),
            latencies_ns=latencies,
            controller=dict(controller or {}),
            eval_metrics=eval_metrics or {},
            variant_report=job.variant_report,
            variant_params=job.variant_params,
            cores=job.cores,
            kind=job.kind,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latencies_ns"] = list(self.latencies_ns)
        return {"schema": JOB_RECORD_SCHEMA, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "") -> JobRecord:
        schema = str(data.get("schema", ""))
        name, _, version = schema.partition("/")
        if name != "harness.job-record" or not version.isdigit():
            raise StoreError(f"{source}: not a job record (schema {schema!r})")
        if int(version) > JOB_RECORD_VERSION:
            raise StoreError(f"{source}: written by a newer harness ({schema}); upgrade to read it")
        fields = {k: v for k, v in data.items() if k != "schema"}
        fields["latencies_ns"] = tuple(fields.get("latencies_ns", ()))
        return cls(**fields)


def pool_documents(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], tuple[int, ...]]:
    """One job from the result documents of its processes: every latency pooled, the
    first process's document (load, first inference, memory, eval) standing for the job,
    each process summed up under `processes` (a native tool's summaries pooled)."""
    from harness.native.commands import pool_reported

    read = [ResultDocument(doc) for doc in docs]
    first = {k: v for k, v in docs[0].items() if k != "latencies_ns"}
    latencies: list[int] = []
    summaries = []
    for doc in read:
        own = doc.latencies_ns
        latencies += own
        summaries.append(
            {
                "n": len(own),
                "p50_ms": statistics.median(own) / 1e6 if own else doc.reported_stats.get("p50_ms"),
                "load_ms": doc.load_ms,
                "stop_reason": doc.stop_reason,
                "peak_hwm_kb": doc.memory_kb("after_run").get("hwm_kb"),
            }
        )
    if not latencies and read[0].reported_stats:  # a native tool's summaries
        first["reported_stats"] = pool_reported([doc.reported_stats for doc in read])
    if "paired" in first:  # a paired job: every process's blocks and decision
        first["paired_processes"] = [doc.get("paired") for doc in docs]
        del first["paired"]
    first["processes"] = summaries
    return first, tuple(latencies)


def pool_timings(timings: list[dict[str, Any]]) -> dict[str, Any]:
    """The controller's notes on a job's processes: the first's, each one's run time, and
    every throttling reason (any process throttled counts)."""
    pooled = dict(timings[0])
    pooled["run_s_per_process"] = [t.get("run_s") for t in timings]
    recorded = [t["throttle_reasons"] for t in timings if "throttle_reasons" in t]
    if recorded and any(r is not None for r in recorded):
        pooled["throttle_reasons"] = [x for r in recorded for x in (r or [])]
    return pooled
