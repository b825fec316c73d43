"""`harness run` end to end: real runner, real onnxruntime / LiteRT, local and sshd devices."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    STANDIN_DIR,
    SSHServer,
    StandinPhones,
    free_port,
    harness,
    leftovers,
    pids_matching,
    signal_thread,
    wait_until,
)
from device_files import local_device_file

from harness.scheduler import prepare_run, run_prepared

BIN = Path(sys.executable).parent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def write_plan(workspace: Path, body: str, name: str = "t") -> Path:
    path = workspace / "plans" / f"{name}.toml"
    path.write_text(f'name = "{name}"\n' + body)
    return path


def add_ssh_device(workspace: Path, sshd: SSHServer, name: str = "loop", **extra: object) -> None:
    (workspace / "devices" / f"{name}.toml").write_text(
        sshd.device_toml(name, workspace / f"{name}-device", **extra)
    )


def add_local_device(workspace: Path) -> None:
    """The local device, with its workdir inside the test's folder."""
    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "local-device"))


def run(plan: Path) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    prepared = prepare_run(plan)
    run_prepared(prepared)
    run_dir = prepared.store.run_dir
    return (
        pd.read_parquet(run_dir / "results.parquet"),
        pd.read_parquet(run_dir / "samples.parquet"),
        run_dir,
    )


def test_both_models_on_local_and_ssh_devices(workspace: Path, sshd: SSHServer) -> None:
    add_local_device(workspace)
    add_ssh_device(workspace, sshd)
    plan = write_plan(
        workspace,
        """devices = ["local", "loop"]
models = ["tiny_mbv2", "face_detection_short_range"]
variants = ["fp32"]
[measure]
warmup = 3
iterations = 40
[runtime]
threads = [1, 2]
[inputs]
dims = { batch = 2 }
""",
    )
    results, samples, run_dir = run(plan)
    assert len(results) == 2 * 2 * 2
    assert (results["status"] == "ok").all(), results[["job_id", "error"]].to_string()
    assert (results["n"] == 40).all()
    assert set(results["runtime"]) == {"onnxruntime", "tflite"}
    assert set(results["transport"]) == {"local", "ssh"}
    assert (results["p50_ms"] > 0).all() and (results["p99_ms"] >= results["p50_ms"]).all()
    assert (results["p50_ci_low_ms"] <= results["p50_ms"]).all()
    assert (results["p50_ci_high_ms"] >= results["p50_ms"]).all()
    assert (results["model_mem_mb"] > 0).all(), "memory after load must exceed memory before"
    assert (results["peak_rss_mb"] >= results["rss_before_mb"]).all()
    assert results["model_sha256"].str.fullmatch("[0-9a-f]{64}").all()
    assert len(samples) == 8 * 40 and (samples["latency_ns"] > 0).all()
    # the plan's dims reached the model: batch 2
    record = json.loads((run_dir / "jobs" / "loop.tiny_mbv2.fp32.cpu.t1.json").read_text())
    assert record["runner"]["inputs"] == [
        {"name": "input", "dtype": "float32", "shape": [2, 3, 128, 128]}
    ]
    assert record["runner"]["runtime"]["providers"] == ["CPUExecutionProvider"]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["finished_at"] and meta["status_counts"] == {"ok": 8}
    assert str(sshd.user_key) in json.dumps(meta["devices"])  # the path, never a secret
    # a second run finds the models on the device already: nothing is pushed again
    results_again, _, run_dir_again = run(plan)
    pushed = [
        json.loads(p.read_text())["controller"]["model_pushed"]
        for p in (run_dir_again / "jobs").glob("*.json")
    ]
    assert pushed and not any(pushed)
    assert (results_again["status"] == "ok").all()


