"""Per-layer profiles printed by the native tools, read into the shape the Python runner's
profiles have (harness/runner/op_profile.py: nodes, op_types, providers, per run), so
profile.parquet, placement, the diff and the gate need no second code path. Pure.

- `benchmark_model --enable_op_profiling=true`: the "Run Order" table of the regular runs
  and their "Summary by node type"
  (TFLite 2.x: after "Operator-wise Profiling Info for Regular Benchmark Runs:", with or
  without a `[start]` column; LiteRT: after its results block, with no such header), tab-
  or space-aligned, with log prefixes. `[avg ms]` is per call and `[times called]` per
  run. A delegate's partition (`TfLiteNnapiDelegate`, `TfLiteGpuDelegateV2`, ...) is one
  node placed on that delegate; XNNPACK's own operators (`Delegate/<op>:<n>`) are on
  xnnpack; the rest ran on TFLite's built-in CPU kernels ("builtin").
- `trtexec --dumpProfile`: its "=== Profile (N iterations ) ===" table. TensorRT names
  fused layers, not op types: a layer's op type is read from the name of its first fused
  ONNX node (`Conv_4 + PWN(Clip_7)` → Conv, `/model.0/conv/Conv` → Conv, `node_conv2d_1`
  → conv2d); reformatting copies are "Reformat", Myelin's own kernels "Myelin".
- `onnxruntime_perf_test -p`: onnxruntime's own profiler trace, read by the runner's
  function (`summarize_ort_trace`).
"""

from __future__ import annotations

import re
from typing import Any

from harness.errors import ParseError
from harness.runner.contract import ProfileDoc
from harness.runner.op_profile import summarize_nodes

_PREFIX = re.compile(
    r"^(?:\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+(?:\d+\s+\d+\s+)?)?"  # logcat's time [pid tid]
    r"(?:[IWEVD]/tflite\s*\(\s*\d+\):\s?|[IWEVD] tflite\s*:\s?)?"  # logcat brief / tag
    r"(?:(?:INFO|VERBOSE|WARNING|ERROR): (?:\[[^\]]+\] ?)?)?"
)
_TRT_PREFIX = re.compile(r"^(?:\[[^\]]*\] )*(?:\[[IWEV]\])? ?")
_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?%?"
DELEGATE_PROVIDERS = {
    "TfLiteNnapiDelegate": "nnapi",
    "TfLiteGpuDelegate": "gpu",
    "TfLiteGpuDelegateV2": "gpu",
    "TfLiteXNNPackDelegate": "xnnpack",
    "TfLiteHexagonDelegate": "hexagon",
    "DELEGATE": "delegate",
}


def _table_rows(header: str, lines: list[str], tool: str) -> list[dict[str, str]]:
    """Rows of a `[node type] ... [Name]` table (or `[Node type] ...` with no name column):
    the type (may hold spaces), as many numbers as the header has columns after it, then
    the name (may hold spaces)."""
    columns = re.findall(r"\[([^\]]+)\]", header)
    named = columns[-1] == "Name"
    numeric = columns[1:-1] if named else columns[1:]
    name = r"\s+(?P<name>\S.*?)" if named else ""
    numbers = rf"{_NUMBER}(?:\s+{_NUMBER}){{{len(numeric) - 1}}}"
    row = re.compile(rf"^\s*(?P<type>\S.*?)\s+(?P<nums>{numbers}){name}\s*$")
    rows = []
    for line in lines:
        if not line.strip():
            break
        match = row.match(line)
        if not match:
            raise ParseError(f"{tool}: cannot read the profile row {line.strip()!r}")
        values = dict(zip(numeric, match["nums"].split(), strict=True))
        rows.append({"type": match["type"], "name": match["name"] if named else "", **values})
    return rows


def _placed(node_type: str, name: str) -> str:
    if node_type in DELEGATE_PROVIDERS:
        return DELEGATE_PROVIDERS[node_type]
    if "Delegate" in node_type:
        return node_type
    if name.startswith("Delegate/"):
        return "xnnpack"  # XNNPACK's per-operator events inside its partition
    if name.startswith("LiteRT::"):
        return "runtime"
    return "builtin"


