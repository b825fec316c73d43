"""A controller that dies or is stopped must leave nothing running on its device.

Against the real sshd on loopback (the device is this machine, so its processes are
visible in /proc): a controller killed with SIGKILL mid-job, whose exec'd runner must end
itself at its deadline, and whose persistent runner ends the job at once (its channel
closed); `--resume` after such a death, which must end the orphan before it runs the job
again (never two runners at once, one record per job); and SIGTERM, which must stop the
job on the device, record it `interrupted`, release the lease and exit 143.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import (
    SSHServer,
    job_processes,
    job_started,
    leftovers,
    signal_thread,
    wait_until,
    watching,
)

BIN = Path(sys.executable).parent


def setup(
    workspace: Path, sshd: SSHServer, iterations: int, timeout_s: int, **device: object
) -> tuple[Path, Path]:
    workdir = workspace / "loop-device"
    (workspace / "devices" / "loop.toml").write_text(sshd.device_toml("loop", workdir, **device))
    return write_plan(workspace, iterations, timeout_s), workdir


def write_plan(workspace: Path, iterations: int, timeout_s: int) -> Path:
    plan = workspace / "plans" / "death.toml"
    plan.write_text(
        'name = "death"\ndevices = ["loop"]\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n'
        f"[measure]\nwarmup = 1\niterations = {iterations}\ntimeout_s = {timeout_s}\n"
        "[runtime]\nthreads = [1, 2]\n[inputs]\ndims = { batch = 1 }\n"
    )
    return plan


def start_run(workspace: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "harness"), "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workspace,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def ended(controller: subprocess.Popen[str]) -> str:
    """Kill it if it still runs; what it printed (its pipe closed)."""
    controller.kill()
    output, _ = controller.communicate(timeout=60)
    return output


def signalled_mid_job(
    workspace: Path, plan: Path, workdir: Path, signum: signal.Signals, main_thread: bool = True
) -> tuple[int, str]:
    """Run the plan, send the controller `signum` (to its main thread or another one) once
    its first job runs on the device (its sampler is up); its exit status and output."""
    controller = start_run(workspace, str(plan))
    try:
        wait_until(lambda: job_started(workdir), 120, "the job's start")
        signal_thread(controller.pid, signum, main_thread=main_thread)
        output, _ = controller.communicate(timeout=120)
    finally:
        ended(controller)
    return controller.returncode, output


def test_an_execd_runner_outliving_its_killed_controller_ends_at_its_deadline(
    workspace: Path, sshd: SSHServer
) -> None:
    plan, workdir = setup(workspace, sshd, iterations=100_000_000, timeout_s=5, runner_mode="exec")
    # SIGKILL: no handler runs, the SSH connection just drops
    signalled_mid_job(workspace, plan, workdir, signal.SIGKILL)
    started = time.monotonic()
    assert job_processes(workdir), "the runner should outlive the controller"
    # its deadline is the job's 5 s timeout + RUNNER_DEADLINE_MARGIN_S (15 s)
    wait_until(lambda: not leftovers(workdir), 120, "the orphaned runner's and sampler's end")
    assert time.monotonic() - started >= 5  # it ran on until its deadline, not before


def test_a_persistent_runner_whose_controller_is_killed_ends_the_job_at_once(
    workspace: Path, sshd: SSHServer
) -> None:
    plan, workdir = setup(
        workspace, sshd, iterations=100_000_000, timeout_s=600, runner_mode="persistent"
    )
    signalled_mid_job(workspace, plan, workdir, signal.SIGKILL)
    # the dropped connection closes the runner's stdin: it ends its child and itself, long
    # before the job's deadline (615 s)
    took_s = wait_until(lambda: not leftovers(workdir), 60, "the job's and the runner's end")
    assert took_s < 60


def test_resume_after_a_killed_controller_ends_the_orphan_first(
    workspace: Path, sshd: SSHServer
) -> None:
    # exec-per-job: its runner outlives the killed controller (a persistent one would not)
    plan, workdir = setup(
        workspace, sshd, iterations=100_000_000, timeout_s=600, runner_mode="exec"
    )
    signalled_mid_job(workspace, plan, workdir, signal.SIGKILL)
    [orphan] = job_processes(workdir)
    [run_dir] = (workspace / "reports" / "runs").iterdir()
    write_plan(workspace, iterations=50, timeout_s=120)  # the same plan, a finishing job
    with watching(workdir) as seen:
        resumed = start_run(workspace, str(plan), "--resume", run_dir.name)
        output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "ended 1 runner(s) that a previous controller left running" in output
    assert "loop.tiny_mbv2.fp32.cpu.t1" in output
    assert not Path(f"/proc/{orphan}").exists()
    assert seen.most_jobs == 1  # the orphan was ended before the job ran again
    records = [json.loads(p.read_text()) for p in (run_dir / "jobs").glob("*.json")]
    assert sorted(r["job_id"] for r in records) == [
        "loop.tiny_mbv2.fp32.cpu.t1",
        "loop.tiny_mbv2.fp32.cpu.t2",
    ]
    assert {r["status"] for r in records} == {"ok"}
    assert not leftovers(workdir)
    assert not list((workdir / "jobs").glob("*/*")), "old job specs are cleared"


def test_sigterm_stops_the_job_records_it_interrupted_and_releases_the_lease(
    workspace: Path, sshd: SSHServer
) -> None:
    plan, workdir = setup(workspace, sshd, iterations=100_000_000, timeout_s=600)
    # to a device thread: the main thread must notice a signal it was not handed
    code, output = signalled_mid_job(workspace, plan, workdir, signal.SIGTERM, main_thread=False)
    assert code == 143, output
    assert "interrupted (SIGTERM)" in output and "--resume" in output
    assert not leftovers(workdir)
    assert not (workdir / ".harness-lease").exists()
    [run_dir] = (workspace / "reports" / "runs").iterdir()
    [record] = [json.loads(p.read_text()) for p in (run_dir / "jobs").glob("*.json")]
    assert record["status"] == "interrupted" and "--resume" in record["error"]
    write_plan(workspace, iterations=50, timeout_s=120)
    resumed = start_run(workspace, str(plan), "--resume", run_dir.name)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    statuses = {
        p.stem: json.loads(p.read_text())["status"] for p in (run_dir / "jobs").glob("*.json")
    }
    assert statuses == {"loop.tiny_mbv2.fp32.cpu.t1": "ok", "loop.tiny_mbv2.fp32.cpu.t2": "ok"}
    assert list((run_dir / "jobs" / "superseded").glob("*.json")), "the interrupted record is kept"


def test_a_second_ctrl_c_still_records_the_job_and_releases_the_lease(
    workspace: Path, sshd: SSHServer
) -> None:
    """An impatient user presses Ctrl-C twice: the second must not cut short what the first
    started (the job killed on the device, recorded `interrupted`, the lease released)."""
    plan, workdir = setup(workspace, sshd, iterations=100_000_000, timeout_s=600)
    controller = start_run(workspace, str(plan))
    try:
        wait_until(lambda: job_started(workdir), 120, "the job's start")
        signal_thread(controller.pid, signal.SIGINT, main_thread=True)
        time.sleep(0.3)  # the user's second press, 0.3 s later (what is tested, not a wait)
        signal_thread(controller.pid, signal.SIGINT, main_thread=True)
        output, _ = controller.communicate(timeout=120)
    finally:
        ended(controller)
    assert controller.returncode == 130, output
    assert "interrupted (Ctrl-C)" in output and "Traceback" not in output, output
    assert not leftovers(workdir)
    assert not (workdir / ".harness-lease").exists()
    [run_dir] = (workspace / "reports" / "runs").iterdir()
    [record] = [json.loads(p.read_text()) for p in (run_dir / "jobs").glob("*.json")]
    assert record["status"] == "interrupted" and "--resume" in record["error"]
