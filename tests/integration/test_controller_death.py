"""A controller that dies or is stopped must leave nothing running on its device.

Against the real sshd on loopback (the device is this machine, so its processes are
visible in /proc): a controller killed with SIGKILL mid-job, whose runner must end itself at
its deadline; `--resume` after such a death, which must end the orphan before it runs the
job again (never two runners at once, one record per job); and SIGTERM, which must stop the
job on the device, record it `interrupted`, release the lease and exit 143.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import SSHServer, signal_thread, wait_until

BIN = Path(sys.executable).parent


def device_processes(workdir: Path, program: str) -> list[int]:
    """Python processes running `program` (run.py, sampler.py) for a job under `workdir`;
    not the shells around them, nor the runner's forked watchdog (a child with the same
    command line)."""
    found: dict[int, int] = {}  # pid -> parent pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in argv if word]
        if not words or "python" not in Path(words[0]).name:
            continue
        line = " ".join(words)
        if program in line and f"{workdir}/jobs/" in line:
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return [pid for pid, parent in found.items() if parent not in found]


def setup(workspace: Path, sshd: SSHServer, iterations: int, timeout_s: int) -> tuple[Path, Path]:
    workdir = workspace / "loop-device"
    (workspace / "devices" / "loop.toml").write_text(sshd.device_toml("loop", workdir))
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
        wait_until(lambda: device_processes(workdir, "sampler.py"), 120, "the job's start")
        signal_thread(controller.pid, signum, main_thread=main_thread)
        output, _ = controller.communicate(timeout=120)
    finally:
        ended(controller)
    return controller.returncode, output


@contextmanager
def most_runners_at_once(workdir: Path) -> Iterator[list[int]]:
    """Watches the device's processes while the block runs; yields [the largest number of
    runners seen at one time]."""
    seen = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen[0] = max(seen[0], len(device_processes(workdir, "run.py")))
            stop.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.join()


def test_a_runner_outliving_its_killed_controller_ends_at_its_deadline(
    workspace: Path, sshd: SSHServer
) -> None:
    plan, workdir = setup(workspace, sshd, iterations=100_000_000, timeout_s=5)
    # SIGKILL: no handler runs, the SSH connection just drops
    signalled_mid_job(workspace, plan, workdir, signal.SIGKILL)
    started = time.monotonic()
    assert device_processes(workdir, "run.py"), "the runner should outlive the controller"
    # its deadline is the job's 5 s timeout + RUNNER_DEADLINE_MARGIN_S (15 s)
    wait_until(
        lambda: (
            not device_processes(workdir, "run.py") and not device_processes(workdir, "sampler.py")
        ),
        120,
        "the orphaned runner's and sampler's end",
    )
    assert time.monotonic() - started >= 5  # it ran on until its deadline, not before


def test_resume_after_a_killed_controller_ends_the_orphan_first(
    workspace: Path, sshd: SSHServer
) -> None:
    plan, workdir = setup(workspace, sshd, iterations=100_000_000, timeout_s=600)
    signalled_mid_job(workspace, plan, workdir, signal.SIGKILL)
    [orphan] = device_processes(workdir, "run.py")
    [run_dir] = (workspace / "reports" / "runs").iterdir()
    write_plan(workspace, iterations=50, timeout_s=120)  # the same plan, a finishing job
    with most_runners_at_once(workdir) as most:
        resumed = start_run(workspace, str(plan), "--resume", run_dir.name)
        output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "ended 1 runner(s) that a previous controller left running" in output
    assert "loop.tiny_mbv2.fp32.cpu.t1" in output
    assert not Path(f"/proc/{orphan}").exists()
    assert most[0] == 1  # the orphan was ended before the job ran again
    records = [json.loads(p.read_text()) for p in (run_dir / "jobs").glob("*.json")]
    assert sorted(r["job_id"] for r in records) == [
        "loop.tiny_mbv2.fp32.cpu.t1",
        "loop.tiny_mbv2.fp32.cpu.t2",
    ]
    assert {r["status"] for r in records} == {"ok"}
    assert not device_processes(workdir, "run.py")
    assert not list((workdir / "jobs").glob("*/*")), "old job specs are cleared"


def test_sigterm_stops_the_job_records_it_interrupted_and_releases_the_lease(
    workspace: Path, sshd: SSHServer
) -> None:
    plan, workdir = setup(workspace, sshd, iterations=100_000_000, timeout_s=600)
    # to a device thread: the main thread must notice a signal it was not handed
    code, output = signalled_mid_job(workspace, plan, workdir, signal.SIGTERM, main_thread=False)
    assert code == 143, output
    assert "interrupted (SIGTERM)" in output and "--resume" in output
    assert not device_processes(workdir, "run.py") and not device_processes(workdir, "sampler.py")
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
        wait_until(lambda: device_processes(workdir, "sampler.py"), 120, "the job's start")
        signal_thread(controller.pid, signal.SIGINT, main_thread=True)
        time.sleep(0.3)  # the user's second press, 0.3 s later (what is tested, not a wait)
        signal_thread(controller.pid, signal.SIGINT, main_thread=True)
        output, _ = controller.communicate(timeout=120)
    finally:
        ended(controller)
    assert controller.returncode == 130, output
    assert "interrupted (Ctrl-C)" in output and "Traceback" not in output, output
    assert not device_processes(workdir, "run.py") and not device_processes(workdir, "sampler.py")
    assert not (workdir / ".harness-lease").exists()
    [run_dir] = (workspace / "reports" / "runs").iterdir()
    [record] = [json.loads(p.read_text()) for p in (run_dir / "jobs").glob("*.json")]
    assert record["status"] == "interrupted" and "--resume" in record["error"]
