"""Command lines for the native tools, and their reports as the runner's result document.
Pure: a job in, an argv out; a parsed report in, a `harness.result/1` document out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from harness.errors import ConfigError
from harness.native.parsers import (
    ToolReport,
    parse_benchmark_model,
    parse_perf_test,
)
from harness.native.trtexec import parse_trtexec
from harness.runner.contract import RESULT_SCHEMA, MemoryCheckpoints, ProfileDoc, ResultDoc

PYTHON_RUNNER = "runner"
TRTEXEC_PROVIDERS = ("trtexec", "trtexec:fp16", "trtexec:int8")

# onnxruntime execution provider -> onnxruntime_perf_test's `-e` name
PERF_TEST_EPS = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "tensorrt",
    "NnapiExecutionProvider": "nnapi",
    "XnnpackExecutionProvider": "xnnpack",
    "QNNExecutionProvider": "qnn",
    "CoreMLExecutionProvider": "coreml",
    "OpenVINOExecutionProvider": "openvino",
    "DnnlExecutionProvider": "dnnl",
    "ACLExecutionProvider": "acl",
    "ArmNNExecutionProvider": "armnn",
}
# plan delegate -> benchmark_model flags
BENCHMARK_MODEL_DELEGATES = {
    "xnnpack": ["--use_xnnpack=true"],
    "builtin": ["--use_xnnpack=false"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}


def tool_for(runner_kind: str, runtime: str, provider: str, has_trtexec: bool) -> str | None:
    """Which program measures a (runtime, provider) on a device; None: not on this device."""
    if provider in TRTEXEC_PROVIDERS:
        return "trtexec" if has_trtexec and runtime == "onnxruntime" else None
    if runner_kind == "python":
        return PYTHON_RUNNER
    return "benchmark_model" if runtime == "tflite" else "onnxruntime_perf_test"


def cpu_list(cores: str) -> list[int]:
    """`"4-7"` or `"0,2,4-5"` -> [4, 5, 6, 7] or [0, 2, 4, 5]."""
    listed: set[int] = set()
    for part in cores.split(","):
        low, _, high = part.partition("-")
        listed.update(range(int(low), int(high or low) + 1))
    return sorted(listed)


def cpu_mask(cores: str) -> str:
    """`"4-7"` or `"0,2,4-5"` -> the hex mask `taskset` takes on Linux and Android's toybox."""
    return format(sum(1 << core for core in cpu_list(cores)), "x")


def native_command(
    tool: str,
    *,
    binary: str,
    model_path: str,
    provider: str,
    threads: int,
    warmup: int,
    stop: dict[str, Any],
    times_path: str | None = None,
    cores: str | None = None,
    profile: bool = False,
    profile_path: str | None = None,
) -> list[str]:
    """The argv that runs `tool` for one job (a fixed count of timed runs: `iterations`, or
    the adaptive rule's minimum with its time budget); with `profile`, the tool's own
    per-layer profiler on (onnxruntime_perf_test writes its trace at `profile_path`_*.json)."""
    runs = int(stop.get("iterations") or stop["min_iterations"])
    max_seconds = stop.get("max_seconds")
    if tool == "benchmark_model":
        argv = [binary, f"--graph={model_path}", f"--num_threads={threads}"]
        argv += [f"--warmup_runs={warmup}", "--warmup_min_secs=0", f"--num_runs={runs}"]
        argv += ["--min_secs=0"] if max_seconds is None else [f"--max_secs={max_seconds:g}"]
        if provider.startswith("delegate:"):
            argv.append(f"--external_delegate_path={provider.removeprefix('delegate:')}")
        else:
            argv += BENCHMARK_MODEL_DELEGATES[provider]
        argv += ["--enable_op_profiling=true"] if profile else []
    elif tool == "onnxruntime_perf_test":
        argv = [binary, "-e", PERF_TEST_EPS[provider], "-x", str(threads)]
        argv += ["-p", profile_path] if profile and profile_path else []
        argv += ["-m", "times", "-r", str(runs), "-s", "-I", model_path]
    elif tool == "trtexec":
        argv = [binary, f"--onnx={model_path}", f"--iterations={runs}", "--duration=0"]
        precision = provider.partition(":")[2]
        if precision:
            argv.append(f"--{precision}")
        if times_path:
            argv.append(f"--exportTimes={times_path}")
        if profile:
            argv.append("--dumpProfile")
    else:
        raise ValueError(f"unknown native tool {tool!r}")
    return ["taskset", cpu_mask(cores), *argv] if cores else argv


