"""Per-layer profiles on the device (stdlib only), summarised before they travel: the
runtime's own trace is read here and only the top nodes (plus the rest summed) and the
totals by op type and by execution provider go into the result document, so a 2,000-node
model does not bloat the run directory.

ONNX Runtime: `SessionOptions.enable_profiling` writes a Chrome-trace JSON; each node's
kernel is a "Node" event named `<node>_kernel_time` with its op type and provider, each
run a "model_run" event. LiteRT's Python API exposes no per-op timing (that is
benchmark_model's `--enable_op_profiling`): its profile is the op list by type and how
many partitions each delegate took.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # on the device this module runs without its package
    from .contract import ProfiledNode, ProfileDoc, ProviderShare

KERNEL_SUFFIX = "_kernel_time"
OTHER_NODES = "(other nodes)"


def summarize_ort_trace(path: str, runs: int, top_n: int) -> ProfileDoc:
    """The trace at `path` (then deleted) as per-node, per-op-type and per-provider totals
    in microseconds per run, over the last `runs` runs (the trace also holds the first
    inference and the warmup, which are not what a profile is for)."""
    with open(path) as trace:
        events = json.load(trace)
    os.remove(path)
    windows = sorted(
        (float(e.get("ts", 0)), float(e.get("ts", 0)) + float(e.get("dur", 0)))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )[-runs:]
    nodes: dict[str, dict[str, Any]] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith(KERNEL_SUFFIX):
            continue
        start = float(event.get("ts", 0))
        if not any(low <= start <= high for low, high in windows):
            continue
        args = event.get("args") or {}
        node = nodes.setdefault(
            name[: -len(KERNEL_SUFFIX)],
            {"op_type": str(args.get("op_name", "?")), "provider": str(args.get("provider", "?")),
             "calls": 0, "total_us": 0.0},
        )  # fmt: skip
        node["calls"] += 1
        node["total_us"] += float(event.get("dur", 0))
    run_us = [high - low for low, high in windows]
    return summarize_nodes(nodes, len(windows), top_n, run_us, "onnxruntime profiling")


def summarize_nodes(
    nodes: dict[str, dict[str, Any]],
    runs: int,
    top_n: int,
    run_us: list[float],
    source: str,
) -> ProfileDoc:
    """Nodes {name: {op_type, provider, calls, total_us}} over `runs` runs: the top N by
    time, the rest summed into one row; every op type and provider in full."""
    per_run = max(runs, 1)
    ordered = sorted(nodes.items(), key=lambda item: -item[1]["total_us"])
    kept: list[ProfiledNode] = [
        {"node": name, "op_type": n["op_type"], "provider": n["provider"],
         "calls": n["calls"] / per_run, "us": n["total_us"] / per_run}
        for name, n in ordered[:top_n]
    ]  # fmt: skip
    rest = ordered[top_n:]
    if rest:
        kept.append(
            {"node": "%s (%d)" % (OTHER_NODES, len(rest)), "op_type": OTHER_NODES,
             "provider": "", "calls": sum(n["calls"] for _, n in rest) / per_run,
             "us": sum(n["total_us"] for _, n in rest) / per_run}
        )  # fmt: skip
    op_types: dict[str, float] = {}
    providers: dict[str, ProviderShare] = {}
    for node in nodes.values():
        op_types[node["op_type"]] = op_types.get(node["op_type"], 0.0) + node["total_us"] / per_run
        entry = providers.setdefault(node["provider"], {"nodes": 0, "us": 0.0})
        entry["nodes"] += 1
        entry["us"] += node["total_us"] / per_run
    ordered_runs = sorted(run_us)
    return {
        "source": source,
        "runs": runs,
        "node_count": len(nodes),
        "run_us": ordered_runs[len(ordered_runs) // 2] if ordered_runs else None,  # median
        # the mean, as the nodes' times are (a slow run moves both alike)
        "mean_run_us": sum(run_us) / len(run_us) if run_us else None,
        "nodes": kept,
        "op_types": op_types,
        "providers": providers,
    }


def tflite_ops(details: list[dict[str, Any]]) -> ProfileDoc:
    """LiteRT's op list (`Interpreter._get_ops_details`) by type: DELEGATE entries are the
    partitions a delegate took; per-op time is not available from Python."""
    by_type: dict[str, int] = {}
    for op in details:
        name = str(op.get("op_name", "?"))
        by_type[name] = by_type.get(name, 0) + 1
    return {
        "source": "LiteRT op list",
        "node_count": sum(n for t, n in by_type.items() if t != "DELEGATE"),
        "op_counts": by_type,
        "delegate_partitions": by_type.get("DELEGATE", 0),
        "timing": "not exposed by LiteRT's Python API: per-op time needs benchmark_model "
        "(runner = 'native', --enable_op_profiling)",
    }
