"""Per-layer profiles (`[measure] profile = true`): one more process per job, real
onnxruntime traces on the local and the loopback SSH device, summarised on the device and
stored in profile.parquet; the fp32 → int8-static difference by op type; LiteRT's op list;
a phone's profile through benchmark_model's op profiling (a stand-in printing recorded
real tables), its NNAPI fallback flagged in the results, `show` and the gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import STANDIN_DIR, SSHServer, StandinPhones, harness, run_plan_ok
from device_files import local_device_file

from harness.config import Budget, Budgets
from harness.gate import evaluate
from harness.job_key import JobKey
from harness.profiles import op_type_diff, placement
from harness.runner.result_document import ResultDocument


def test_profiles_of_a_cnn_and_its_int8_variant(workspace: Path, sshd: SSHServer) -> None:
    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "wd"))
    (workspace / "devices" / "loop.toml").write_text(sshd.device_toml("loop", workspace / "ssh"))
    plan = workspace / "plans" / "profiled.toml"
    plan.write_text(
        'name = "profiled"\ndevices = ["local", "loop"]\n'
        'models = ["tiny_mbv2", "iris_landmark"]\nvariants = ["fp32", "int8-static"]\n'
        "[measure]\nwarmup = 3\niterations = 20\nprofile = true\nprofile_runs = 10\n"
        "profile_top_n = 8\n[inputs]\ndims = { batch = 1 }\n"
    )
    prepared, records = run_plan_ok(plan)
    profiles = {(r.device, r.model, r.variant): r for r in records if r.kind == "profile"}
    assert len(profiles) == 8  # every solo job, once, in a process of its own
    run_dir = prepared.store.run_dir
    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 8 and not results["job_id"].str.endswith(".profile").any()
    for device in ("local", "loop"):
        fp32 = ResultDocument(profiles[(device, "tiny_mbv2", "fp32")].runner).profile
        int8 = ResultDocument(profiles[(device, "tiny_mbv2", "int8-static")].runner).profile
        assert fp32 is not None and int8 is not None
        for profile in (fp32, int8):
            assert profile.runs == 10 and len(profile.nodes) == 9  # top 8 + the rest
            # the nodes' kernels account for the runs, less the executor's own overhead
            # (means over the same runs: one slowed run moves both alike)
            assert profile.mean_run_us
            assert 0.5 < sum(profile.op_types.values()) / profile.mean_run_us <= 1.0
        diff = {row["op_type"]: row for row in op_type_diff(fp32, int8)}
        assert diff["Conv"]["after_ms"] < diff["Conv"]["before_ms"]  # Conv time falls ...
        assert diff["QuantizeLinear"]["before_ms"] == 0 < diff["QuantizeLinear"]["after_ms"]
        assert "QLinearConv" in int8.op_types  # ... into quantized kernels and Q/DQ ops
        shares = placement(profiles[(device, "tiny_mbv2", "fp32")])
        assert shares["providers"]["CPUExecutionProvider"]["share"] == 1.0
        assert shares["cpu_fallback_share"] is None  # the job asked for the CPU
        iris = ResultDocument(profiles[(device, "iris_landmark", "fp32")].runner).profile
        assert iris is not None and not iris.timed
        assert iris.op_counts["CONV_2D"] == 55 and iris.delegate_partitions >= 1
        assert "benchmark_model" in (iris.timing or "")
    rows = pd.read_parquet(run_dir / "profile.parquet")
    tiny = rows[rows["model"] == "tiny_mbv2"]
    assert len(tiny) == 4 * 9 and tiny.groupby("job_id")["share"].sum().round(6).eq(1).all()
    shown = harness("show", run_dir, "--profile", "--compare")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "tiny_mbv2/int8-static on loop" in shown.stdout and "QLinearConv" in shown.stdout
    made = harness("report", run_dir, "--all-images")
    assert made.returncode == 0, made.stdout + made.stderr
    assert (run_dir / "plots" / "time_by_op_type.png").is_file()
    summary = (run_dir / "summary.md").read_text()
    assert "## Where the time went, against fp32" in summary
    assert "| local | tiny_mbv2 | int8-static | CPUExecutionProvider t1 | " in summary
    run = prepared.store.load()
    placements = run.placements()
    assert set(placements) == {JobKey.of(r) for r in profiles.values()}
    budgets = Budgets(budget=[Budget(model="tiny_mbv2", max_cpu_fallback_share=0.1)])
    results, samples = run.results, run.samples
    verdict = evaluate(budgets, results, samples, None, None, placements)
    checks = [c for case in verdict.cases for c in case.checks]
    assert {c.outcome for c in checks} == {"pass"} and len(checks) == 4
    unprofiled = evaluate(budgets, results, samples)
    assert {c.outcome for case in unprofiled.cases for c in case.checks} == {"missing"}


def test_harness_run_profile_adds_the_profile_jobs(workspace: Path) -> None:
    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "wd"))
    plan = workspace / "plans" / "small.toml"
    plan.write_text(
        'name = "small"\ndevices = ["local"]\nmodels = ["digits_cnn"]\nvariants = ["fp32"]\n'
        "[measure]\nwarmup = 3\niterations = 20\n[inputs]\ndims = { batch = 1 }\n"
    )
    done = harness("run", plan, "--profile", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [run_dir] = (workspace / "reports" / "runs").iterdir()
    rows = pd.read_parquet(run_dir / "profile.parquet")
    assert set(rows["op_type"]) >= {"Conv", "Gemm"} and set(rows["variant"]) == {"fp32"}


def test_a_phones_profile_through_benchmark_model_flags_its_nnapi_fallback(
    workspace: Path, phones: StandinPhones
) -> None:
    """The adb path end to end with `--enable_op_profiling=true`: the stand-in
    benchmark_model times the model with LiteRT and ends with a recorded real op profile
    (tests/standin/benchmark_model.py says which), parsed on the controller."""
    tool = workspace / "tools" / "benchmark_model"
    tool.parent.mkdir()
    tool.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN_DIR}/benchmark_model.py" "$@"\n')
    (workspace / "devices" / "pixel.toml").write_text(
        phones.device_toml("pixel", phones.serials[0])
        + f'[placement.binaries.benchmark_model]\nlocal = "{tool}"\n'
    )
    plan = workspace / "plans" / "phone.toml"
    plan.write_text(
        'name = "phone"\ndevices = ["pixel"]\nmodels = ["face_detection_short_range"]\n'
        'variants = ["fp32"]\n[runtime]\ntflite_delegates = ["xnnpack", "nnapi"]\n'
        "[measure]\nwarmup = 2\niterations = 10\nprofile = true\nprofile_runs = 5\n"
        "profile_top_n = 4\n[inputs]\ndims = { batch = 1 }\n"
    )
    prepared, records = run_plan_ok(plan)
    run_dir = prepared.store.run_dir
    seen = json.loads((phones.root / "benchmark_model.profiled.argv.json").read_text())
    assert "--enable_op_profiling=true" in seen["argv"] and "--num_runs=5" in seen["argv"]
    rows = pd.read_parquet(run_dir / "profile.parquet").set_index("node")
    nnapi = rows[rows["provider"] == "nnapi"]
    assert len(nnapi) == 5  # the top 4 of its 8 nodes, and the rest summed
    assert nnapi.loc["ResizeBilinear_2", "us_per_run"] == pytest.approx(22369.0)
    assert nnapi.loc["ResizeBilinear_2", "node_provider"] == "builtin"
    on_cpu = rows[rows["provider"] == "xnnpack"]  # a float model: the float recording
    assert on_cpu.loc["MobilenetV2/expanded_conv_1/expand/Relu6", "op_type"] == "CONV_2D"
    results = pd.read_parquet(run_dir / "results.parquet").set_index("provider")
    assert results.loc["nnapi", "cpu_fallback_share"] == pytest.approx(38601 / 52063)
    assert "CPU" in results.loc["nnapi", "warnings"]
    assert pd.isna(results.loc["xnnpack", "cpu_fallback_share"])
    assert results["n"].eq(10).all()  # the timed jobs kept their own figures
    shown = harness("show", run_dir, "--profile")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "CPU fallback 74" in shown.stdout and "TfLiteNnapiDelegate" in shown.stdout
    budgets = workspace / "budgets.toml"
    budgets.write_text(
        '[[budget]]\nmodel = "face_detection_short_range"\nmax_cpu_fallback_share = 0.5\n'
    )
    gated = harness("gate", budgets, run_dir.name, "--runs-dir", run_dir.parent)
    assert gated.returncode == 1, gated.stdout + gated.stderr
    assert "cpu_fallback" in gated.stdout


def test_onnxruntime_perf_test_profiles_over_ssh(workspace: Path, sshd: SSHServer) -> None:
    """A native SSH device whose onnxruntime_perf_test (a stand-in timing with onnxruntime,
    tests/standin/onnxruntime_perf_test.py) is run with `-p`: onnxruntime's own trace,
    found by its prefix in the job's folder, fetched and summarised on the controller."""
    tool = workspace / "onnxruntime_perf_test"
    tool.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN_DIR}/onnxruntime_perf_test.py" "$@"\n'
    )
    tool.chmod(0o755)
    (workspace / "devices" / "edge.toml").write_text(
        sshd.device_toml("edge", workspace / "edge", runner="native")
        + f'[placement.binaries.onnxruntime_perf_test]\ndevice = "{tool}"\n'
    )
    plan = workspace / "plans" / "perf.toml"
    plan.write_text(
        'name = "perf"\ndevices = ["edge"]\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n'
        "[measure]\nwarmup = 1\niterations = 20\nprofile = true\nprofile_runs = 8\n"
        "[inputs]\ndims = { batch = 1 }\n"
    )
    prepared, records = run_plan_ok(plan)
    [profiled] = [r for r in records if r.kind == "profile"]
    profile = ResultDocument(profiled.runner).profile
    assert profile is not None and profile.mean_run_us
    assert profile.source == "onnxruntime profiling" and profile.runs == 8
    assert "Conv" in profile.op_types
    assert set(profile.providers) == {"CPUExecutionProvider"}
    assert 0.5 < sum(profile.op_types.values()) / profile.mean_run_us <= 1.0
    rows = pd.read_parquet(prepared.store.run_dir / "profile.parquet")
    assert set(rows["job_id"]) == {profiled.job_id}
    results = pd.read_parquet(prepared.store.run_dir / "results.parquet")
    assert list(results["n"]) == [20]  # the timed job's own figures