def check_provider(tool: str, provider: str, where: object) -> None:
    """A provider the tool cannot be told to use is a plan error, found before any job."""
    if tool == "onnxruntime_perf_test" and provider not in PERF_TEST_EPS:
        raise ConfigError(
            where,
            f"onnxruntime_perf_test has no `-e` for '{provider}'; known: {sorted(PERF_TEST_EPS)}",
            "runtime.onnx_providers",
        )
    if tool == "benchmark_model" and not (
        provider in BENCHMARK_MODEL_DELEGATES or provider.startswith("delegate:")
    ):
        raise ConfigError(where, f"benchmark_model has no flag for '{provider}'", "runtime")


# Makes the status file's folder (the job's, where trtexec writes its times too), runs the
# tool (the arguments after the status file) in the background and copies its
# /proc/<pid>/status to that file every 0.1 s for 3 s, then every 0.5 s, until it exits;
# exits with its status. VmHWM there is the kernel's peak of the tool's resident set, so
# the last copy holds the peak of all but its last moments: the memory of a tool that
# prints none (recent benchmark_model prints only a delta from its start, trtexec nothing).
WATCH_MEMORY = (
    # its folder made here (no round trip of its own), no copy left from an earlier process
    's=$1; shift; mkdir -p "${s%/*}"; rm -f "$s"; "$@" & p=$!; i=0; '
    'while kill -0 "$p" 2>/dev/null; do '
    'cat "/proc/$p/status" > "$s.part" 2>/dev/null && grep -q "^VmHWM" "$s.part" '
    '&& mv -f "$s.part" "$s"; '  # an exiting process's status has no Vm lines: kept the last
    'if [ "$i" -lt 30 ]; then i=$((i+1)); sleep 0.1; else sleep 0.5; fi; done; '
    'wait "$p"'
)


def watched_for_memory(argv: Sequence[str], status_path: str) -> list[str]:
    return ["sh", "-c", WATCH_MEMORY, "harness-watch", status_path, *argv]


def with_process_memory(report: ToolReport, status: dict[str, int]) -> ToolReport:
    """The tool's own peak memory where it printed one, else its process's VmHWM."""
    if report.peak_memory_mb is not None or "VmHWM" not in status:
        return report
    extra = {**report.extra, "peak_memory_from": "/proc/<pid>/status VmHWM"}
    return replace(report, peak_memory_mb=status["VmHWM"] / 1024, extra=extra)


def parse_tool_output(tool: str, text: str, times_json: str | None = None) -> ToolReport:
    if tool == "benchmark_model":
        return parse_benchmark_model(text)
    if tool == "onnxruntime_perf_test":
        return parse_perf_test(text)
    return parse_trtexec(text, times_json)


def result_document(
    job_id: str, runtime: str, report: ToolReport, argv: Sequence[str]
) -> ResultDoc:
    """The tool's report in the runner's schema, so records, tables and reports need no
    second code path: raw samples (if any) as `latencies_ns`, else `reported_stats`."""

    memory: MemoryCheckpoints = {}
    if report.peak_memory_mb is not None:
        memory["after_run"] = {"hwm_kb": report.peak_memory_mb * 1024}
    if report.model_memory_mb is not None:
        memory["model_kb"] = report.model_memory_mb * 1024
    return {
        "schema": RESULT_SCHEMA,
        "status": "ok",
        "job_id": job_id,
        "runtime": {"name": runtime, "version": report.version, "tool": report.tool},
        "load_ms": report.load_ms,
        "first_ms": report.first_ms,
        "latencies_ns": list(report.latencies_ns),
        "reported_stats": report.stats(),
        "memory_kb": memory,
        "stop_reason": "tool",
        "tool": {"name": report.tool, "argv": list(argv), "extra": report.extra},
    }


def profile_document(
    job_id: str, runtime: str, tool: str, profile: ProfileDoc, argv: Sequence[str]
) -> ResultDoc:
    """A profile job's result: the tool's per-layer profile and no latencies (profiling
    perturbs timing; the figures stay the solo job's), as the Python runner's."""
    return {
        "schema": RESULT_SCHEMA,
        "status": "ok",
        "job_id": job_id,
        "runtime": {"name": runtime, "version": None, "tool": tool},
        "latencies_ns": [],
        "stop_reason": "profiled",
        "profile": profile,
        "tool": {"name": tool, "argv": list(argv)},
    }
