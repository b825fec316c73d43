"""Per-layer profiles as data: the device-side summary (top N, the rest summed, totals by
op type and provider) and the controller's placement and diff (harness/profiles.py)."""

from __future__ import annotations

import pytest

from harness.profiles import op_type_diff, placement, profile_rows, slower_layers
from harness.records import JobRecord
from harness.runner.contract import ProfileDoc
from harness.runner.op_profile import OTHER_NODES, summarize_nodes
from harness.runner.result_document import ResultDocument
from harness.runner.result_views import Profile


def node(op_type: str, provider: str, total_us: float, calls: int = 4) -> dict:
    return {"op_type": op_type, "provider": provider, "calls": calls, "total_us": total_us}


NODES = {
    "conv1": node("Conv", "CUDAExecutionProvider", 400.0),
    "conv2": node("Conv", "CUDAExecutionProvider", 200.0),
    "topk": node("TopK", "CPUExecutionProvider", 120.0),
    "relu": node("Relu", "CUDAExecutionProvider", 40.0),
    "gather": node("Gather", "CPUExecutionProvider", 40.0),
}


def test_the_top_nodes_are_kept_and_the_rest_summed() -> None:
    summary = summarize_nodes(NODES, runs=4, top_n=2, run_us=[210.0, 200.0, 220.0], source="t")
    names = [n["node"] for n in summary["nodes"]]
    assert names == ["conv1", "conv2", f"{OTHER_NODES} (3)"]
    assert summary["nodes"][2]["us"] == pytest.approx(50.0)  # (120 + 40 + 40) / 4 runs
    assert summary["op_types"] == {"Conv": 150.0, "TopK": 30.0, "Relu": 10.0, "Gather": 10.0}
    assert summary["providers"]["CPUExecutionProvider"] == {"nodes": 2, "us": 40.0}
    assert summary["run_us"] == 210.0 and summary["node_count"] == 5


def record(provider: str, profile: dict) -> JobRecord:
    return JobRecord(
        run_id="r", job_id="j.profile", started_at="", finished_at="", device="orin",
        device_class="jetson", transport="ssh", model="m", variant="int8", strategy="int8",
        runtime="onnxruntime", provider=provider, threads=1, status="ok",
        runner={"profile": profile}, kind="profile",
    )  # fmt: skip


def test_placement_says_what_fell_back_to_the_cpu() -> None:
    profile = summarize_nodes(NODES, runs=4, top_n=10, run_us=[200.0], source="t")
    on_gpu = placement(record("CUDAExecutionProvider", profile))
    assert on_gpu["cpu_fallback_share"] == pytest.approx(40 / 200)
    assert on_gpu["providers"]["CUDAExecutionProvider"]["nodes"] == 3
    assert placement(record("CPUExecutionProvider", profile))["cpu_fallback_share"] is None
    rows = profile_rows(record("CUDAExecutionProvider", profile))
    assert [r["node"] for r in rows][:2] == ["conv1", "conv2"]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert rows[0]["mean_us"] == pytest.approx(100.0) and rows[0]["calls"] == 1.0


def as_read(profile: ProfileDoc) -> Profile:
    """A profile as the controller reads it from a stored record."""
    read = ResultDocument({"profile": profile}).profile
    assert read is not None
    return read


def test_the_diff_is_by_op_type_and_by_name_where_names_survive() -> None:
    fp32 = summarize_nodes(NODES, runs=4, top_n=10, run_us=[200.0], source="t")
    quantized = dict(NODES)
    quantized["conv1"] = node("QLinearConv", "CUDAExecutionProvider", 100.0)
    quantized["q"] = node("QuantizeLinear", "CUDAExecutionProvider", 20.0)
    quantized["gather"] = node("Gather", "CPUExecutionProvider", 60.0)
    int8 = summarize_nodes(quantized, runs=4, top_n=10, run_us=[130.0], source="t")
    fp32, int8 = as_read(fp32), as_read(int8)
    diff = {row["op_type"]: row for row in op_type_diff(fp32, int8)}
    assert diff["Conv"]["delta_ms"] == pytest.approx(-0.1)  # 150 -> 50 us per run
    assert diff["QuantizeLinear"]["before_ms"] == 0 and diff["QuantizeLinear"]["after_ms"] > 0
    total = sum(row["delta_ms"] for row in diff.values())
    assert sum(row["share_of_change"] for row in diff.values()) == pytest.approx(1.0)
    assert diff["Conv"]["share_of_change"] == pytest.approx(-0.1 / total)
    [slower] = slower_layers(fp32, int8)  # conv1 was renamed away by op type; gather grew
    assert slower["node"] == "gather" and slower["after_us"] == 15.0


def test_a_fallback_is_a_column_and_a_warning_of_the_jobs_result_row() -> None:
    from harness.rows import fill_placement

    profile = summarize_nodes(NODES, runs=4, top_n=10, run_us=[200.0], source="t")
    rows = [{"job_id": "j", "provider": "CUDAExecutionProvider", "warnings": None},
            {"job_id": "k", "provider": "CUDAExecutionProvider", "warnings": "unstable"}]  # fmt: skip
    fill_placement(rows, [record("CUDAExecutionProvider", profile)])  # j's profile only
    assert rows[0]["cpu_fallback_share"] == pytest.approx(0.2)
    assert (
        rows[0]["warnings"]
        == "20.0% of the profiled time ran on the CPU, not CUDAExecutionProvider"
    )
    assert rows[1]["cpu_fallback_share"] is None and rows[1]["warnings"] == "unstable"
