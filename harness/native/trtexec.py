"""The parser of TensorRT `trtexec`'s output. Pure: text in, `ToolReport` out (the
conventions of harness/native/parsers.py)."""

from __future__ import annotations

import json
import re

from harness.errors import ParseError
from harness.native.parsers import _NUMBER, ToolReport, _no_results

_TRT_PREFIX = re.compile(r"^\s*(?:\[[^\]]*\]\s*)*")
_TRT_STATS = re.compile(
    r"^(?P<name>Latency|GPU Compute Time|End-to-End Host Latency|Enqueue Time|H2D Latency|"
    r"D2H Latency): (?P<body>.*)$"
)
_TRT_PAIR = re.compile(rf"(min|max|mean|median|percentile\((?:[\d.]+)%\)) = ({_NUMBER}) ms")
_TRT_VERSION = re.compile(r"TensorRT v(\d+)")
_TRT_QUERIES = re.compile(r"^Timing trace has (\d+) queries")


def parse_trtexec(text: str, times_json: str | None = None) -> ToolReport:
    """TensorRT `trtexec`: the `=== Performance summary ===` lines (`Latency: min = … ms,
    …, percentile(99%) = … ms`, `GPU Compute Time: …`, `Throughput: … qps`) and the final
    `&&&& PASSED|FAILED` line. `Latency` (host: H2D + compute + D2H) is the job's latency;
    the others are kept in `extra`. With `--exportTimes`, its JSON gives raw samples."""
    tool = "trtexec"
    lines = text.splitlines()
    sections: dict[str, dict[str, float]] = {}
    throughput = None
    version = None
    outcome = None
    queries = None
    explaining = False
    for raw in lines:
        line = _TRT_PREFIX.sub("", raw).strip()
        if match := _TRT_QUERIES.match(line):
            queries = int(match[1])
        if raw.startswith("&&&& "):
            outcome = "passed" if raw.startswith("&&&& PASSED") else raw.split()[1].lower()
            if match := _TRT_VERSION.search(raw):
                version = _trt_version(match[1])
            continue
        explaining = explaining or line.startswith("=== Explanations of the performance metrics")
        if explaining:  # --verbose explains each statistic after the summary, in prose
            continue
        if match := _TRT_STATS.match(line):
            pairs = _TRT_PAIR.findall(match["body"])
            if not pairs:
                raise ParseError(f"{tool}: cannot read the statistics line {raw.strip()!r}")
            sections[match["name"]] = {key: float(value) for key, value in pairs}
        elif line.startswith("Throughput:"):
            found = re.match(rf"Throughput: ({_NUMBER}) qps", line)
            if not found:
                raise ParseError(f"{tool}: cannot read the line {raw.strip()!r}")
            throughput = float(found[1])
    if outcome not in (None, "passed"):
        raise _no_results(tool, lines, "result (trtexec reported FAILED)")
    latency = sections.get("Latency")
    if latency is None or "mean" not in latency:
        raise _no_results(tool, lines, "'Latency: min = …' performance summary")
    raw_ns = parse_trtexec_times(times_json) if times_json else ()
    return ToolReport(
        tool=tool,
        n=len(raw_ns) or queries,
        mean_ms=latency["mean"],
        min_ms=latency.get("min"),
        max_ms=latency.get("max"),
        p50_ms=latency.get("median"),
        p90_ms=latency.get("percentile(90%)"),
        p95_ms=latency.get("percentile(95%)"),
        p99_ms=latency.get("percentile(99%)"),
        version=version,
        latencies_ns=raw_ns,
        extra={
            "throughput_qps": throughput,
            "gpu_compute_ms": sections.get("GPU Compute Time"),
            "end_to_end_host_ms": sections.get("End-to-End Host Latency"),
            "enqueue_ms": sections.get("Enqueue Time"),
        },
    )


def parse_trtexec_times(text: str) -> tuple[int, ...]:
    """`--exportTimes` JSON: one object per timed inference, `latencyMs` its host latency
    (field names as in TensorRT's samples/trtexec/tracer.py)."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"trtexec: the --exportTimes file is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ParseError("trtexec: the --exportTimes file is not a list of timings")
    samples = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("latencyMs"), (int, float)):
            raise ParseError(f"trtexec: an --exportTimes entry has no latencyMs: {entry!r}")
        samples.append(max(1, round(entry["latencyMs"] * 1e6)))
    return tuple(samples)


def _trt_version(code: str) -> str:
    """`v8401` -> 8.4.1, `v100300` -> 10.3.0 (TensorRT's MAJOR*1000+MINOR*100+PATCH, and
    from 10 on MAJOR*10000+MINOR*100+PATCH)."""
    number = int(code)
    if number >= 100000:
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return f"{number // 1000}.{number // 100 % 10}.{number % 100}"
