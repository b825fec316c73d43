"""Native tools: which tool measures a job, its argv, and its report as a result row."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import (
    Connection,
    Device,
    Inputs,
    Measure,
    ModelManifest,
    NativeBinary,
    Placement,
    Plan,
    RuntimeSettings,
)
from harness.errors import ConfigError
from harness.native.commands import (
    cpu_mask,
    native_command,
    result_document,
    tool_for,
)
from harness.native.parsers import ToolReport
from harness.plan_jobs import expand_plan
from harness.records import JobRecord, pool_reported
from harness.rows import result_row
from harness.runner.result_views import ReportedStats

FIXED = {"iterations": 30}
ADAPTIVE = {"min_iterations": 50, "max_iterations": 1000, "target_ci": 0.01, "max_seconds": 8.0}


def test_cpu_lists_become_taskset_masks() -> None:
    assert cpu_mask("4-7") == "f0"
    assert cpu_mask("0,2,4-5") == "35"
    assert cpu_mask("0") == "1"


def test_which_tool_measures_a_job() -> None:
    assert tool_for("python", "onnxruntime", "CPUExecutionProvider", False) == "runner"
    assert tool_for("native", "tflite", "gpu", False) == "benchmark_model"
    assert tool_for("native", "onnxruntime", "NnapiExecutionProvider", False) == (
        "onnxruntime_perf_test"
    )
    assert tool_for("python", "onnxruntime", "trtexec:fp16", True) == "trtexec"
    assert tool_for("python", "onnxruntime", "trtexec:fp16", False) is None


def test_benchmark_model_argv() -> None:
    argv = native_command(
        "benchmark_model", binary="/d/bin/bm", model_path="/d/m.tflite", provider="gpu",
        threads=4, warmup=10, stop=FIXED, cores="4-7",
    )  # fmt: skip
    assert argv == [
        "taskset", "f0", "/d/bin/bm", "--graph=/d/m.tflite", "--num_threads=4",
        "--warmup_runs=10", "--warmup_min_secs=0", "--num_runs=30", "--min_secs=0",
        "--use_gpu=true",
    ]  # fmt: skip
    adaptive = native_command(
        "benchmark_model", binary="bm", model_path="m", provider="delegate:/v/libvx.so",
        threads=1, warmup=1, stop=ADAPTIVE,
    )  # fmt: skip
    assert "--num_runs=50" in adaptive and "--max_secs=8" in adaptive
    assert adaptive[-1] == "--external_delegate_path=/v/libvx.so"


def test_perf_test_and_trtexec_argv() -> None:
    perf = native_command(
        "onnxruntime_perf_test", binary="pt", model_path="/d/m.onnx",
        provider="NnapiExecutionProvider", threads=2, warmup=5, stop=FIXED,
    )  # fmt: skip
    assert perf == [
        "pt",
        "-e",
        "nnapi",
        "-x",
        "2",
        "-m",
        "times",
        "-r",
        "30",
        "-s",
        "-I",
        "/d/m.onnx",
    ]
    trt = native_command(
        "trtexec", binary="/usr/src/tensorrt/bin/trtexec", model_path="/w/m.onnx",
        provider="trtexec:int8", threads=1, warmup=5, stop=FIXED, times_path="/w/t.json",
    )  # fmt: skip
    assert trt[1:] == ["--onnx=/w/m.onnx", "--iterations=30", "--duration=0", "--int8",
                       "--exportTimes=/w/t.json"]  # fmt: skip


def test_a_summary_only_report_becomes_a_row_without_a_ci() -> None:
    report = ToolReport(
        tool="benchmark_model", n=50, mean_ms=220.0, std_ms=6.795, min_ms=206.675,
        max_ms=231.957, load_ms=1.43, first_ms=247.583, model_memory_mb=5.66016,
    )  # fmt: skip
    doc = result_document("phone.m.fp32.xnnpack.t4", "tflite", report, ["bm"])
    record = JobRecord(
        run_id="r", job_id=doc["job_id"], started_at="t", finished_at="t", device="phone",
        device_class="", transport="adb", model="m", variant="fp32", strategy="fp32",
        runtime="tflite", provider="xnnpack", threads=4, status="ok", runner=doc,
    )  # fmt: skip
    row = result_row(record)
    assert (row["n"], row["mean_ms"], row["min_ms"], row["max_ms"]) == (50, 220.0, 206.675, 231.957)
    assert row["cv"] == pytest.approx(6.795 / 220.0)
    assert row["p50_ms"] is None and row["p50_ci_low_ms"] is None
    assert (
        row["ci_method"] == "none (tool summary)" and "summary statistics only" in row["warnings"]
    )
    assert row["model_mem_mb"] == pytest.approx(5.66016) and row["load_ms"] == 1.43


def test_summaries_of_several_processes_pool_what_can_be_pooled() -> None:
    pooled = pool_reported(
        [
            ReportedStats(n=10, mean_ms=2.0, min_ms=1.5, max_ms=3.0, p50_ms=2.0, std_ms=0.1),
            ReportedStats(n=30, mean_ms=4.0, min_ms=1.0, max_ms=5.0, p50_ms=4.0, std_ms=0.2),
        ]
    )
    assert pooled["n"] == 40 and pooled["mean_ms"] == pytest.approx(3.5)
    assert (pooled["min_ms"], pooled["max_ms"]) == (1.0, 5.0)
    assert pooled["p50_ms"] is None and pooled["std_ms"] is None


def test_plans_expand_per_device_capabilities(tmp_path: Path) -> None:
    onnx, tflite = tmp_path / "a.onnx", tmp_path / "b.tflite"
    manifests = [ModelManifest(name="a", file=onnx), ModelManifest(name="b", file=tflite)]
    phone = Device(name="phone", transport="adb", connection=Connection(serial="R58M"))
    jetson = Device(
        name="orin", transport="ssh", connection=Connection(host="orin.lab.example"),
        placement=Placement(
            binaries={"trtexec": NativeBinary(device="/usr/src/tensorrt/bin/trtexec")}
        ),
    )  # fmt: skip
    plan = Plan(
        name="p",
        models=["a", "b"],
        runtime=RuntimeSettings(
            threads=[1, 4], onnx_providers=["CPUExecutionProvider", "trtexec:fp16"]
        ),
        measure=Measure(iterations=10),
        inputs=Inputs(dims={"batch": 1}),
    )
    jobs = {j.job_id: j for j in expand_plan(plan, [phone, jetson], manifests)}
    assert jobs["phone.a.fp32.cpu.t1"].tool == "onnxruntime_perf_test"
    assert jobs["phone.b.fp32.xnnpack.t1"].tool == "benchmark_model"
    assert "phone.a.fp32.trtexec-fp16.t1" not in jobs  # no trtexec on the phone
    trt = jobs["orin.a.fp32.trtexec-fp16.t1"]
    assert (trt.tool, trt.runtime) == ("trtexec", "tensorrt")
    assert "orin.a.fp32.trtexec-fp16.t4" not in jobs  # trtexec has no threads axis
    assert jobs["orin.a.fp32.cpu.t1"].tool == "runner"
    with pytest.raises(ConfigError, match="need a device with `placement.binaries.trtexec`"):
        expand_plan(plan, [phone], manifests)
    odd = plan.model_copy(
        update={"runtime": RuntimeSettings(onnx_providers=["FooExecutionProvider"])}
    )
    with pytest.raises(ConfigError, match="no `-e` for 'FooExecutionProvider'"):
        expand_plan(odd, [phone], manifests)
