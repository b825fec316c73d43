"""One queue of jobs served by many controllers, on real servers: PostgreSQL from Debian's
package (the run index and procrastinate's queue) and SeaweedFS (S3), both started by
tests/servers.py. Controllers are workspaces with their own site name, each a worker
(`harness worker`, a process of its own) serving the devices attached to it: local devices
with work directories of their own, so their runner processes are visible in /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HARNESS, job_processes, leftovers, make_workspace, wait_until
from lab_fixtures import cli
from servers import PostgresServer, SeaweedServer

pytestmark = pytest.mark.integration

HEARTBEAT_S = 2.0  # a worker silent for 6 s is dead


def plan_text(
    devices: list[str],
    iterations: int = 10,
    variants: str = '"fp32", "int8-dynamic"',
    model: str = "digits_cnn",
) -> str:
    return (
        f'name = "nightly"\ndevices = {devices!r}\nmodels = ["{model}"]\n'
        f"variants = [{variants}]\n[measure]\nwarmup = 2\niterations = {iterations}\n"
        "fidelity_samples = 0\ntimeout_s = 120\n[inputs]\ndims = { batch = 1 }\n"
    ).replace("'", '"')


def controller(root: Path, site: str, devices: list[str], plan: str) -> Path:
    """A controller's workspace: the lab's device files (local devices, each its own work
    directory under `root`) and the plan."""
    workspace = make_workspace(root / site)
    for name in devices:
        (workspace / "devices" / f"{name}.toml").write_text(
            f'transport = "local"\n[placement]\npython = "{sys.executable}"\n'
            f'workdir = "{root / "device-workdirs" / name}"\n'
        )
    (workspace / "plans" / "nightly.toml").write_text(plan)
    return workspace


class Worker:
    """`harness worker` in its own process (and process group), its output in a file."""

    def __init__(self, workspace: Path, site: str, devices: str, *extra: str) -> None:
        self.site = site
        self.log = workspace / f"worker-{site}-{time.monotonic_ns()}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [str(HARNESS), "worker", "--devices", devices, "--heartbeat-s", str(HEARTBEAT_S),
                 *extra],
                stdout=out, stderr=subprocess.STDOUT, cwd=workspace,
                env={**os.environ, "HARNESS_SITE": site}, start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL to the worker alone, as a controller dies: the runner it started on
        the device goes on. Reaped, as a dead controller's process is by its init."""
        self.process.kill()
        self.process.wait()

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def submitted_run(workspace: Path, *args: str) -> str:
    done = cli("submit", "plans/nightly.toml", "--quiet", *args, cwd=workspace)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def index_rows(url: str, query: str, *params: object) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url) as db:
        return list(db.execute(query, params).fetchall())


def test_two_workers_on_two_devices_each_run_a_submitted_plan_and_a_third_process_reads_it(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path, workers: list[Worker]
) -> None:
    _, _, url = lab
    devices = ["bench-1", "bench-2", "bench-3", "bench-4"]
    plan = plan_text(devices)
    submitter = controller(tmp_path, "ci", devices, plan)
    run_id = submitted_run(submitter, "--priority", "nightly")
    assert not (submitter / "reports" / "runs" / run_id).exists()  # the run is the lab's now
    site_a = controller(tmp_path, "lab-a", devices, plan)
    site_b = controller(tmp_path, "lab-b", devices, plan)
    workers.append(Worker(site_a, "lab-a", "bench-1,bench-2"))
    workers.append(Worker(site_b, "lab-b", "bench-3,bench-4"))
    waited = cli("wait", run_id, "--poll-s", "0.5", cwd=submitter)
    assert waited.returncode == 0, waited.stdout + waited.stderr + workers[0].output()
    assert "8 of 8 jobs recorded (8 ok)" in waited.stdout
    # each worker ran the jobs of its own devices only, each job once
    served = index_rows(
        url, "SELECT device, worker, attempt FROM harness_jobs WHERE run_id = %s", run_id
    )
    assert len(served) == 8
    for device, worker, attempt in served:
        site = "lab-a" if device in ("bench-1", "bench-2") else "lab-b"
        assert str(worker).startswith(f"{site}/") and attempt == 1, served
    # a third process, in a folder with no runs, sees one run
    elsewhere = tmp_path / "third"
    elsewhere.mkdir()
    history = cli("history", cwd=elsewhere)
    assert history.returncode == 0 and "1 runs, 8 jobs" in history.stdout, history.stdout
    report = cli("report", "latest", cwd=elsewhere)
    assert report.returncode == 0, report.stdout + report.stderr
    budgets = elsewhere / "budgets.toml"
    budgets.write_text('[[budget]]\nmodel = "digits_cnn"\nvariant = "fp32"\np50_ms = 10000\n')
    gate = cli("gate", budgets, "latest", cwd=elsewhere)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "4 checks: 4 pass" in gate.stdout  # fp32 on each of the four devices


