"""Parsers of the native benchmark binaries' output: TFLite/LiteRT `benchmark_model`,
`onnxruntime_perf_test` (TensorRT's `trtexec` in harness/native/trtexec.py). Pure: text in,
`ToolReport` out.

Each copes with the formats recorded in tests/fixtures/<tool>/ (log prefixes such as
`INFO: ` or `[date] [I] `, scientific notation, profiling tables and other lines in
between). A line that looks like one of the tool's result lines but cannot be read, or
output without the results at all, is a `ParseError` quoting the line(s)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ParseError
from harness.runner.contract import ReportedStatsDoc

US_PER_MS = 1000.0


@dataclass(frozen=True)
class ToolReport:
    """What a native tool says about one run. Latency figures are in milliseconds;
    `latencies_ns` holds raw per-inference samples where the tool gives them."""

    tool: str
    n: int | None
    mean_ms: float
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    load_ms: float | None = None
    first_ms: float | None = None
    warmup_mean_ms: float | None = None
    peak_memory_mb: float | None = None
    model_memory_mb: float | None = None
    version: str | None = None
    latencies_ns: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def stats(self) -> ReportedStatsDoc:
        return {
            "n": self.n,
            "mean_ms": self.mean_ms,
            "std_ms": self.std_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
        }


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# a line's prefix: a log level, or Android logcat's (`-v brief` `I/tflite  ( 5395): `,
# `-v time` with the date before it, `-v threadtime` `07-08 15:33:56.256  5395  5395 I tflite  : `)
_PREFIX = re.compile(
    r"^\s*(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+(?:\d+\s+\d+\s+)?)?"  # date time [pid tid]
    r"(?:(?:INFO|VERBOSE|WARNING|ERROR"
    r"|(?:[VDIWEF][/ ]|\.\.\. )tflite\s*(?:\(\s*\d+\s*\))?)\s*:\s*)?"  # level/tag (pid):
)


def _float(text: str, line: str, tool: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParseError(f"{tool}: cannot read the number {text!r} in line {line!r}") from None


def _no_results(tool: str, lines: list[str], what: str) -> ParseError:
    errors = [line.strip() for line in lines if re.search(r"error|failed|abort", line, re.I)]
    kept = errors[:2] + errors[-2:] if errors else [ln.strip() for ln in lines if ln.strip()][-3:]
    tail = list(dict.fromkeys(kept))  # the first errors say why, the last ones where it ended
    quoted = " | ".join(tail) or "(no output)"
    return ParseError(f"{tool}: no {what} in its output; it ended with: {quoted!r}")


# --------------------------------------------------------------------------- /proc

_STATUS_KB = re.compile(r"^(VmHWM|VmRSS|VmSwap):\s+(\d+) kB$")


def parse_proc_status(text: str) -> dict[str, int]:
    """`/proc/<pid>/status` (Linux and Android kernels alike): VmHWM — the kernel's own
    peak of the resident set —, VmRSS and VmSwap, in kB; the lines that are there."""
    return {m[1]: int(m[2]) for line in text.splitlines() if (m := _STATUS_KB.match(line))}


# --------------------------------------------------------------------------- benchmark_model

_BM_STATS = re.compile(r"^count=(\S+)(?P<rest>.*)$")
_BM_PAIR = re.compile(r"(\w+)=(\S+)")
_BM_SUMMARY = re.compile(
    rf"^Inference timings in us: Init: (?P<init>{_NUMBER}), First inference: (?P<first>{_NUMBER}),"
    rf" Warmup \(avg\): (?P<warmup>{_NUMBER}), Inference \(avg\): (?P<avg>{_NUMBER})\s*$"
)
# TFLite 1.x (2019-2020): one line, the warm-up's mean and no first inference apart
_BM_OLD_SUMMARY = re.compile(
    rf"^Average inference timings in us: Warmup: (?P<warmup>{_NUMBER}), Init: (?P<init>{_NUMBER}),"
    rf" (?:no stats|Inference): (?P<avg>{_NUMBER})\s*$"
)
_BM_MEMORY = re.compile(
    r"^(?P<kind>Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\):"
    r" init=(?P<init>\S+) overall=(?P<overall>\S+)\s*$"
)
_BM_PEAK_MONITOR = re.compile(
    r"^Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>\S+)\s*$"
)


# LiteRT's CompiledModel benchmark (litert/tools/benchmark_litert_model.h): a block of
# `Name: value ms` lines after `INFO: [benchmark_litert_model.h:94] `, times in ms
_BM_COMPILED_TITLE = "========== BENCHMARK RESULTS =========="
_BM_SOURCE = re.compile(r"^\[[\w./-]+:\d+\]\s*")
_BM_COMPILED = re.compile(
    r"^(?P<key>Model initialization|Warmup \((?:first|avg)\)|Inference \((?:avg|min|max|std)\)"
    rf"|Init footprint|Overall footprint|Peak memory):\s+(?P<value>{_NUMBER})(?:\s*(?:ms|MB))?"
    rf"(?:\s+\((?P<runs>\d+) runs\))?\s*$"
)


def _compiled_model_results(lines: list[str]) -> ToolReport:
    """The `BENCHMARK RESULTS` block of LiteRT's CompiledModel `benchmark_model`: mean,
    min, max and std of the timed runs in ms with their count, the initialization, the
    warm-up, and the memory footprints (deltas from the tool's start, as newer TFLite
    builds print them)."""
    tool = "benchmark_model"
    values: dict[str, float] = {}
    runs: dict[str, int] = {}
    started = False
    for raw in lines:
        line = _BM_SOURCE.sub("", _PREFIX.sub("", raw)).strip()
        started = started or _BM_COMPILED_TITLE in line
        if not started or ":" not in line:
            continue
        if match := _BM_COMPILED.match(line):
            values[match["key"]] = _float(match["value"], raw, tool)
            if match["runs"]:
                runs[match["key"]] = int(match["runs"])
        elif line.startswith(("Inference (", "Warmup (", "Model initialization")):
            raise ParseError(f"{tool}: cannot read the result line {raw.strip()!r}")
    if "Inference (avg)" not in values:
        raise _no_results(tool, lines, "'Inference (avg)' line in the BENCHMARK RESULTS block")
    return ToolReport(
        tool=tool,
        n=runs.get("Inference (avg)"),
        mean_ms=values["Inference (avg)"],
        std_ms=values.get("Inference (std)"),
        min_ms=values.get("Inference (min)"),
        max_ms=values.get("Inference (max)"),
        load_ms=values.get("Model initialization"),
        first_ms=values.get("Warmup (first)"),
        warmup_mean_ms=values.get("Warmup (avg)"),
        peak_memory_mb=values.get("Peak memory"),
        model_memory_mb=values.get("Init footprint"),
        extra={"memory_kind": "delta", "overall_footprint_mb": values.get("Overall footprint")},
    )


def parse_benchmark_model(text: str) -> ToolReport:
    """TFLite/LiteRT `benchmark_model`: the timed run's `count=... avg=... std=...` line
    (the last such line before the summary; op-profiling tables after it are ignored),
    the `Inference timings in us` summary (TFLite 1.x: `Average inference timings in us:
    Warmup: W, Init: I, no stats: A`, with no first inference apart) and the memory
    footprint line (absolute peak in old builds, delta from the tool's start in newer
    ones). Times are microseconds."""
    tool = "benchmark_model"
    lines = text.splitlines()
    stats: dict[str, float] | None = None
    summary = memory = None
    memory_kind = ""
    monitored_peak: float | None = None
    for raw in lines:
        line = _PREFIX.sub("", raw).rstrip()
        if summary is None and (match := _BM_STATS.match(line)):
            stats = {k: _float(v.split("(")[0], raw, tool) for k, v in _BM_PAIR.findall(line)}
        elif line.startswith(("Inference timings in us", "Average inference timings in us")):
            match = _BM_SUMMARY.match(line) or _BM_OLD_SUMMARY.match(line)
            if not match:
                raise ParseError(f"{tool}: cannot read the summary line {raw.strip()!r}")
            summary = {k: _float(v, raw, tool) for k, v in match.groupdict().items()}
        elif "memory footprint" in line.lower() and "(MB)" in line:
            if match := _BM_MEMORY.match(line):
                memory = {k: _float(match[k], raw, tool) for k in ("init", "overall")}
                memory_kind = "peak" if match["kind"].startswith("Peak") else "delta"
            elif match := _BM_PEAK_MONITOR.match(line):
                monitored_peak = _float(match["peak"], raw, tool)
            else:
                raise ParseError(f"{tool}: cannot read the memory line {raw.strip()!r}")
    if summary is None and any(_BM_COMPILED_TITLE in line for line in lines):
        return _compiled_model_results(lines)
    if summary is None:
        raise _no_results(tool, lines, "'Inference timings' summary")
    if stats is None:  # the summary alone (`adb logcat | grep "Inference timings"`)
        return ToolReport(
            tool=tool,
            n=None,
            mean_ms=summary["avg"] / US_PER_MS,
            load_ms=summary["init"] / US_PER_MS,
            first_ms=summary["first"] / US_PER_MS if "first" in summary else None,
            warmup_mean_ms=summary["warmup"] / US_PER_MS,
            extra={"summary_only": True},
        )
    if "count" not in stats or "curr" not in stats:
        raise ParseError(f"{tool}: the timed run's statistics line lacks count/curr")
    n = int(stats["count"])
    single = "avg" not in stats  # "count=1 curr=X": every run took the same time
    peak_mb = monitored_peak
    if memory and memory_kind == "peak":
        peak_mb = memory["overall"]
    return ToolReport(
        tool=tool,
        n=n,
        mean_ms=(stats["curr"] if single else stats["avg"]) / US_PER_MS,
        std_ms=(0.0 if single else stats.get("std", 0.0)) / US_PER_MS,
        min_ms=stats.get("min", stats["curr"]) / US_PER_MS,
        max_ms=stats.get("max", stats["curr"]) / US_PER_MS,
        p50_ms=stats["median"] / US_PER_MS if "median" in stats else None,
        p95_ms=stats["p95"] / US_PER_MS if "p95" in stats else None,
        load_ms=summary["init"] / US_PER_MS,
        first_ms=summary["first"] / US_PER_MS if "first" in summary else None,
        warmup_mean_ms=summary["warmup"] / US_PER_MS,
        peak_memory_mb=peak_mb,
        model_memory_mb=memory["init"] if memory and memory_kind == "delta" else None,
        extra={
            "p5_ms": stats["p5"] / US_PER_MS if "p5" in stats else None,
            "memory_mb": memory,
            "memory_kind": memory_kind or None,
        },
    )


# --------------------------------------------------------------------------- perf_test

_PT_LINE = re.compile(
    r"^(?P<key>[A-Za-z][A-Za-z0-9 ()_-]*?)\s*:\s*(?P<value>\S+)(?:\s*(?P<unit>\S+))?\s*$"
)
_PT_KEYS = {
    "session creation time cost", "first inference time cost", "total inference time cost",
    "total inference requests", "average inference time cost", "total inference run time",
    "number of inferences per second", "avg cpu usage", "total cpu usage",
    "peak working set size", "runs",
}  # fmt: skip
_PT_SECONDS = {"min latency", "max latency", "p50 latency", "p90 latency", "p95 latency",
               "p99 latency", "p999 latency"}  # fmt: skip
# releases before 1.2 (2019): `Total iterations: N`, `Average time cost: A ms` and
# `P50 Latency is 0.0587108 sec` (the README's sample: `0.0587108sec`)
_PT_OLD_LATENCY = re.compile(rf"^(?P<key>(?:Min|Max|P\d+) Latency) is (?P<value>{_NUMBER})\s*sec$")
_PT_OLD_KEYS = {"total iterations": "total inference requests",
                "average time cost": "average inference time cost",
                # releases from 1.20 on say "total" (the same mean per inference)
                "average inference time cost total": "average inference time cost"}  # fmt: skip


def parse_perf_test(text: str) -> ToolReport:
    """`onnxruntime_perf_test`: `Key: value unit` lines. The average is in ms, the
    `-s` percentiles (`P50 Latency: 0.0186 s`; before 1.2 `P50 Latency is 0.0186 sec`)
    in seconds, memory in bytes."""
    tool = "onnxruntime_perf_test"
    lines = text.splitlines()
    values: dict[str, float] = {}
    provider = None
    for raw in lines:
        line = raw.strip()
        if line.startswith("using ") and line.endswith("ExecutionProvider"):
            provider = line.removeprefix("using ")
            continue
        if old := _PT_OLD_LATENCY.match(line):
            values[old["key"].lower()] = _float(old["value"], raw, tool)
            continue
        match = _PT_LINE.match(line)
        if not match:
            continue
        key = match["key"].lower()
        key = _PT_OLD_KEYS.get(key, key)
        if key not in _PT_SECONDS and key not in _PT_KEYS:
            continue  # "Setting intra_op_num_threads to 4" and other chatter
        values[key] = _float(match["value"], raw, tool)
        unit = match["unit"] or ""
        if key in _PT_SECONDS and unit != "s":
            raise ParseError(f"{tool}: expected seconds in line {raw.strip()!r}")
    if "average inference time cost" not in values:
        raise _no_results(tool, lines, "'Average inference time cost' line")
    n = values.get("total inference requests", values.get("runs"))
    if n is None:
        raise ParseError(f"{tool}: no 'Total inference requests' line")

    def seconds(key: str) -> float | None:
        return values[key] * 1000.0 if key in values else None

    peak = values.get("peak working set size")
    return ToolReport(
        tool=tool,
        n=int(n),
        mean_ms=values["average inference time cost"],
        min_ms=seconds("min latency"),
        max_ms=seconds("max latency"),
        p50_ms=seconds("p50 latency"),
        p90_ms=seconds("p90 latency"),
        p95_ms=seconds("p95 latency"),
        p99_ms=seconds("p99 latency"),
        load_ms=seconds("session creation time cost"),
        first_ms=values.get("first inference time cost"),
        peak_memory_mb=peak / 2**20 if peak is not None else None,
        extra={
            "p999_ms": seconds("p999 latency"),
            "throughput_per_s": values.get("number of inferences per second"),
            "cpu_usage_pct": values.get("avg cpu usage", values.get("total cpu usage")),
            "provider": provider,
        },
    )