def test_adaptive_stop_rule(workspace: Path) -> None:
    add_local_device(workspace)
    plan = write_plan(
        workspace,
        """models = ["tiny_mbv2"]
[measure]
warmup = 5
min_iterations = 30
max_iterations = 400
target_ci = 0.5
max_seconds = 20
[inputs]
dims = { batch = 1 }
""",
    )
    results, _, run_dir = run(plan)
    row = results.iloc[0]
    assert row["status"] == "ok"
    assert row["stop_reason"] == "ci"  # ±50 % is reached at the first check
    assert row["n"] == 30


def test_failures_are_recorded_and_the_other_jobs_go_on(workspace: Path, sshd: SSHServer) -> None:
    """A corrupt model, a missing dynamic dimension and an unreachable device in one run."""
    add_local_device(workspace)
    add_ssh_device(workspace, sshd)
    add_ssh_device(workspace, sshd, name="offline", port=free_port(), connect_timeout_s=2)
    corrupt = workspace / "models" / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf" * 50)
    (workspace / "models" / "corrupt.toml").write_text('file = "corrupt.onnx"\n')
    plan = write_plan(
        workspace,
        """devices = ["loop", "offline", "local"]
models = ["corrupt", "tiny_mbv2", "face_detection_short_range"]
variants = ["fp32"]
[measure]
warmup = 1
iterations = 10
""",
    )
    results, _, run_dir = run(plan)
    by_job = results.set_index("job_id")
    for device in ("loop", "local"):
        corrupt_row = by_job.loc[f"{device}.corrupt.fp32.cpu.t1"]
        assert corrupt_row["status"] == "error"
        assert "while running the job" in corrupt_row["error"]
        assert "protobuf" in corrupt_row["error"].lower() or "load model" in corrupt_row["error"]
        dynamic = by_job.loc[f"{device}.tiny_mbv2.fp32.cpu.t1"]
        assert dynamic["status"] == "error"
        assert "axis 0 is dynamic ('batch')" in dynamic["error"]
        assert "dims = { batch = N }" in dynamic["error"]
        assert by_job.loc[f"{device}.face_detection_short_range.fp32.xnnpack.t1", "status"] == "ok"
    offline = results[results["device"] == "offline"]
    assert len(offline) == 3 and (offline["status"] == "skipped").all()
    assert offline["error"].str.contains("connection refused").all()
    assert len(list((run_dir / "jobs").glob("*.json"))) == 9


def test_hanging_runner_is_killed_on_the_device(workspace: Path, sshd: SSHServer) -> None:
    add_ssh_device(workspace, sshd)
    plan = write_plan(
        workspace,
        """devices = ["loop"]
models = ["face_detection_short_range"]
[measure]
warmup = 0
iterations = 100000000
timeout_s = 2
""",
    )
    started = time.monotonic()
    results, _, run_dir = run(plan)
    assert time.monotonic() - started < 30
    row = results.iloc[0]
    assert row["status"] == "timeout"
    assert "timed out after 2 s and was killed" in row["error"]
    # the job's processes (an exec'd runner, or a persistent runner's child: named by its
    # .running file) and the persistent runner itself are gone once the run ends
    wait_until(lambda: not leftovers(workspace / "loop-device"), 5, "the job's end")
    assert pids_matching(f"jobs/{run_dir.name}/") == []


