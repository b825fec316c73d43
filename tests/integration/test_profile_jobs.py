"""Per-layer profiles (`[measure] profile = true`): one more process per job, real
onnxruntime traces on the local and the loopback SSH device, summarised on the device and
stored in profile.parquet; the fp32 → int8-static difference by op type; LiteRT's op list."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from conftest import SSHServer, harness
from device_files import local_device_file

from harness.config import Budget, Budgets
from harness.gate import evaluate
from harness.profiles import op_type_diff, placement
from harness.runner.contract import ResultDocument
from harness.scheduler import prepare_run, run_prepared


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
    prepared = prepare_run(plan)
    records = run_prepared(prepared)
    assert {r.status for r in records} == {"ok"}, [r.error for r in records if r.error]
    profiles = {(r.device, r.model, r.variant): r for r in records if r.kind == "profile"}
    assert len(profiles) == 8  # every solo job, once, in a process of its own
    run_dir = prepared.store.run_dir
    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 8 and not results["job_id"].str.endswith(".profile").any()
    for device in ("local", "loop"):
        fp32 = ResultDocument(profiles[(device, "tiny_mbv2", "fp32")].runner).profile
        int8 = ResultDocument(profiles[(device, "tiny_mbv2", "int8-static")].runner).profile
        for profile in (fp32, int8):
            assert profile["runs"] == 10 and len(profile["nodes"]) == 9  # top 8 + the rest
            # the nodes' kernels account for the runs, less the executor's own overhead
            # (means over the same runs: one slowed run moves both alike)
            assert 0.5 < sum(profile["op_types"].values()) / profile["mean_run_us"] <= 1.0
        diff = {row["op_type"]: row for row in op_type_diff(fp32, int8)}
        assert diff["Conv"]["after_ms"] < diff["Conv"]["before_ms"]  # Conv time falls ...
        assert diff["QuantizeLinear"]["before_ms"] == 0 < diff["QuantizeLinear"]["after_ms"]
        assert "QLinearConv" in int8["op_types"]  # ... into quantized kernels and Q/DQ ops
        shares = placement(profiles[(device, "tiny_mbv2", "fp32")])
        assert shares["providers"]["CPUExecutionProvider"]["share"] == 1.0
        assert shares["cpu_fallback_share"] is None  # the job asked for the CPU
        iris = ResultDocument(profiles[(device, "iris_landmark", "fp32")].runner).profile
        assert iris["op_counts"]["CONV_2D"] == 55 and iris["delegate_partitions"] >= 1
        assert "benchmark_model" in iris["timing"]
    rows = pd.read_parquet(run_dir / "profile.parquet")
    tiny = rows[rows["model"] == "tiny_mbv2"]
    assert len(tiny) == 4 * 9 and tiny.groupby("job_id")["share"].sum().round(6).eq(1).all()
    shown = harness("show", run_dir, "--profile", "--compare")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "tiny_mbv2/int8-static on loop" in shown.stdout and "QLinearConv" in shown.stdout
    made = harness("report", run_dir)
    assert made.returncode == 0, made.stdout + made.stderr
    assert (run_dir / "plots" / "time_by_op_type.png").is_file()
    summary = (run_dir / "summary.md").read_text()
    assert "## Where the time went, against fp32" in summary
    assert "| local | tiny_mbv2 | int8-static | CPUExecutionProvider t1 | " in summary
    placements = {
        (r.device, r.model, r.runtime, r.provider, r.threads, r.variant): placement(r)
        for r in profiles.values()
    }
    budgets = Budgets(budget=[Budget(model="tiny_mbv2", max_cpu_fallback_share=0.1)])
    results, samples = prepared.store.frames()
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