def parse_benchmark_model_profile(text: str, top_n: int) -> ProfileDoc:
    """The regular runs' "Run Order" table of `benchmark_model --enable_op_profiling`."""
    tool = "benchmark_model"
    lines = [_PREFIX.sub("", raw).rstrip("\n") for raw in text.splitlines()]
    section = "regular"
    table: list[dict[str, str]] | None = None
    by_type: dict[str, float] = {}
    runs: int | None = None
    mean_run_us: float | None = None
    for index, line in enumerate(lines):
        if "Profiling Info for Benchmark Initialization" in line:
            section = "init"
        elif "Profiling Info for Regular Benchmark Runs" in line:
            section = "regular"
        elif section == "regular" and "== Run Order ==" in line and table is None:
            table = _table_rows(lines[index + 1], lines[index + 2 :], tool)
        elif table is not None and "== Summary by node type ==" in line:
            summary = _table_rows(lines[index + 1], lines[index + 2 :], tool)
            by_type = {row["type"]: float(row["avg ms"]) * 1000 for row in summary}
        elif section == "init" and line.startswith("Timings (microseconds):"):
            section = "regular"  # the initialization profile ends at its own Timings line
        elif table is not None and line.startswith("Timings (microseconds):"):
            found = dict(re.findall(r"(\w+)=(\S+)", line))
            runs = int(found["count"]) if "count" in found else None
            mean_run_us = float(found["avg"]) if "avg" in found else None
            break
    if table is None:
        raise ParseError(
            f"{tool}: no operator profile in its output (was --enable_op_profiling=true "
            "passed?); "
            + (f"it ended with {lines[-1].strip()!r}" if lines else "it printed nothing")
        )
    nodes: dict[str, dict[str, Any]] = {}
    per_run = runs or 1
    for row in table:
        calls = float(row["times called"])
        if calls == 0:  # AllocateTensors and the like: not part of a run
            continue
        name = re.sub(r"^\[(.*)\]:\d+$", r"\1", row["name"])
        if name in nodes:
            name = row["name"]
        nodes[name] = {
            "op_type": row["type"],
            "provider": _placed(row["type"], row["name"]),
            "calls": calls * per_run,
            "total_us": float(row["avg ms"]) * 1000 * calls * per_run,
        }
    profile = summarize_nodes(nodes, per_run, top_n, [], "benchmark_model --enable_op_profiling")
    # the tool's own "Summary by node type" (us per run), beside the sums of its nodes
    profile["runs"], profile["mean_run_us"], profile["tool_op_types"] = runs, mean_run_us, by_type
    return profile


def trt_op_type(layer: str) -> str:
    """A TensorRT layer's op type, read from the ONNX name of its first fused node."""
    if layer.startswith("Reformatting CopyNode"):
        return "Reformat"
    if layer.startswith("__my"):
        return "Myelin"
    if layer.endswith(" copy"):
        return "Copy"
    first = layer.split(" || ")[0].split(" + ")[0].strip()
    if first.startswith("PWN("):
        return "PointWise"
    first = re.sub(r"_myl\d+_\d+$", "", first).rstrip("/").rsplit("/", 1)[-1]
    first = re.sub(r"^node_", "", first)
    return re.sub(r"(?:_\d+)+$", "", first) or layer


def parse_trtexec_profile(text: str, top_n: int) -> ProfileDoc:
    """`trtexec --dumpProfile`: per layer, total time over the profiled iterations, its
    average per iteration (and median, in TensorRT 8.6+), and the Total row."""
    tool = "trtexec"
    lines = [_TRT_PREFIX.sub("", raw).rstrip() for raw in text.splitlines()]
    start = next((i for i, ln in enumerate(lines) if re.match(r"=== Profile \(", ln)), None)
    if start is None:
        raise ParseError(
            f"{tool}: no '=== Profile' table in its output (was --dumpProfile passed?)"
        )
    runs = int(re.search(r"\((\d+) iterations", lines[start])[1])  # type: ignore[index]
    header = lines[start + 1].split()
    numeric = len(header) - 1  # Time(ms) Avg.(ms) [Median(ms)] Time(%), then Layer
    row = re.compile(rf"^\s*(?P<nums>(?:{_NUMBER}\s+){{{numeric}}})(?P<layer>\S.*)$")
    nodes: dict[str, dict[str, Any]] = {}
    mean_run_us = None
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        match = row.match(line)
        if not match:
            raise ParseError(f"{tool}: cannot read the profile row {line.strip()!r}")
        values = dict(zip(header[:numeric], map(float, match["nums"].split()), strict=True))
        if match["layer"] == "Total":
            mean_run_us = values["Avg.(ms)"] * 1000
            continue
        nodes[match["layer"]] = {
            "op_type": trt_op_type(match["layer"]),
            "provider": "TensorRT",
            "calls": float(runs),
            "total_us": values["Time(ms)"] * 1000,
        }
    profile = summarize_nodes(nodes, runs, top_n, [], "trtexec --dumpProfile")
    profile["mean_run_us"] = mean_run_us
    return profile
