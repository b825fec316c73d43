"""Faults of a device lab, each against real parts: devices in network namespaces with a
real sshd (tests/netlab.py), links taken down, sshd killed, a full disk, two controllers.
For each: what happened to which job is recorded, finished jobs are on disk, and no
process of ours is left running on the device.

The other faults of the list are tested beside the features they exercise: a runner that
hangs past its timeout (test_run_end_to_end: test_hanging_runner_is_killed_on_the_device),
a controller killed with SIGKILL and --resume (test_cli_run_show_and_a_run_killed_half_way),
a changed host key (test_ssh_transport: test_changed_host_key_is_refused_and_nothing_runs).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import SSHServer, job_processes, wait_until
from netlab import LabDevice, NetLab, can_make_namespaces, delaying_proxy, netlab
from typer.testing import CliRunner

from harness.cli import app
from harness.records import JobRecord
from harness.scheduler import JobEvent, PreparedRun, prepare_run, run_prepared

FAST_RETRIES = {"retries": 4, "retry_backoff_s": 0.5, "io_timeout_s": 2, "connect_timeout_s": 2}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetLab]:
    reason = can_make_namespaces()
    if reason:
        pytest.skip(f"the network-namespace lab cannot run here: {reason}")
    folder = tmp_path / "lab"
    folder.mkdir()
    with netlab(folder, 2) as made:
        yield made


def add_lab_device(
    workspace: Path, lab: NetLab, device: LabDevice, name: str, **extra: object
) -> None:
    (workspace / "devices" / f"{name}.toml").write_text(device.device_toml(lab, name, **extra))


def write_plan(workspace: Path, devices: list[str], models: list[str], iterations: int) -> Path:
    plan = workspace / "plans" / "faults.toml"
    plan.write_text(
        f'name = "faults"\ndevices = {devices!r}\nmodels = {models!r}\nvariants = ["fp32"]\n'
        f"[measure]\nwarmup = 1\niterations = {iterations}\ntimeout_s = 120\n"
        "[inputs]\ndims = { batch = 1 }\n"
    )
    return plan


def run_with(
    plan: Path, during: Callable[[], None] | None = None, prepared: PreparedRun | None = None
) -> tuple[list[JobRecord], list[JobEvent]]:
    """Run the plan (or its `prepared` run); `during` runs in a thread beside it (the fault)."""
    events: list[JobEvent] = []
    prepared = prepared or prepare_run(plan)
    fault = threading.Thread(target=during) if during else None
    if fault:
        fault.start()
    try:
        records = run_prepared(prepared, on_event=events.append)
    finally:
        if fault:
            fault.join()
    return records, events


def wait_for_runner(lab: NetLab, device: LabDevice, timeout_s: float = 60) -> None:
    """Until a job's runner runs there (not the facts probe of the health check): an
    exec'd runner or a persistent runner's child, named by the job's `.running` file."""
    wait_until(lambda: job_processes(device.root / "workdir"), timeout_s, "the job's runner")


def test_a_device_unreachable_from_the_start_is_skipped_and_the_others_run(
    workspace: Path, lab: NetLab
) -> None:
    first, second = lab.devices
    add_lab_device(
        workspace, lab, first, "down", retries=1, retry_backoff_s=0.2, connect_timeout_s=2
    )
    add_lab_device(workspace, lab, second, "up")
    lab.link_down(first)
    plan = write_plan(workspace, ["down", "up"], ["tiny_mbv2"], 20)
    result = CliRunner().invoke(app, ["run", str(plan)])
    assert result.exit_code == 1, result.output
    assert "down: 1 job(s) skipped" in result.output
    assert "retry 1/1" in result.output or "10.200.1.2" in result.output
    assert "--resume" in result.output  # says how to finish the skipped jobs later
    [run_dir] = [path.parent for path in workspace.rglob("run.json")]
    statuses = {p.stem: p.read_text() for p in (run_dir / "jobs").glob("*.json")}
    assert '"status": "ok"' in statuses["up.tiny_mbv2.fp32.cpu.t1"]
    assert '"status": "skipped"' in statuses["down.tiny_mbv2.fp32.cpu.t1"]
    assert "10.200.1.2" in statuses["down.tiny_mbv2.fp32.cpu.t1"]


