"""Power sampling through the real code path: the sampler process on the loopback SSH
device reads a RAPL powercap tree laid out like sysfs, whose counter a script advances
at a known power (wrapping at max_energy_range_uj, as real counters do)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import SSHServer

from harness.report.document import write_report
from harness.scheduler import prepare_run, run_prepared

WATTS = 5.0
# wraps every 1.2 s at 5 W: within a run, and slower than a busy machine can stall the
# sampler (a stall longer than a wrap is ambiguous for real counters too, at ~60 s)
MAX_RANGE_UJ = 6_000_000

WRITER = textwrap.dedent(
    """
    import os, sys, time
    zone, watts, maximum = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    try:  # a hardware counter is never stale: keep a busy machine from starving this one
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (AttributeError, OSError):
        pass
    start = time.monotonic()
    while True:
        value = int((time.monotonic() - start) * watts * 1e6) % maximum
        with open(zone + "/.energy_uj", "w") as handle:
            handle.write("%d\\n" % value)
        os.replace(zone + "/.energy_uj", zone + "/energy_uj")
        time.sleep(0.002)
    """
)


@pytest.fixture
def rapl_tree(tmp_path: Path) -> Iterator[Path]:
    # on tmpfs where there is one: the counter is rewritten every 2 ms, and a rename on a
    # journalling disk can stall for tens of ms -- a stale counter, which hardware never is
    # (a fresh clone's CI read 4.80 W for 5.00 W so, the tree under /tmp on ext4)
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path
    root = base / "sys"
    zone = root / "class" / "powercap" / "intel-rapl:0"
    core = zone / "intel-rapl:0:0"  # a sub-zone inside the package: never counted twice
    core.mkdir(parents=True)
    for folder, name in ((zone, "package-0"), (core, "core")):
        (folder / "name").write_text(f"{name}\n")
        (folder / "max_energy_range_uj").write_text(f"{MAX_RANGE_UJ}\n")
        (folder / "energy_uj").write_text("0\n")
    # the core's counter runs too (at 3 W, inside the package's 5 W): counted, it would show
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(watts), str(MAX_RANGE_UJ)])
        for folder, watts in ((zone, WATTS), (core, 3.0))
    ]
    try:
        yield root
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()
        if base != tmp_path:
            shutil.rmtree(base)


@pytest.mark.parametrize("idle_s", [0, 0.4])
def test_energy_per_inference_from_a_rapl_tree(
    workspace: Path, sshd: SSHServer, rapl_tree: Path, idle_s: float
) -> None:
    (workspace / "devices" / "box.toml").write_text(
        sshd.device_toml(
            "box",
            workspace / "box-device",
            power="rapl",
            sysfs_root=str(rapl_tree),
            power_interval_ms=20,
            power_idle_s=idle_s,
        )
    )
    plan = workspace / "plans" / "p.toml"
    plan.write_text(
        'name = "p"\ndevices = ["box"]\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n'
        "[measure]\nwarmup = 20\niterations = 1500\n[inputs]\ndims = { batch = 1 }\n"
    )
    prepared = prepare_run(plan)
    run_prepared(prepared)
    run_dir = prepared.store.run_dir
    row = pd.read_parquet(run_dir / "results.parquet").iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["avg_power_w"] == pytest.approx(WATTS, rel=0.02)
    per_inference_mj = WATTS * row["mean_ms"]  # 5 W x the mean latency (W x ms = mJ)
    if idle_s:  # the baseline is the same 5 W: nothing above it
        assert row["idle_power_w"] == pytest.approx(WATTS, rel=0.02)
        assert abs(row["energy_mj"]) < 0.02 * per_inference_mj
    else:  # no baseline asked for: all of it
        assert pd.isna(row["idle_power_w"])
        assert row["energy_mj"] == pytest.approx(per_inference_mj, rel=0.02)
    trace = pd.read_parquet(run_dir / "power.parquet")
    timed = trace[trace["phase"] == "timed"]
    # single readings jitter (the writer script can be starved on a busy machine, which a
    # hardware counter is not): their median within 5 %, while the integrals above — what
    # the 2 % is about — stay within 2 %; a mishandled wrap would read ±300 W. The
    # count is what a starved sampler still makes (11 in a 1.3 s window once, under load,
    # for 65 asked): enough for a median, never fewer than the 3 a window needs
    assert len(timed) >= 5 and timed["power_w"].median() == pytest.approx(WATTS, rel=0.05)
    assert timed["power_w"].between(0, 50).all()
    if idle_s:
        assert (trace["phase"] == "idle").sum() >= 10
        # the idle window opens at one of the sampler's own readings, on its clock: the
        # first after the runner's imports (which the baseline must not see)
        [record] = prepared.store.records()
        power = record.runner["power"]
        assert power["idle_window_ns"][0] in [sample["t_ns"] for sample in power["samples"]]
    # the report draws the trace with its timed window
    results, samples = prepared.store.frames()
    files = write_report(prepared.store.load(), all_images=True)
    assert (run_dir / "plots" / "power.png").is_file() and (
        run_dir / "plots" / "power.svg"
    ).is_file()
    assert "id='chart-power'" in files.html.read_text()
    trace_csv = (run_dir / "plots" / "power.csv").read_text().splitlines()
    assert trace_csv[0].startswith("job_id,t_s,power_w") and len(trace_csv) > 10


def test_a_sampler_that_cannot_read_fails_the_job_in_its_words(
    workspace: Path, sshd: SSHServer, tmp_path: Path
) -> None:
    """A power root without RAPL: the job fails with the sampler's own words."""
    (workspace / "devices" / "box.toml").write_text(
        sshd.device_toml(
            "box", workspace / "box-device", power="rapl", sysfs_root=str(tmp_path / "nothing")
        )
    )
    plan = workspace / "plans" / "p.toml"
    plan.write_text(
        'name = "p"\ndevices = ["box"]\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n'
        "[measure]\niterations = 20\n[inputs]\ndims = { batch = 1 }\n"
    )
    prepared = prepare_run(plan)
    [record] = run_prepared(prepared)
    assert record.status == "error"
    assert "power sampler did not start" in (record.error or "")
    assert "no RAPL domains" in (record.error or "")