class RunnerWatch:
    """Samples, until stopped, the processes running jobs in a device's work directory
    (exec'd runners, or a persistent runner's children): the most ever seen at once, and
    every one seen."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.most, self.seen = workdir, 0, set[int]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            running = job_processes(self.workdir)
            self.most = max(self.most, len(running))
            self.seen.update(running)
            self._stop.wait(0.05)

    def now(self) -> list[int]:
        return job_processes(self.workdir)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for pid in leftovers(self.workdir):  # a runner left past its worker (ends at its deadline)
            os.kill(pid, signal.SIGKILL)


def running_attempt(url: str, run_id: str) -> tuple[str, int] | None:
    """The worker and attempt of the job being run now (claimed, not recorded)."""
    rows = index_rows(url, "SELECT worker, attempt FROM harness_jobs WHERE run_id = %s AND"
                      " worker IS NOT NULL AND record IS NULL", run_id)  # fmt: skip
    return (str(rows[0][0]), int(rows[0][1])) if rows else None


def slow_plan(devices: list[str], timeout_s: int = 120) -> str:
    """Jobs of a few seconds each: a worker can be killed in the middle of one."""
    return plan_text(devices, iterations=3000, variants='"fp32"', model="tiny_mbv2").replace(
        "timeout_s = 120", f"timeout_s = {timeout_s}\n[runtime]\nthreads = [1, 2]"
    )


def test_two_workers_that_list_one_device_never_share_it_and_a_killed_workers_job_runs_again_once(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path, workers: list[Worker]
) -> None:
    _, _, url = lab
    plan = slow_plan(["bench-1"])
    submitter = controller(tmp_path, "ci", ["bench-1"], plan)
    run_id = submitted_run(submitter)
    watch = RunnerWatch(tmp_path / "device-workdirs" / "bench-1")
    try:
        for site in ("lab-a", "lab-b"):  # both list bench-1
            workers.append(Worker(controller(tmp_path, site, ["bench-1"], plan), site, "bench-1"))
        wait_until(lambda: watch.now() and running_attempt(url, run_id), 300, "a runner")
        held = running_attempt(url, run_id)
        assert held is not None
        killed = next(w for w in workers if held[0].startswith(w.site + "/"))
        first_runner = watch.now()
        killed.kill()  # the worker alone: an exec'd runner goes on (a persistent one ends it)
        waited = cli("wait", run_id, "--poll-s", "0.5", cwd=submitter)
        survivor = next(w for w in workers if w is not killed)
        assert waited.returncode == 0, waited.stdout + waited.stderr + survivor.output()
    finally:
        watch.stop()
    assert "2 of 2 jobs recorded (2 ok)" in waited.stdout
    assert watch.most == 1, f"{watch.most} runners at once on one device"
    assert not set(first_runner) & set(watch.now())  # the dead worker's runner was ended
    attempts = index_rows(url, "SELECT job_id, attempt, worker FROM harness_jobs WHERE run_id = %s"
                          " ORDER BY attempt", run_id)  # fmt: skip
    assert [a for _, a, _ in attempts] == [1, 2], attempts  # the killed job, run again once
    assert str(attempts[1][2]).startswith(survivor.site + "/")
    assert "stopped beating: back in the queue" in survivor.output()
    results = index_rows(url, "SELECT count(*) FROM harness_results WHERE run_id = %s", run_id)
    assert results == [(2,)]  # one record per job


def test_a_job_whose_worker_dies_twice_is_recorded_error_with_the_reason(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path, workers: list[Worker]
) -> None:
    _, _, url = lab
    plan = slow_plan(["bench-1"], timeout_s=20).replace("threads = [1, 2]", "threads = [1]")
    submitter = controller(tmp_path, "ci", ["bench-1"], plan)
    run_id = submitted_run(submitter)
    watch = RunnerWatch(tmp_path / "device-workdirs" / "bench-1")
    try:
        for attempt, site in ((1, "lab-a"), (2, "lab-b")):
            worker = Worker(controller(tmp_path, site, ["bench-1"], plan), site, "bench-1")
            workers.append(worker)
            wait_until(
                lambda n=attempt: watch.now() and (running_attempt(url, run_id) or ("", 0))[1] == n,
                300,
                f"attempt {attempt}'s runner",
            )
            worker.kill()
        workers.append(Worker(controller(tmp_path, "lab-c", ["bench-1"], plan), "lab-c", "bench-1"))
        waited = cli("wait", run_id, "--poll-s", "0.5", cwd=submitter)
    finally:
        watch.stop()
    assert waited.returncode == 1, waited.stdout + waited.stderr + workers[-1].output()
    assert "1 of 1 jobs recorded (1 error)" in waited.stdout
    assert "its worker died mid-job 2 times (the last lab-b/" in waited.stdout
    assert watch.most == 1


def test_a_postgresql_restart_mid_run_loses_nothing_and_duplicates_nothing(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path, workers: list[Worker]
) -> None:
    pg, _, url = lab
    plan = slow_plan(["bench-1"])
    submitter = controller(tmp_path, "ci", ["bench-1"], plan)
    run_id = submitted_run(submitter)
    worker = Worker(controller(tmp_path, "lab-a", ["bench-1"], plan), "lab-a", "bench-1")
    workers.append(worker)
    wait_until(lambda: running_attempt(url, run_id), 300, "a job taken")
    pg.restart()
    waited = cli("wait", run_id, "--poll-s", "0.5", "--timeout-s", "300", cwd=submitter)
    assert waited.returncode == 0, waited.stdout + waited.stderr + worker.output()
    assert "2 of 2 jobs recorded (2 ok)" in waited.stdout
    attempts = index_rows(url, "SELECT attempt FROM harness_jobs WHERE run_id = %s", run_id)
    assert sorted(attempts) == [(1,), (1,)], attempts  # nothing run twice
    results = index_rows(url, "SELECT count(*) FROM harness_results WHERE run_id = %s", run_id)
    assert results == [(2,)]


def test_a_release_run_goes_before_a_nightly_run_queued_earlier(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path, workers: list[Worker]
) -> None:
    _, _, url = lab
    plan = plan_text(["bench-1"])
    submitter = controller(tmp_path, "ci", ["bench-1"], plan)
    nightly = submitted_run(submitter, "--priority", "nightly")
    release = submitted_run(submitter, "--priority", "release")
    site = controller(tmp_path, "lab-a", ["bench-1"], plan)
    done = cli("worker", "--devices", "bench-1", "--until-idle", cwd=site, HARNESS_SITE="lab-a")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 job(s) run" in done.stdout and "2 run(s) published" in done.stdout
    order = index_rows(url, "SELECT run_id FROM harness_jobs ORDER BY recorded_at")
    assert [r for (r,) in order] == [release, release, nightly, nightly]


def test_a_corrupt_file_in_the_object_store_fails_its_jobs_not_the_worker(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path
) -> None:
    _, s3, _ = lab
    plan = plan_text(["bench-1"])
    submitter = controller(tmp_path, "ci", ["bench-1"], plan)
    run_id = submitted_run(submitter)
    import pyarrow.fs as pafs

    s3fs = s3.filesystem()
    blobs = [i.path for i in s3fs.get_file_info(pafs.FileSelector("harness/lab/blobs", recursive=True))
             if i.type == pafs.FileType.File]  # fmt: skip
    assert blobs, "submit stored no file"
    for key in blobs:  # every file the jobs need, overwritten
        with s3fs.open_output_stream(key) as out:
            out.write(b"not what was submitted")
    site = controller(tmp_path, "lab-a", ["bench-1"], plan)
    served = cli("worker", "--devices", "bench-1", "--until-idle", cwd=site, HARNESS_SITE="lab-a")
    assert served.returncode == 0 and "1 run(s) published" in served.stdout, served.stdout
    waited = cli("wait", run_id, cwd=submitter)
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert "2 of 2 jobs recorded (2 error)" in waited.stdout
    assert "is corrupt: its sha256 is" in waited.stdout, waited.stdout