def test_a_link_cut_mid_job_is_retried_once_restored(workspace: Path, lab: NetLab) -> None:
    device = lab.devices[0]
    add_lab_device(workspace, lab, device, "flaky", **FAST_RETRIES)
    plan = write_plan(workspace, ["flaky"], ["tiny_mbv2"], 4000)

    def cut() -> None:
        wait_for_runner(lab, device)
        lab.link_down(device)
        time.sleep(4)
        lab.link_up(device)

    started = time.monotonic()
    [record], events = run_with(plan, cut)
    assert record.status == "ok", record.error
    assert record.controller["attempts"] >= 2 and len(record.latencies_ns) == 4000
    retries = [e.message for e in events if e.kind == "retry"]
    assert retries and "stopped answering" in retries[0]
    assert time.monotonic() - started < 90
    assert lab.processes_in(device, "run.py") == []  # the first try's runner was killed


def test_300_ms_of_delay_and_20_percent_loss_slow_the_run_down_but_it_completes(
    workspace: Path, lab: NetLab
) -> None:
    device = lab.devices[0]
    lab.drop_percent(device, 20)
    with delaying_proxy((device.address, 22), 0.15) as port:  # 150 ms each way
        host_key = (lab.root / "host_key.pub").read_text().split()[:2]
        known = lab.root / "known_hosts"
        known.write_text(known.read_text() + f"[127.0.0.1]:{port} {' '.join(host_key)}\n")
        toml = device.device_toml(lab, "far", connect_timeout_s=20, io_timeout_s=120)
        toml = toml.replace(f'host = "{device.address}"', 'host = "127.0.0.1"')
        toml = toml.replace("port = 22", f"port = {port}")
        (workspace / "devices" / "far.toml").write_text(toml)
        plan = write_plan(workspace, ["far"], ["tiny_mbv2"], 20)
        started = time.monotonic()
        [record], _ = run_with(plan)
        slow_s = time.monotonic() - started
    assert record.status == "ok", record.error
    assert len(record.latencies_ns) == 20
    assert slow_s > 10  # ~3 s on a clean link; here ~30 s: every round trip 300 ms more


def test_sshd_killed_mid_job_and_back(workspace: Path, lab: NetLab) -> None:
    device = lab.devices[0]
    add_lab_device(workspace, lab, device, "reboots", **FAST_RETRIES)
    plan = write_plan(workspace, ["reboots"], ["tiny_mbv2"], 4000)

    def kill_and_restart() -> None:
        wait_for_runner(lab, device)
        lab.kill_sshd(device)
        time.sleep(2)
        lab.start_sshd(device)

    [record], events = run_with(plan, kill_and_restart)
    assert record.status == "ok", record.error
    assert record.controller["attempts"] >= 2
    assert any(e.kind == "retry" for e in events)
    assert lab.processes_in(device, "run.py") == []


def test_a_device_that_stays_down_is_quarantined(workspace: Path, lab: NetLab) -> None:
    first, second = lab.devices
    add_lab_device(workspace, lab, first, "dies", retries=1, retry_backoff_s=0.2, io_timeout_s=2)
    add_lab_device(workspace, lab, second, "fine")
    plan = write_plan(
        workspace, ["dies", "fine"], ["tiny_mbv2", "face_detection_short_range"], 3000
    )

    def kill() -> None:
        wait_for_runner(lab, first)
        lab.kill_sshd(first)

    prepared = prepare_run(plan)
    records, events = run_with(plan, kill, prepared)
    by_job = {r.job_id: r for r in records}
    # lost mid-job is no result of the job: `--resume` runs it again
    lost = by_job["dies.tiny_mbv2.fp32.cpu.t1"]
    assert lost.status == "skipped" and "lost mid-job" in str(lost.error)
    assert "remaining jobs are skipped" in str(lost.error)
    assert lost.job_id not in prepared.store.finished_job_ids()
    skipped = by_job["dies.face_detection_short_range.fp32.xnnpack.t1"]
    assert skipped.status == "skipped" and "quarantined" in str(skipped.error)
    assert [r.status for r in records if r.device == "fine"] == ["ok", "ok"]
    assert any(e.kind == "quarantine" for e in events)


