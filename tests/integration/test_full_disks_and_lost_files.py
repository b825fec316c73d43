"""A disk that fills up and a file that goes away while a run is under way, on real parts:
the real `harness` command, a real tmpfs that really fills (ENOSPC from the kernel), the
real sshd on loopback. Each time: a clear message saying what and where, every finished
result kept on disk, the jobs that could not finish resumable, and `--resume` finishing
the run once the cause is gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SSHServer, harness, wait_until

from harness.errors import ControllerFileMissing
from harness.scheduler import prepare_run, run_prepared
from harness.transport.local import LocalTransport

PLAN = (
    'name = "full"\ndevices = {devices}\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n'
    "[measure]\nwarmup = 1\niterations = 3000\n[runtime]\nthreads = [1, 2, 3]\n"
    "[inputs]\ndims = {{ batch = 1 }}\n"
)


@contextlib.contextmanager
def tmpfs(folder: Path, size_mb: int) -> Iterator[Path]:
    """A real, small file system mounted at `folder` for the block."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)],
                   check=True)  # fmt: skip
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write zeros into `folder` until its file system says ENOSPC; the filler file."""
    filler = folder / "filler.bin"
    chunk = b"\0" * 2**20
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        while True:
            handle.write(chunk)
            handle.flush()
    with contextlib.suppress(OSError), filler.open("ab") as handle:  # the last partial block
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()
    probe = folder / "probe"
    with pytest.raises(OSError) as refused:
        probe.write_bytes(b"\0" * 65536)
    assert refused.value.errno == errno.ENOSPC
    probe.unlink(missing_ok=True)
    return filler


def records_in(runs: Path) -> dict[str, dict[str, object]]:
    return {p.stem: json.loads(p.read_text()) for p in runs.glob("*/jobs/*.json")}


def run_while_filling(
    plan: Path, runs: Path, folder: Path
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`harness run PLAN`, `folder` filled up as soon as the run's first job record is on
    disk: what the command did, and the filler file (delete it to make room)."""
    filled: list[Path] = []

    def watch() -> None:
        wait_until(lambda: records_in(runs), 300, "the first job record")
        filled.append(fill(folder))

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        done = harness("run", plan, timeout=600)
    finally:
        thread.join()
    return done, filled[0]


def test_a_full_reports_folder_stops_the_run_clearly_and_resume_finishes_it(
    workspace: Path,
) -> None:
    plan = workspace / "plans" / "full.toml"
    plan.write_text(PLAN.format(devices='["local"]'))
    runs = workspace / "reports" / "runs"
    with tmpfs(workspace / "reports", 16) as reports:
        done, filler = run_while_filling(plan, runs, reports)
        output = done.stdout + done.stderr
        assert done.returncode == 1, output
        assert "Traceback" not in output
        [run_dir] = runs.iterdir()
        assert f"the disk of the reports folder {run_dir / 'jobs'} is full" in output, output
        assert f"--resume {run_dir.name}` runs it and the rest" in output, output
        assert "Free about" in output
        kept = records_in(runs)
        assert 1 <= len(kept) < 3 and {r["status"] for r in kept.values()} == {"ok"}
        first = {p.name: p.read_bytes() for p in (run_dir / "jobs").glob("*.json")}
        assert not list(run_dir.rglob("*.part"))  # no half-written record
        filler.unlink()
        resumed = harness("run", plan, "--resume", run_dir.name, timeout=600)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        statuses = {job: r["status"] for job, r in records_in(runs).items()}
        assert list(statuses.values()) == ["ok"] * 3, statuses
        for name, data in first.items():  # what was finished before is as it was
            assert (run_dir / "jobs" / name).read_bytes() == data


def test_a_variant_file_gone_mid_run_is_named_and_resume_runs_its_job(workspace: Path) -> None:
    plan = workspace / "plans" / "gone.toml"
    plan.write_text(
        'name = "gone"\nmodels = ["tiny_mbv2"]\nvariants = ["fp32", "fp16"]\n'
        "[measure]\nwarmup = 1\niterations = 20\n[inputs]\ndims = { batch = 1 }\n"
    )
    prepared = prepare_run(plan)
    fp16 = next(job for job in prepared.jobs if job.variant == "fp16").model_file
    aside = fp16.with_name(fp16.name + ".moved")
    fp16.rename(aside)  # the variant cache cleared after the variants were built
    try:
        by_variant = {r.variant: r for r in run_prepared(prepared)}
    finally:
        aside.rename(fp16)
    gone = by_variant["fp16"]
    assert gone.status == "skipped", gone.error  # not the job's failure: resumable
    assert f"{fp16} is gone from the controller" in str(gone.error)
    assert "variant fp16 of tiny_mbv2" in str(gone.error) and "--resume" in str(gone.error)
    assert by_variant["fp32"].status == "ok"
    resumed = harness("run", plan, "--resume", prepared.store.run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 already finished" in resumed.stdout
    assert {r.variant: r.status for r in prepared.store.records()} == {"fp32": "ok", "fp16": "ok"}
    # gone between the look at the device and the copy: the same error, naming the file
    transport = LocalTransport("local", str(workspace / "device"))
    with pytest.raises(ControllerFileMissing, match=f"{aside} is gone from the controller"):
        transport.put_content_addressed(aside, "models", "0" * 64)


def test_a_device_disk_that_fills_mid_run_skips_its_jobs_with_the_reason(
    workspace: Path, sshd: SSHServer
) -> None:
    with tmpfs(workspace / "small-disk", 64) as disk:
        (workspace / "devices" / "small.toml").write_text(sshd.device_toml("small", disk / "wd"))
        plan = workspace / "plans" / "full.toml"
        plan.write_text(PLAN.format(devices='["small"]'))
        runs = workspace / "reports" / "runs"
        done, filler = run_while_filling(plan, runs, disk)
        output = done.stdout + done.stderr
        records = records_in(runs)
        missed = {job: r for job, r in records.items() if r["status"] != "ok"}
        assert done.returncode == 1 and missed, output
        for job, record in missed.items():  # a condition of the device, never the job's own
            assert record["status"] == "skipped", (job, record["error"])
            error = str(record["error"])
            assert "disk is full" in error or "no space left" in error, error
        for line in output.splitlines():  # every line that reports a failure says why
            assert not line.rstrip().endswith(("()", ":")), line
        [run_dir] = runs.iterdir()
        filler.unlink()
        resumed = harness("run", plan, "--resume", run_dir.name, timeout=600)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert {r["status"] for r in records_in(runs).values()} == {"ok"}
