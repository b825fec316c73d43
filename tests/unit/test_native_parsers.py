"""The native tools' parsers against recorded real output (tests/fixtures/<tool>/, each
file's source and expected values in its expected.json), and their refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ParseError
from harness.native.commands import with_process_memory
from harness.native.parsers import (
    ToolReport,
    parse_benchmark_model,
    parse_perf_test,
    parse_proc_status,
)
from harness.native.trtexec import parse_trtexec, parse_trtexec_times

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PARSERS = {
    "benchmark_model": parse_benchmark_model,
    "onnxruntime_perf_test": parse_perf_test,
    "trtexec": parse_trtexec,
}


def _cases() -> list[Any]:
    cases = []
    for tool in PARSERS:
        expected = json.loads((FIXTURES / tool / "expected.json").read_text())
        for name, case in expected.items():
            if "expected" in case or "error" in case:  # the others: op profiles only
                cases.append(pytest.param(tool, name, case, id=f"{tool}/{name}"))
    return cases


@pytest.mark.parametrize(("tool", "name", "case"), _cases())
def test_recorded_output_parses_to_its_expected_values(tool: str, name: str, case: Any) -> None:
    text = (FIXTURES / tool / name).read_text()
    assert case["source"] and case["what"]
    if "error" in case:
        with pytest.raises(ParseError, match=case["error"]):
            PARSERS[tool](text)
        return
    report: ToolReport = PARSERS[tool](text)
    for key, value in case["expected"].items():
        actual = getattr(report, key)
        if isinstance(value, float):
            assert actual == pytest.approx(value, rel=1e-9), key
        else:
            assert actual == value, key


def test_every_fixture_file_has_its_source_recorded() -> None:
    for tool in PARSERS:
        listed = set(json.loads((FIXTURES / tool / "expected.json").read_text()))
        on_disk = {p.name for p in (FIXTURES / tool).glob("*.txt")}
        assert on_disk == listed, tool


def test_benchmark_model_reads_the_timed_run_not_the_warmup_or_the_profiler() -> None:
    text = (FIXTURES / "benchmark_model" / "linux_x86_avx2_2020_peak_memory.txt").read_text()
    report = parse_benchmark_model(text)
    assert report.n == 70  # not the warm-up's 36, nor the profiler's "count=1 curr=410"


@pytest.mark.parametrize(
    "prefix",
    [
        "I/tflite  ( 5395): ",  # logcat -v brief
        "07-08 15:33:56.256 I/tflite  ( 5395): ",  # -v time
        "07-08 15:33:56.256  5395  5395 I tflite  : ",  # -v threadtime
    ],
)
def test_benchmark_model_through_logcat_reads_as_on_a_console(prefix: str) -> None:
    """The benchmark APK writes to logcat: each line of a recorded run, prefixed as
    each logcat format prefixes it, parses to the same report."""
    text = (FIXTURES / "benchmark_model" / "linux_x86_avx2_2020_peak_memory.txt").read_text()
    logged = "\n".join(prefix + line for line in text.splitlines())
    assert parse_benchmark_model(logged) == parse_benchmark_model(text)


@pytest.mark.parametrize(
    ("parser", "line"),
    [
        (parse_benchmark_model, "count=50 first=12 curr=1x3 min=1 max=2 avg=1.5 std=0.1"),
        (parse_benchmark_model, "Inference timings in us: Init: 5579, First inference: soon"),
        (parse_benchmark_model, "Peak memory footprint (MB): init=lots overall=more"),
        (parse_perf_test, "P50 Latency: 0.0018 ms"),
        (parse_perf_test, "Average inference time cost: fast ms"),
        (parse_trtexec, "[I] Latency: min = quick, max = slow"),
        (parse_trtexec, "[I] Throughput: many qps"),
    ],
)
def test_a_result_line_it_cannot_read_is_quoted(parser: Any, line: str) -> None:
    with pytest.raises(ParseError) as caught:
        parser(line + "\n")
    assert line.split(":")[0].strip("[I] ") in str(caught.value)


@pytest.mark.parametrize("parser", list(PARSERS.values()))
def test_output_without_results_is_refused_with_its_last_lines(parser: Any) -> None:
    with pytest.raises(ParseError, match="Segmentation fault"):
        parser("loading model\nSegmentation fault (core dumped)\n")


def test_trtexec_failed_run_is_refused() -> None:
    text = "[I] Latency: min = 1 ms, max = 2 ms, mean = 1.5 ms\n&&&& FAILED TensorRT.trtexec [TensorRT v8601] # trtexec\n"
    with pytest.raises(ParseError, match="FAILED"):
        parse_trtexec(text)


def test_trtexec_export_times_become_raw_samples() -> None:
    # the field layout of --exportTimes as read by TensorRT's samples/trtexec/tracer.py
    times = json.dumps([{"startComputeMs": 1.0, "computeMs": 2.0, "latencyMs": 2.5},
                        {"startComputeMs": 4.0, "computeMs": 2.1, "latencyMs": 2.25}])  # fmt: skip
    text = (FIXTURES / "trtexec" / "tensorrt_8401_plugin_sample.txt").read_text()
    report = parse_trtexec(text, times)
    assert report.latencies_ns == (2_500_000, 2_250_000) and report.n == 2
    with pytest.raises(ParseError, match="latencyMs"):
        parse_trtexec_times('[{"computeMs": 1}]')


def test_an_unknown_summary_form_is_quoted_never_called_missing() -> None:
    """TensorFlow's (not Lite's) benchmark_model of 2017 ends with stats we do not read:
    the error quotes the line, it never says there is no summary."""
    text = "count=61 first=143913 curr=150588 min=89136 max=256518 avg=165940 std=28180\n"
    text += (
        "Average inference timings in us: Warmup: 169371, no stats: 154047, with stats: 165939\n"
    )
    with pytest.raises(ParseError, match="cannot read the summary line 'Average inference"):
        parse_benchmark_model(text)


def test_a_tool_that_prints_no_peak_gets_its_process_vmhwm() -> None:
    status = parse_proc_status(Path("/proc/self/status").read_text())  # a real kernel's
    assert status["VmHWM"] >= status["VmRSS"] > 0
    text = (FIXTURES / "benchmark_model" / "android_mi11_cpu_excerpt.txt").read_text()
    delta_only = parse_benchmark_model(text)
    assert delta_only.peak_memory_mb is None
    watched = with_process_memory(delta_only, {"VmHWM": 204800, "VmRSS": 102400})
    assert watched.peak_memory_mb == 200.0
    assert watched.extra["peak_memory_from"] == "/proc/<pid>/status VmHWM"
    printed = (FIXTURES / "benchmark_model" / "linux_x86_avx2_2020_peak_memory.txt").read_text()
    own = parse_benchmark_model(printed)
    assert with_process_memory(own, {"VmHWM": 1}) == own  # the tool's own figure kept