def test_a_full_disk_while_pushing_a_model_is_said_resumable_and_the_next_job_runs(
    workspace: Path, lab: NetLab
) -> None:
    device = lab.devices[0]
    workdir = device.root / "workdir"
    workdir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(workdir)], check=True)
    lab.kill_sshd(device)  # `ip netns exec` copied the mounts when it started sshd: again
    lab.start_sshd(device)
    try:
        add_lab_device(workspace, lab, device, "small")
        plan = write_plan(workspace, ["small"], ["resnet18_like", "tiny_mbv2"], 20)
        records, _ = run_with(plan)
        by_model = {r.model: r for r in records}
        full = by_model["resnet18_like"]
        assert full.status == "skipped" and "no space left in" in str(full.error)
        assert "Free space on the device" in str(full.error) and "--resume" in str(full.error)
        assert by_model["tiny_mbv2"].status == "ok", by_model["tiny_mbv2"].error
        assert not list(workdir.rglob("*.part"))  # no half-written model left behind
    finally:
        subprocess.run(["umount", "-l", str(workdir)], check=False)


def test_two_controllers_on_one_device_take_turns(workspace: Path, sshd: SSHServer) -> None:
    (workspace / "devices" / "shared.toml").write_text(
        sshd.device_toml("shared", workspace / "shared-device", lease_wait_s=120)
    )
    plan = write_plan(workspace, ["shared"], ["tiny_mbv2"], 1500)
    windows: dict[str, list[float]] = {"a": [], "b": []}
    waited: list[str] = []

    def controller(name: str) -> None:
        def on_event(event: JobEvent) -> None:
            if event.kind in ("start", "end"):
                windows[name].append(time.monotonic())
            if event.kind == "waiting":
                waited.append(name)

        run_prepared(prepare_run(plan), on_event=on_event)

    first = threading.Thread(target=controller, args=("a",))
    first.start()
    lease = workspace / "shared-device" / ".harness-lease"
    deadline = time.monotonic() + 60
    while not lease.exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    controller("b")
    first.join()
    assert waited == ["b"]
    (_, a_end), (b_start, _) = windows["a"], windows["b"]
    assert a_end <= b_start  # b's job began only after a's ended: neither disturbed the other
    assert not lease.exists()  # released at the end

    # a controller that may not wait skips the device, saying who holds it
    (workspace / "devices" / "shared.toml").write_text(
        sshd.device_toml("shared", workspace / "shared-device", lease_wait_s=0)
    )
    holder = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "devices", "lock", "shared", "--hours", "1"],
        env={"HARNESS_DEVICES_DIR": str(workspace / "devices"), "PATH": "/usr/bin:/bin",
             "HOME": str(workspace)},
    )  # fmt: skip
    assert holder.wait(60) == 0
    [record], _ = run_with(plan)
    assert record.status == "skipped" and "reserved by" in str(record.error)
    assert "manual" in str(record.error)


def test_a_runner_that_crashes_is_recorded_and_the_next_job_runs(
    workspace: Path, sshd: SSHServer
) -> None:
    """The device's interpreter dies of a real SIGSEGV on one model's job (as a runtime
    that crashes on a model would): that job says so, the others run. Exec-per-job: the
    crash is chosen by the interpreter's argv, which a persistent runner's child does not
    have (its own crash: tests/integration/test_persistent_runner.py)."""
    crashing = workspace / "python-that-crashes"
    crashing.write_text(
        "#!/bin/sh\n"
        'case "$*" in *jobs/*tiny_mbv2*) exec "' + sys.executable + '" -c '
        '"import os, signal; os.kill(os.getpid(), signal.SIGSEGV)";; esac\n'
        'exec "' + sys.executable + '" "$@"\n'
    )
    crashing.chmod(0o755)
    (workspace / "devices" / "crashy.toml").write_text(
        sshd.device_toml(
            "crashy", workspace / "crashy-device", python=str(crashing), runner_mode="exec"
        )
    )
    plan = write_plan(workspace, ["crashy"], ["tiny_mbv2", "face_detection_short_range"], 20)
    records, _ = run_with(plan)
    by_model = {r.model: r for r in records}
    crashed = by_model["tiny_mbv2"]
    assert crashed.status == "error" and "killed by SIGSEGV" in str(crashed.error)
    assert by_model["face_detection_short_range"].status == "ok"
