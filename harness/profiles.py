"""Per-layer profiles read back (profile jobs' records, harness/runner/op_profile.py): the
rows of `profile.parquet`, where each job's time went by op type and execution provider,
and the difference between a variant's profile and fp32's. Pure.

Node names rarely survive quantization or pruning (a Conv becomes a QLinearConv, or a
DequantizeLinear → Conv → QuantizeLinear chain with new names), so the diff is by op type;
the layers that got slower are by node name, only for the names found in both.

`profile.parquet` schema version 1.
"""

from __future__ import annotations

from typing import TypedDict

from harness.frames import Row
from harness.job_key import JobKey
from harness.records import JobRecord
from harness.runner.result_document import ResultDocument
from harness.runner.result_views import Profile

PROFILE_SCHEMA_VERSION = 1
CPU_PROVIDERS = ("CPUExecutionProvider", "xnnpack", "builtin")
PROFILE_COLUMN_TYPES = {
    "run_id": "string", "job_id": "string", "device": "string", "model": "string",
    "variant": "string", "runtime": "string", "provider": "string", "threads": "int64",
    "node": "string", "op_type": "string",
    "node_provider": "string",  # where the node ran (the execution provider / delegate)
    "calls": "float64",  # per run
    "mean_us": "float64",  # per call
    "us_per_run": "float64", "share": "float64",  # of the profiled nodes' time per run
    "schema_version": "int64",
}  # fmt: skip


def profile_rows(record: JobRecord) -> list[Row]:
    """One row per kept node of a profile job (the rest summed in one row)."""
    profile = ResultDocument(record.runner).profile
    nodes = profile.nodes if profile is not None else []
    total = sum(float(n["us"]) for n in nodes) or None
    return [
        {
            "run_id": record.run_id,
            "job_id": record.job_id,
            "device": record.device,
            "model": record.model,
            "variant": record.variant,
            "runtime": record.runtime,
            "provider": record.provider,
            "threads": record.threads,
            "node": n["node"],
            "op_type": n["op_type"],
            "node_provider": n["provider"],
            "calls": n["calls"],
            "mean_us": float(n["us"]) / n["calls"] if n["calls"] else None,
            "us_per_run": float(n["us"]),
            "share": float(n["us"]) / total if total else None,
            "schema_version": PROFILE_SCHEMA_VERSION,
        }  # fmt: skip
        for n in nodes
    ]


class ProviderPlacement(TypedDict):
    nodes: int
    share: float | None  # of the profiled time


class Placement(TypedDict):
    providers: dict[str, ProviderPlacement]
    cpu_fallback_share: float | None


def placement(record: JobRecord) -> Placement:
    """Nodes and share of time per execution provider, and the CPU fallback: the share of
    time on the CPU when the job asked for another provider (None when it asked for the CPU
    or nothing was timed)."""
    profile = ResultDocument(record.runner).profile
    providers = profile.providers if profile is not None else {}
    total = sum(float(p["us"]) for p in providers.values())
    shares: dict[str, ProviderPlacement] = {
        name: {"nodes": int(p["nodes"]), "share": float(p["us"]) / total if total else None}
        for name, p in providers.items()
    }
    fallback = None
    if total and record.provider not in CPU_PROVIDERS:
        fallback = sum(float(p["us"]) for n, p in providers.items() if n in CPU_PROVIDERS) / total
    return {"providers": shares, "cpu_fallback_share": fallback}


def op_type_diff(reference: Profile, variant: Profile) -> list[Row]:
    """Time by op type, fp32 (`reference`) against the variant, per run, in ms, with each
    op type's share of the whole change (what it explains of the speedup). Ordered by the
    size of the change."""
    before = {k: v / 1000 for k, v in reference.op_types.items()}
    after = {k: v / 1000 for k, v in variant.op_types.items()}
    change = sum(after.values()) - sum(before.values())
    rows = []
    for op_type in set(before) | set(after):
        delta = after.get(op_type, 0.0) - before.get(op_type, 0.0)
        rows.append(
            {"op_type": op_type, "before_ms": before.get(op_type, 0.0),
             "after_ms": after.get(op_type, 0.0), "delta_ms": delta,
             "share_of_change": delta / change if change else None}
        )  # fmt: skip
    return sorted(rows, key=lambda row: -abs(row["delta_ms"]))


def slower_layers(reference: Profile, variant: Profile) -> list[Row]:
    """Nodes found by name in both profiles' kept nodes whose time per run grew."""
    theirs = {n["node"]: float(n["us"]) for n in reference.nodes}
    grown = [
        {"node": n["node"], "op_type": n["op_type"], "before_us": theirs[n["node"]],
         "after_us": float(n["us"])}
        for n in variant.nodes
        if n["node"] in theirs and float(n["us"]) > theirs[n["node"]]
    ]  # fmt: skip
    return sorted(grown, key=lambda row: row["before_us"] - row["after_us"])


def with_fp32(records: list[JobRecord]) -> list[tuple[JobRecord, JobRecord | None]]:
    """Each profile job's record beside fp32's profile job on the same device and setting
    (None for fp32 itself, or where fp32 was not profiled)."""
    by_key = {JobKey.of(r): r for r in records}
    pairs = []
    for record in records:
        reference = by_key.get(JobKey.of(record).with_variant("fp32"))
        pairs.append((record, reference if reference is not record else None))
    return pairs


def op_type_rows(records: list[JobRecord]) -> list[Row]:
    """Time by op type per run of every timed profile (ms): the report's stacked bars."""
    rows = []
    for record in records:
        if record.kind != "profile" or record.status != "ok":
            continue
        profile = ResultDocument(record.runner).profile
        for op_type, us in (profile.op_types if profile is not None else {}).items():
            rows.append(
                {"device": record.device, "model": record.model, "variant": record.variant,
                 "provider": record.provider, "threads": record.threads,
                 "op_type": op_type, "ms_per_run": float(us) / 1000}
            )  # fmt: skip
    return rows


def profile_diffs(records: list[JobRecord], top: int = 4) -> list[dict[str, str]]:
    """Per profiled variant, its largest op-type changes against fp32's profile on the same
    device and setting, as text: the report's diff table."""
    profiles: dict[JobKey, Profile] = {}
    for record in records:
        profile = ResultDocument(record.runner).profile
        if record.kind == "profile" and record.status == "ok" and profile is not None:
            profiles[JobKey.of(record)] = profile
    lines = []
    for key, profile in profiles.items():
        fp32 = profiles.get(key.with_variant("fp32"))
        if key.variant == "fp32" or fp32 is None or not profile.timed:
            continue
        changes = ", ".join(
            f"{c['op_type']} {c['before_ms']:.3f} → {c['after_ms']:.3f} ms"
            for c in op_type_diff(fp32, profile)[:top]
        )
        setting = f"{key.provider} t{key.threads}"
        lines.append(
            {"device": key.device, "model": key.model, "variant": key.variant,
             "setting": setting, "changes": changes}
        )  # fmt: skip
    return lines