def test_cli_run_show_and_a_run_killed_half_way(workspace: Path) -> None:
    add_local_device(workspace)
    plan = write_plan(
        workspace,
        """models = ["face_detection_short_range", "tiny_mbv2"]
variants = ["fp32"]
[measure]
warmup = 1
iterations = 20
[runtime]
threads = [1, 2]
[inputs]
dims = { batch = 1 }
""",
    )
    runs_dir = workspace / "reports" / "runs"
    env = {**os.environ, "HARNESS_RUNS_DIR": str(runs_dir)}
    done = subprocess.run(
        [BIN / "harness", "run", str(plan)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tiny_mbv2" in done.stdout and "run directory:" in done.stdout
    # piped: a line per finished job, counted, with an ETA until the last
    finished = [ln for ln in done.stdout.splitlines() if re.match(r"\[\d/4\] local\.", ln)]
    assert [ln[:5] for ln in finished] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert "ETA" in finished[0] and "ETA" not in finished[-1]
    shown = subprocess.run(
        [BIN / "harness", "show", "latest"], capture_output=True, text=True, env=env, timeout=60
    )
    assert shown.returncode == 0 and "face_detection_short_range" in shown.stdout
    # 120 columns off a terminal: nothing cut, nothing wider
    assert max(len(line) for line in shown.stdout.splitlines()) <= 120 and "…" not in shown.stdout

    # a run killed after its first job: the finished job is on disk and `show` reads it
    slow = write_plan(
        workspace,
        """models = ["face_detection_short_range"]
[measure]
warmup = 1
iterations = 2000
[runtime]
threads = [1, 2, 3]
""",
        name="slow",
    )
    proc = subprocess.Popen(
        [BIN / "harness", "run", str(slow)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 120
    jobs: list[Path] = []
    while time.monotonic() < deadline and not jobs:
        jobs = list(runs_dir.glob("*-slow-*/jobs/*.json"))
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert jobs, "no job finished within 120 s"
    run_dir = jobs[0].parent.parent
    assert not (run_dir / "results.parquet").exists()
    shown = subprocess.run(
        [BIN / "harness", "show", run_dir.name], capture_output=True, text=True, env=env, timeout=60
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "did not finish" in shown.stdout
    assert " ok " in shown.stdout

    # resumed: only the missing jobs run; the finished ones are kept byte for byte
    kept = {p.name: p.read_bytes() for p in (run_dir / "jobs").glob("*.json")}
    resumed = subprocess.run(
        [BIN / "harness", "run", str(slow), "--resume", run_dir.name],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(kept)} already finished (kept as they are)" in resumed.stdout
    after = {p.name: p.read_bytes() for p in (run_dir / "jobs").glob("*.json")}
    assert len(after) == 3 and all(after[name] == data for name, data in kept.items())
    assert len(pd.read_parquet(run_dir / "results.parquet")) == 3
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["finished_at"] and len(meta["resumed_at"]) == 1
    assert meta["status_counts"] == {"ok": 3}
    wrong = subprocess.run(
        [BIN / "harness", "run", str(plan), "--resume", run_dir.name],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert wrong.returncode == 2 and "was made by plan 'slow'" in wrong.stdout


@pytest.mark.parametrize("bad", ["missing_model", "unknown_device"])
def test_bad_plans_fail_before_any_job(workspace: Path, bad: str) -> None:
    body = (
        'models = ["nope"]\n'
        if bad == "missing_model"
        else 'devices = ["ghost"]\nmodels = ["tiny_mbv2"]\n'
    )
    plan = write_plan(workspace, body)
    done = subprocess.run(
        [BIN / "harness", "run", str(plan)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    expected = (
        "model 'nope' has no manifest" if bad == "missing_model" else "unknown device(s) ['ghost']"
    )
    assert expected in done.stdout
    assert str(plan) in done.stdout


@pytest.mark.parametrize("main_thread", [True, False], ids=["to-main-thread", "to-a-device-thread"])
def test_ctrl_c_stops_the_current_job_and_keeps_the_finished(
    workspace: Path, main_thread: bool
) -> None:
    """Whichever of the controller's threads the kernel hands the signal to (CI once gave
    it to a device thread: the run went on to the end), the running job stops."""
    add_local_device(workspace)
    # every job measures for 3 s (a CI target no job reaches): the next job is still
    # running when the first one's record appears
    plan = write_plan(
        workspace,
        """models = ["face_detection_short_range"]
[measure]
warmup = 1
target_ci = 0.000001
max_seconds = 3
max_iterations = 10000000
[runtime]
threads = [1, 2, 3, 4]
""",
        name="interrupted",
    )
    runs_dir = workspace / "reports" / "runs"
    proc = subprocess.Popen(
        [BIN / "harness", "run", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a shell's background job starts with SIGINT ignored (and so would the harness)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(runs_dir.glob("*/jobs/*.json")):
        time.sleep(0.02)
    signal_thread(proc.pid, signal.SIGINT, main_thread=main_thread)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted (Ctrl-C)" in output and "--resume" in output
    statuses = [json.loads(p.read_text())["status"] for p in runs_dir.glob("*/jobs/*.json")]
    # the job running at the signal is stopped, not finished: recorded `interrupted`
    assert statuses.count("ok") >= 1 and len(statuses) < 4, statuses
    assert set(statuses) <= {"ok", "interrupted"} and statuses.count("interrupted") <= 1


def test_every_strategy_with_accuracy_over_ssh(workspace: Path, sshd: SSHServer) -> None:
    """The digits CNN and all its built variants on the SSH device, plus one variant that
    cannot be built: accuracy and agreement are filled, the failure is recorded alone."""
    add_ssh_device(workspace, sshd)
    manifest = workspace / "models" / "digits_cnn.toml"
    manifest.write_text(
        manifest.read_text()
        + '\n[[variants]]\nname = "impossible"\nstrategy = "low-rank"\nparams = { rank = 1000 }\n'
    )
    plan = write_plan(
        workspace,
        """devices = ["loop"]
models = ["digits_cnn"]
[measure]
warmup = 2
iterations = 30
[inputs]
dims = { batch = 1 }
""",
    )
    results, _, run_dir = run(plan)
    by_variant = results.set_index("variant")
    assert set(by_variant.index) == {
        "fp32", "fp16", "int8-dynamic", "int8-static", "sparse-60", "channels-10",
        "lowrank-e95", "impossible",
    }  # fmt: skip
    impossible = by_variant.loc["impossible"]
    assert impossible["status"] == "error" and "variant not built" in impossible["error"]
    assert "saves nothing" in impossible["error"]
    ok = by_variant.drop(index="impossible")
    assert (ok["status"] == "ok").all(), ok["error"].to_dict()
    assert (ok["eval_n"] == 360).all()
    assert ok["accuracy"].notna().all() and ok["top1_agreement"].notna().all()
    assert ok.loc["fp32", "accuracy"] == pytest.approx(0.9694, abs=1e-3)
    assert ok.loc["fp32", "top1_agreement"] == 1.0 and ok.loc["fp32", "max_abs_dev"] == 0.0
    for variant in ("fp16", "int8-static"):
        assert abs(ok.loc[variant, "accuracy"] - ok.loc["fp32", "accuracy"]) <= 0.02
    assert ok.loc["int8-static", "calibration"].startswith("calibration set digits_calib.npz")
    assert ok.loc["sparse-60", "sparsity"] == pytest.approx(0.6, abs=0.01)
    assert ok.loc["sparse-60", "gzip_bytes"] < ok.loc["fp32", "model_bytes"]
    assert ok.loc["channels-10", "model_bytes"] < ok.loc["fp32", "model_bytes"]
    assert (ok["max_abs_dev"] >= 0).all()
    shown = harness("show", run_dir, "--compare")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "digits_cnn on loop" in shown.stdout and "speedup" in shown.stdout


def test_jobs_repeat_in_fresh_processes_interleaved(workspace: Path) -> None:
    add_local_device(workspace)
    plan = write_plan(
        workspace,
        """models = ["digits_cnn"]
variants = ["fp32", "fp16"]
[measure]
warmup = 2
iterations = 25
processes = 3
[inputs]
dims = { batch = 1 }
""",
    )
    results, samples, run_dir = run(plan)
    assert (results["n"] == 75).all() and (results["processes"] == 3).all()
    assert results["process_p50_spread"].notna().all()
    assert (results["eval_n"] == 360).all()  # accuracy measured once, in the first process
    record = json.loads((run_dir / "jobs" / "local.digits_cnn.fp16.cpu.t1.json").read_text())
    assert [p["n"] for p in record["runner"]["processes"]] == [25, 25, 25]
    assert len(record["controller"]["run_s_per_process"]) == 3
    assert len(samples) == 150


def test_a_plan_mixing_local_ssh_and_a_phone_lands_in_one_table(
    workspace: Path, sshd: SSHServer, phones: StandinPhones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The phone is the stand-in adb serving a sandbox; its benchmark_model a stand-in that
    times the model with LiteRT (tests/standin/benchmark_model.py), pushed by content hash,
    run under taskset, its output parsed into the same result schema."""
    add_local_device(workspace)
    add_ssh_device(workspace, sshd)
    tool = workspace / "tools" / "benchmark_model"
    tool.parent.mkdir()
    tool.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN_DIR}/benchmark_model.py" "$@"\n')
    # the stand-in phone's shell is this machine's: its `dumpsys` prints a recorded output
    dumpsys = workspace / "phone-bin" / "dumpsys"
    dumpsys.parent.mkdir()
    battery = FIXTURES / "dumpsys_battery" / "samsung_usb_charging.txt"
    dumpsys.write_text(f'#!/bin/sh\n[ "$1" = battery ] && exec cat "{battery}"\nexit 1\n')
    dumpsys.chmod(0o755)
    monkeypatch.setenv("PATH", f"{dumpsys.parent}{os.pathsep}{os.environ['PATH']}")
    # its battery: 1 A at 4 V while discharging (a sysfs tree the phone's shell reads)
    battery = workspace / "phone-sys" / "class" / "power_supply" / "battery"
    battery.mkdir(parents=True)
    for name, value in (("current_now", "-1000000"), ("voltage_now", "4000000"),
                        ("status", "Discharging")):  # fmt: skip
        (battery / name).write_text(value + "\n")
    (workspace / "devices" / "pixel.toml").write_text(
        phones.device_toml(
            "pixel",
            phones.serials[0],
            cores="0",
            power="android-battery",
            sysfs_root=str(workspace / "phone-sys"),
            power_idle_s=0.5,
        )
        + f'[placement.binaries.benchmark_model]\nlocal = "{tool}"\n'
    )
    plan = write_plan(
        workspace,
        """devices = ["local", "loop", "pixel"]
models = ["face_detection_short_range", "tiny_mbv2"]
variants = ["fp32"]
[measure]
warmup = 3
iterations = 30
[inputs]
dims = { batch = 1 }
""",
    )
    results, samples, run_dir = run(plan)
    by_device = results.set_index("job_id")
    phone_tflite = by_device.loc["pixel.face_detection_short_range.fp32.xnnpack.t1"]
    assert phone_tflite["status"] == "ok", phone_tflite["error"]
    assert phone_tflite["transport"] == "adb" and phone_tflite["n"] == 30
    assert 0 < phone_tflite["min_ms"] <= phone_tflite["p50_ms"] <= phone_tflite["max_ms"]
    assert phone_tflite["ci_method"] == "none (tool summary)"
    assert "summary statistics only" in phone_tflite["warnings"]
    assert phone_tflite["load_ms"] > 0 and phone_tflite["model_mem_mb"] is not None
    # benchmark_model printed only its memory delta: the peak is its process's VmHWM, read
    # from /proc/<pid>/status beside it (a LiteRT process: tens of MB, not the delta)
    assert phone_tflite["peak_rss_mb"] > max(20.0, phone_tflite["model_mem_mb"])
    # the ONNX model needs onnxruntime_perf_test, which this phone lacks: said, and the rest ran
    phone_onnx = by_device.loc["pixel.tiny_mbv2.fp32.cpu.t1"]
    assert phone_onnx["status"] == "error"
    assert "has no onnxruntime_perf_test" in phone_onnx["error"]
    others = results[results["device"] != "pixel"]
    assert len(others) == 4 and (others["status"] == "ok").all(), others["error"].tolist()
    assert set(results["transport"]) == {"local", "ssh", "adb"}
    seen = json.loads((phones.root / "benchmark_model.argv.json").read_text())
    argv = seen["argv"]
    assert seen["cpus"] == [0]  # `cores = "0"` reached it through taskset
    assert (
        phone_tflite["cores"] == "0" and results[results["device"] != "pixel"]["cores"].isna().all()
    )
    assert "--num_threads=1" in argv and "--num_runs=30" in argv and "--warmup_runs=3" in argv
    assert "--use_xnnpack=true" in argv
    pushed = list((phones.root / "data/local/tmp/harness/bin").iterdir())
    assert [p.stat().st_mode & 0o111 for p in pushed] == [0o111]
    # no per-run samples from the tool: the phone's job has none in samples.parquet
    assert not (samples["job_id"] == phone_tflite.name).any()
    # its state was read around the tool: charging over USB, said in the table
    assert "the phone was charging (before and after the job)" in phone_tflite["warnings"]
    stored = json.loads((run_dir / "jobs" / f"{phone_tflite.name}.json").read_text())
    assert stored["runner"]["state"]["before"]["battery"]["plugged"] == ["usb"]
    assert stored["runner"]["tool"]["extra"]["peak_memory_from"] == "/proc/<pid>/status VmHWM"
    # power polled through adb beside the tool: 4 W idle (the idle window is held open
    # until it has its readings, however slow the polls) and running, nothing above idle
    power = pd.read_parquet(run_dir / "power.parquet")
    phases = power[power["job_id"] == phone_tflite.name]["phase"].value_counts()
    assert phases["idle"] >= 3
    assert phone_tflite["idle_power_w"] == pytest.approx(4.0)
    if phases.get("timed", 0) >= 3:
        assert phone_tflite["avg_power_w"] == pytest.approx(4.0)
        assert abs(phone_tflite["energy_mj"]) < 1e-6
        assert "an upper bound per inference" in phone_tflite["warnings"]
    else:  # a short tool run between slow polls: no figure, and the row says why
        assert pd.isna(phone_tflite["avg_power_w"]) and pd.isna(phone_tflite["energy_mj"])
        assert "the timed window" in phone_tflite["warnings"]


def test_trtexec_on_an_ssh_device_keeps_its_trace_as_samples(
    workspace: Path, sshd: SSHServer
) -> None:
    """A Jetson-like SSH device with `binaries.trtexec` (a stand-in that times with
    onnxruntime, tests/standin/trtexec.py): argv from the plan, the --exportTimes trace
    fetched back and stored as the job's raw samples."""
    tool = workspace / "trtexec"
    tool.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN_DIR}/trtexec.py" "$@"\n')
    tool.chmod(0o755)
    add_ssh_device(workspace, sshd, name="orin")
    with open(workspace / "devices" / "orin.toml", "a") as handle:
        handle.write(f'[placement.binaries.trtexec]\ndevice = "{tool}"\n')
    plan = write_plan(
        workspace,
        """devices = ["orin"]
models = ["tiny_mbv2"]
variants = ["fp32"]
[measure]
iterations = 25
[runtime]
onnx_providers = ["trtexec:fp16"]
[inputs]
dims = { batch = 1 }
""",
    )
    results, samples, _ = run(plan)
    row = results.set_index("job_id").loc["orin.tiny_mbv2.fp32.trtexec-fp16.t1"]
    assert row["status"] == "ok", row["error"]
    assert row["runtime"] == "tensorrt" and row["runtime_version"] == "8.6.1"
    assert row["n"] == 25 and row["p50_ci_low_ms"] <= row["p50_ms"] <= row["p50_ci_high_ms"]
    assert (samples["job_id"] == row.name).sum() == 25
    assert row["peak_rss_mb"] > 20  # trtexec prints no memory: its process's VmHWM
