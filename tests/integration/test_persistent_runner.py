"""The persistent runner (harness/runner/persistent.py, harness/execute/persistent_runner.py)
on real devices: the local device, a real sshd on loopback, and the stand-in adb phone.

One runner stays for the device session and forks a child per process; it dying mid-job
is a link fault (the job retried, a new runner started); a child that segfaults is its
job's error, never the session's; a runner of another version is never used; a phone whose
shell gives its commands no stdin runs exec-per-job. Each device file here asks for the
persistent mode, so these run whatever the suite's HARNESS_RUNNER_MODE.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    HARNESS,
    SSHServer,
    StandinPhones,
    job_processes,
    persistent_runners,
    wait_until,
    watching,
)
from device_files import local_device_file

from harness.deploy import runner_hash, runner_source
from harness.runner.persistent import RUNNER_FILES

PERSISTENT = {"runner_mode": "persistent", "retries": 2, "retry_backoff_s": 0.2}


@pytest.fixture(params=["local", "ssh"])
def device(request: pytest.FixtureRequest, workspace: Path, sshd: SSHServer) -> Path:
    """`dut`, the local device or one over loopback SSH: its workdir."""
    workdir = workspace / "dut-workdir"
    if request.param == "local":
        text = local_device_file(workdir, name="dut", **PERSISTENT)
    else:
        text = sshd.device_toml("dut", workdir, **PERSISTENT)
    (workspace / "devices" / "dut.toml").write_text(text)
    return workdir


def write_plan(workspace: Path, iterations: int, threads: str = "[1]", processes: int = 1) -> Path:
    plan = workspace / "plans" / "stay.toml"
    plan.write_text(
        'name = "stay"\ndevices = ["dut"]\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n'
        f"[measure]\nwarmup = 1\niterations = {iterations}\ntimeout_s = 600\n"
        f"processes = {processes}\n[runtime]\nthreads = {threads}\n[inputs]\ndims = {{ batch = 1 }}\n"
    )
    return plan


def start_run(workspace: Path, plan: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(HARNESS), "run", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workspace,
    )


def records(workspace: Path) -> dict[str, dict]:
    [run_dir] = (workspace / "reports" / "runs").iterdir()
    return {p.stem: json.loads(p.read_text()) for p in (run_dir / "jobs").glob("*.json")}


def finished(run: subprocess.Popen[str]) -> str:
    try:
        output, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    return output


def test_one_runner_serves_the_session_and_forks_a_fresh_child_per_process(
    workspace: Path, device: Path
) -> None:
    plan = write_plan(workspace, 200, threads="[1, 2]", processes=3)
    with watching(device) as seen:
        run = start_run(workspace, plan)
        output = finished(run)
    assert run.returncode == 0, output
    jobs = records(workspace)
    assert sorted(jobs) == ["dut.tiny_mbv2.fp32.cpu.t1", "dut.tiny_mbv2.fp32.cpu.t2"]
    for record in jobs.values():
        assert record["status"] == "ok", record["error"]
        assert record["runner"]["process"] == "forked"
        assert [p["n"] for p in record["runner"]["processes"]] == [200, 200, 200]
        assert all(p["start_ms"] < 1000 for p in record["runner"]["processes"])
    assert len(seen.runners) == 1, seen  # six processes, one runner
    assert seen.most_jobs == 1
    assert persistent_runners(device) == [] and job_processes(device) == []  # it ended


def test_a_runner_killed_mid_job_is_a_link_fault_the_job_retried_on_a_new_runner(
    workspace: Path, device: Path
) -> None:
    plan = write_plan(workspace, 6000)
    with watching(device) as seen:
        run = start_run(workspace, plan)
        wait_until(lambda: job_processes(device), 120, "the job's start")
        [child] = job_processes(device)
        [runner] = persistent_runners(device)
        os.kill(runner, signal.SIGKILL)
        # the child's watchdog sees its runner gone, and ends it
        wait_until(lambda: not Path(f"/proc/{child}").exists(), 60, "the orphaned child's end")
        output = finished(run)
    assert run.returncode == 0, output
    [record] = records(workspace).values()
    assert record["status"] == "ok", record["error"]
    assert record["controller"]["attempts"] == 2
    assert len(record["runner"]["processes"]) == 1 and len(record["latencies_ns"]) == 6000
    assert len(seen.runners) == 2 and runner in seen.runners  # a new one was started
    assert seen.most_jobs == 1


def test_a_child_that_segfaults_is_its_jobs_error_and_the_runner_stays(
    workspace: Path, device: Path
) -> None:
    plan = write_plan(workspace, 6000, threads="[1, 2]")
    with watching(device) as seen:
        run = start_run(workspace, plan)
        wait_until(lambda: job_processes(device), 120, "the first job's start")
        [child] = job_processes(device)
        os.kill(child, signal.SIGSEGV)  # as a crash in the runtime would end it
        output = finished(run)
    assert run.returncode == 1, output
    jobs = records(workspace)
    crashed, other = jobs["dut.tiny_mbv2.fp32.cpu.t1"], jobs["dut.tiny_mbv2.fp32.cpu.t2"]
    assert crashed["status"] == "error"
    assert "was killed by SIGSEGV" in crashed["error"], crashed["error"]
    assert "attempts" not in crashed["controller"]  # the job's own failure: never retried
    assert other["status"] == "ok", other["error"]
    assert len(seen.runners) == 1  # the session's runner served both


def test_a_runner_of_another_version_is_never_used(workspace: Path) -> None:
    workdir = workspace / "dut-workdir"
    (workspace / "devices" / "dut.toml").write_text(
        local_device_file(workdir, name="dut", **PERSISTENT)
    )
    installed = workdir / "runner" / runner_hash()  # where this controller's version goes
    installed.mkdir(parents=True)
    for name in RUNNER_FILES:
        (installed / name).write_bytes(runner_source(name))
    with (installed / "measure.py").open("a") as handle:
        handle.write("\n# changed on the device\n")
    output = finished(start_run(workspace, write_plan(workspace, 50)))
    [record] = records(workspace).values()
    assert record["status"] == "error"
    assert f"this controller's is {runner_hash()}" in record["error"], record["error"]
    assert "Remove that folder" in record["error"]
    assert "no job" not in output


def phone_file(phones: StandinPhones) -> str:
    return phones.device_toml(
        "dut", phones.serials[0], runner="python", python=sys.executable, **PERSISTENT
    )


def test_a_phone_keeps_a_persistent_runner_through_adb_and_a_killed_one_is_replaced(
    workspace: Path, phones: StandinPhones
) -> None:
    (workspace / "devices" / "dut.toml").write_text(phone_file(phones))
    workdir = phones.root / "data/local/tmp/harness"
    with watching(workdir) as seen:
        run = start_run(workspace, write_plan(workspace, 6000))
        wait_until(lambda: job_processes(workdir), 120, "the job's start")
        os.kill(persistent_runners(workdir)[0], signal.SIGKILL)
        output = finished(run)
    assert run.returncode == 0, output
    [record] = records(workspace).values()
    assert record["status"] == "ok", record["error"]
    assert record["runner"]["process"] == "forked" and record["controller"]["attempts"] == 2
    assert len(seen.runners) == 2
    wait_until(lambda: not persistent_runners(workdir), 30, "the runner's end with the run")


def test_a_phone_whose_shell_closes_stdin_runs_exec_per_job(
    workspace: Path, phones: StandinPhones, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_ADB_LEGACY", "1")  # an old adbd: no shell protocol v2
    (workspace / "devices" / "dut.toml").write_text(phone_file(phones))
    run = start_run(workspace, write_plan(workspace, 50, processes=2))
    output = finished(run)
    assert run.returncode == 0, output
    [record] = records(workspace).values()
    assert record["status"] == "ok", record["error"]
    assert record["runner"]["process"] == "exec"
    assert "stdin closed" in record["controller"]["runner_fallback"]
    assert [p["n"] for p in record["runner"]["processes"]] == [50, 50]
