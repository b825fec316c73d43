"""The native tools' per-layer profiles against recorded real output (tests/fixtures/<tool>/,
the entries of expected.json with a "profile"): benchmark_model's op-profiling tables in
three layouts, trtexec's --dumpProfile table; the placement and the fp32 → int8 diff they
give; and the refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ParseError
from harness.native.commands import native_command
from harness.native.op_profiles import (
    parse_benchmark_model_profile,
    parse_trtexec_profile,
    trt_op_type,
)
from harness.profiles import op_type_diff, placement, slower_layers
from harness.records import JobRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PARSERS = {"benchmark_model": parse_benchmark_model_profile, "trtexec": parse_trtexec_profile}
# what the kept nodes' times may miss of the tool's own run time (its rounding to 1 us)
RUN_TIME_TOLERANCE = 0.005


from test_profile_summaries import as_read  # noqa: E402


def _recorded(tool: str, name: str, top_n: int = 1000) -> dict[str, Any]:
    return PARSERS[tool]((FIXTURES / tool / name).read_text(), top_n)


def _cases() -> list[Any]:
    cases = []
    for tool in PARSERS:
        expected = json.loads((FIXTURES / tool / "expected.json").read_text())
        for name, case in expected.items():
            if "profile" in case:
                cases.append(pytest.param(tool, name, case, id=f"{tool}/{name}"))
    return cases


@pytest.mark.parametrize(("tool", "name", "case"), _cases())
def test_recorded_profile_parses_to_its_expected_values(tool: str, name: str, case: Any) -> None:
    assert case["source"] and case["what"]
    expected = case["profile"]
    profile = _recorded(tool, name, top_n=3)
    assert profile["runs"] == expected["runs"]
    assert profile["node_count"] == expected["node_count"]
    assert profile["mean_run_us"] == pytest.approx(expected["mean_run_us"])
    assert profile["nodes"][0]["node"] == expected["top_node"]
    assert profile["op_types"] == pytest.approx(expected["op_types_us"], abs=1e-3)
    assert {k: p["nodes"] for k, p in profile["providers"].items()} == expected["providers"]
    # top 3 and the rest summed: nothing lost
    assert len(profile["nodes"]) == 4
    assert sum(n["us"] for n in profile["nodes"]) == pytest.approx(
        sum(profile["op_types"].values())
    )
    if expected["mean_run_us"] is not None:  # the op types account for the tool's run time
        total = sum(profile["op_types"].values())
        assert total == pytest.approx(expected["mean_run_us"], rel=RUN_TIME_TOLERANCE)


def test_benchmark_models_own_summary_by_node_type_agrees_with_its_nodes() -> None:
    for name in (
        "linux_x86_avx2_2020_op_profiling_int8.txt",
        "android_litert_sme2_op_profiling.txt",
    ):
        profile = _recorded("benchmark_model", name)
        for op_type, us in profile["tool_op_types"].items():
            if us >= 100:  # the small ones differ by the tool's rounding to 1 us
                assert profile["op_types"][op_type] == pytest.approx(us, rel=0.01), op_type


def _record(provider: str, variant: str, profile: dict[str, Any]) -> JobRecord:
    return JobRecord(
        run_id="r", job_id=f"pixel.m.{variant}.{provider}.t1.profile", started_at="",
        finished_at="", device="pixel", device_class="phone", transport="adb", model="m",
        variant=variant, strategy=variant, runtime="tflite", provider=provider, threads=1,
        status="ok", runner={"profile": profile}, kind="profile",
    )  # fmt: skip


def test_the_nnapi_partitions_and_the_cpu_fallback() -> None:
    """Google's quantized DeepLab through NNAPI: three partitions, and the five ops NNAPI
    could not take run on the CPU for 74 % of the time."""
    profile = _recorded("benchmark_model", "android_nnapi_deeplab_op_profiling.txt")
    shares = placement(_record("nnapi", "int8", profile))
    assert shares["providers"]["nnapi"]["nodes"] == 3
    assert shares["cpu_fallback_share"] == pytest.approx(38601 / 52063)
    on_xnnpack = _recorded("benchmark_model", "android_litert_sme2_op_profiling.txt")
    assert placement(_record("xnnpack", "fp32", on_xnnpack))["cpu_fallback_share"] is None


def test_a_real_fp32_to_int8_diff_says_why_int8_was_slower() -> None:
    """The same machine, the float and the quantized MobileNetV2 on TFLite's built-in
    kernels (2020): int8 is slower, and the diff says it is the quantized ADDs and depthwise
    convolutions, while the 1x1 and 3x3 convolutions got faster."""
    fp32 = _recorded("benchmark_model", "linux_x86_avx2_2020_op_profiling_fp32.txt")
    int8 = _recorded("benchmark_model", "linux_x86_avx2_2020_op_profiling_int8.txt")
    fp32, int8 = as_read(fp32), as_read(int8)
    diff = {row["op_type"]: row for row in op_type_diff(fp32, int8)}
    assert diff["CONV_2D"]["after_ms"] < diff["CONV_2D"]["before_ms"]
    assert diff["ADD"]["delta_ms"] == pytest.approx(2.721 - 0.104)
    assert diff["ADD"]["share_of_change"] == pytest.approx(2617 / (14206 - 11032), rel=1e-3)
    assert op_type_diff(fp32, int8)[0]["op_type"] == "ADD"  # the largest change first
    assert diff["SOFTMAX"]["after_ms"] == 0  # the quantized graph ends without it
    grown = {row["node"] for row in slower_layers(fp32, int8)}  # names that survived
    assert "MobilenetV2/expanded_conv_2/add" in grown
    assert not any("project" in node for node in grown)  # renamed: add_fold, FusedBatchNorm


@pytest.mark.parametrize(
    ("layer", "op_type"),
    [
        ("node_conv2d_1 + node_relu_1", "conv2d"),
        ("node_linear_1_2_myl11_1", "linear"),
        ("PWN(node_linear_1 + node_relu_2)", "PointWise"),
        ("Reformatting CopyNode for Input Tensor 0 to node_view", "Reformat"),
        ("__mye26_0_myl8_0", "Myelin"),
        ("Conv_171 + Relu_172 || Conv_178 + Relu_179", "Conv"),
        ("/model.0/conv/Conv", "Conv"),
        ("639 copy", "Copy"),
    ],
)
def test_a_tensorrt_layers_op_type_is_its_first_onnx_nodes(layer: str, op_type: str) -> None:
    assert trt_op_type(layer) == op_type


def test_output_without_a_profile_or_with_a_mangled_row_is_refused() -> None:
    with pytest.raises(ParseError, match="--enable_op_profiling"):
        parse_benchmark_model_profile("INFO: count=50 first=1 avg=1\n", 10)
    with pytest.raises(ParseError, match="--dumpProfile"):
        parse_trtexec_profile("[I] Latency: min = 1 ms\n", 10)
    text = (FIXTURES / "benchmark_model" / "android_nnapi_deeplab_op_profiling.txt").read_text()
    mangled = text.replace("   15.326\t", "   fifteen\t")
    with pytest.raises(ParseError, match="ArgMax"):
        parse_benchmark_model_profile(mangled, 10)


def test_each_tool_is_told_to_profile() -> None:
    common = {"binary": "/b", "model_path": "/m", "threads": 2, "warmup": 1,
              "stop": {"iterations": 20}, "profile": True}  # fmt: skip
    bm = native_command("benchmark_model", provider="nnapi", **common)  # type: ignore[arg-type]
    assert "--enable_op_profiling=true" in bm and "--num_runs=20" in bm
    perf = native_command(
        "onnxruntime_perf_test", provider="CPUExecutionProvider", profile_path="/w/j.ort-profile",
        **common,  # type: ignore[arg-type]
    )  # fmt: skip
    assert perf[perf.index("-p") + 1] == "/w/j.ort-profile" and perf[-1] == "/m"
    trt = native_command("trtexec", provider="trtexec:int8", **common)  # type: ignore[arg-type]
    assert "--dumpProfile" in trt and "--int8" in trt
