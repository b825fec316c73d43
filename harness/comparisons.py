"""The `comparisons.parquet` row of a paired job: every process's blocks pooled into one
decision (harness/runner/paired.py's statistic and rule, so the device and the controller
decide alike). Pure.

Schema versions (`COMPARISONS_SCHEMA_VERSION`):
  1 -- first version.
"""

from __future__ import annotations

import json
import statistics

from harness.frames import Row
from harness.records import JobRecord
from harness.runner.paired import CONFIDENCE, block_log_ratios, block_medians, decide
from harness.runner.result_document import ResultDocument

COMPARISONS_SCHEMA_VERSION = 1

COMPARISON_COLUMN_TYPES = {
    "run_id": "string", "job_id": "string", "device": "string", "model": "string",
    "variant": "string", "reference": "string", "runtime": "string", "provider": "string",
    "threads": "int64", "status": "string", "error": "string", "processes": "int64",
    "block_size": "int64", "blocks": "int64",
    # latency of the variant over its reference's, from the blocks (< 1: faster)
    "ratio": "float64", "ratio_ci_low": "float64", "ratio_ci_high": "float64",
    "speedup": "float64", "speedup_ci_low": "float64", "speedup_ci_high": "float64",
    "verdict": "string",  # faster, slower, equivalent, inconclusive
    "equivalence_pct": "float64", "confidence": "float64",
    "stopped": "string",  # per process: decided, budget, max_blocks, behind
    "device_s": "float64",  # the blocks' time, all processes together
    "reference_paired_ms": "float64", "variant_paired_ms": "float64",
    "process_ratios": "string",  # JSON: each process's own ratio
    "schema_version": "int64",
}  # fmt: skip


def comparison_row(record: JobRecord) -> Row:
    """One paired job, its processes pooled: the ratio, its 95 % interval and the verdict."""
    row: Row = dict.fromkeys(COMPARISON_COLUMN_TYPES)
    row.update(
        run_id=record.run_id, job_id=record.job_id, device=record.device, model=record.model,
        variant=record.variant, reference="fp32", runtime=record.runtime,
        provider=record.provider, threads=record.threads, status=record.status,
        error=record.error, confidence=CONFIDENCE,
        schema_version=COMPARISONS_SCHEMA_VERSION,
    )  # fmt: skip
    processes = ResultDocument(record.runner).paired_processes
    if record.status != "ok" or not processes:
        return row
    band = float(processes[0]["band"])
    log_ratios: list[float] = []
    medians: dict[str, list[float]] = {"ref": [], "variant": []}
    process_ratios = []
    for process in processes:
        own = block_log_ratios(process["blocks"])
        log_ratios += own
        process_ratios.append(decide(own, band)["ratio"])
        for tag, median_ns in block_medians(process["blocks"]):
            medians[tag].append(median_ns / 1e6)
    decision = decide(log_ratios, band)
    row.update(
        processes=len(processes),
        block_size=int(processes[0]["block_size"]),
        blocks=decision["blocks"],
        ratio=decision["ratio"],
        ratio_ci_low=decision["ratio_low"],
        ratio_ci_high=decision["ratio_high"],
        verdict=decision["verdict"],
        equivalence_pct=band * 100,
        stopped=",".join(str(p.get("stopped")) for p in processes),
        device_s=sum(float(p.get("elapsed_s") or 0.0) for p in processes),
        reference_paired_ms=statistics.median(medians["ref"]) if medians["ref"] else None,
        variant_paired_ms=statistics.median(medians["variant"]) if medians["variant"] else None,
        process_ratios=json.dumps(process_ratios),
    )
    if decision["ratio"]:
        row["speedup"] = 1 / decision["ratio"]
    if decision["ratio_high"]:
        row["speedup_ci_low"] = 1 / decision["ratio_high"]
    if decision["ratio_low"]:
        row["speedup_ci_high"] = 1 / decision["ratio_low"]
    return row
