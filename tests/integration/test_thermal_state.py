"""Cooldown before a job and the throttling rule, on the loopback SSH device whose sysfs
root is a tree the test controls (a hot thermal zone that cools down, slow CPU clocks)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
from conftest import SSHServer

from harness.scheduler import prepare_run, run_prepared


def sysfs_tree(root: Path, temp_mc: int, cur_khz: int, max_khz: int) -> Path:
    zone = root / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text(f"{temp_mc}\n")
    freq = root / "devices" / "system" / "cpu" / "cpu0" / "cpufreq"
    freq.mkdir(parents=True)
    (freq / "scaling_cur_freq").write_text(f"{cur_khz}\n")
    (freq / "cpuinfo_max_freq").write_text(f"{max_khz}\n")
    return zone / "temp"


def write_plan(workspace: Path) -> Path:
    plan = workspace / "plans" / "p.toml"
    plan.write_text(
        'name = "p"\ndevices = ["hot"]\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n'
        "[measure]\niterations = 20\n[inputs]\ndims = { batch = 1 }\n"
    )
    return plan


def test_cooldown_waits_and_a_throttled_job_is_run_again(
    workspace: Path, sshd: SSHServer, tmp_path: Path
) -> None:
    temp = sysfs_tree(tmp_path / "sys", 80_000, 600_000, 2_400_000)
    cooler = threading.Timer(1.5, lambda: temp.write_text("40000\n"))
    cooler.start()
    (workspace / "devices" / "hot.toml").write_text(
        sshd.device_toml(
            "hot",
            workspace / "hot-device",
            sysfs_root=str(tmp_path / "sys"),
            cooldown_c=50,
            cooldown_max_s=20,
            throttle_min_freq_fraction=0.5,
            rerun_throttled=1,
        )
    )
    plan = write_plan(workspace)
    started = time.monotonic()
    prepared = prepare_run(plan)
    [record] = run_prepared(prepared)
    cooler.join()
    assert record.status == "ok", record.error
    cooldown = record.controller["cooldown"]
    assert cooldown["reached"] and cooldown["hottest_c"] == 40.0
    assert time.monotonic() - started >= 1.5
    # the clock stayed at 25 % of max: throttled, run once more, still throttled
    assert record.controller["reruns_after_throttling"] == 1
    row = pd.read_parquet(prepared.store.run_dir / "results.parquet").iloc[0]
    assert bool(row["throttled"]) is True
    assert "cpu0 ended at 600 MHz, below 50%" in row["warnings"]
    assert row["temp_start_c"] == 40.0  # the runner read the same tree


def test_a_board_that_stays_hot_is_run_anyway_and_said_so(
    workspace: Path, sshd: SSHServer, tmp_path: Path
) -> None:
    sysfs_tree(tmp_path / "sys", 90_000, 2_400_000, 2_400_000)
    (workspace / "devices" / "hot.toml").write_text(
        sshd.device_toml(
            "hot",
            workspace / "hot-device",
            sysfs_root=str(tmp_path / "sys"),
            cooldown_c=50,
            cooldown_max_s=1,
        )
    )
    plan = write_plan(workspace)
    prepared = prepare_run(plan)
    run_prepared(prepared)
    row = pd.read_parquet(prepared.store.run_dir / "results.parquet").iloc[0]
    assert row["status"] == "ok" and bool(row["throttled"]) is False
    assert "started hot: 90.0 °C after" in row["warnings"]


def test_the_runner_prepares_the_cpus_and_undoes_it_and_samples_its_memory(
    workspace: Path, sshd: SSHServer, tmp_path: Path
) -> None:
    """`governor = "performance"` and `cores` on a sysfs tree: the governor is set for the
    job (the runner's own snapshot sees it) and restored after; a CPU whose governor file
    refuses writes (a real read-only kernel file) is reported, not fatal. The memory
    sampler beside the runner gives PSS and swap peaks."""
    sysfs_tree(tmp_path / "sys", 45_000, 2_400_000, 2_400_000)
    cpu = tmp_path / "sys" / "devices" / "system" / "cpu"
    governor = cpu / "cpu0" / "cpufreq" / "scaling_governor"
    governor.write_text("schedutil\n")
    locked = cpu / "cpu1" / "cpufreq"
    locked.mkdir(parents=True)
    (locked / "scaling_governor").symlink_to("/proc/sys/kernel/ostype")  # reads, never writes
    (workspace / "devices" / "hot.toml").write_text(
        sshd.device_toml(
            "hot",
            workspace / "hot-device",
            sysfs_root=str(tmp_path / "sys"),
            governor="performance",
            cores="0",
            memory_interval_ms=20,
        )
    )
    prepared = prepare_run(write_plan(workspace))
    [record] = run_prepared(prepared)
    assert record.status == "ok", record.error
    done = record.runner["preparation"]
    assert done["cpu_affinity"] == {"applied": True, "cpus": [0]}
    assert done["governor"]["applied"] is False
    assert done["governor"]["previous"]["cpu0"] == "schedutil"
    assert "cpu1" in done["governor"]["error"]
    assert record.runner["state"]["before"]["governors"]["cpu0"] == "performance"
    assert governor.read_text().strip() == "schedutil"  # restored after the job
    samples = record.runner["memory_sampled"]["samples"]
    assert len(samples) >= 3 and all(s["raw"]["Pss"] > 0 for s in samples)
    row = pd.read_parquet(prepared.store.run_dir / "results.parquet").iloc[0]
    assert row["peak_pss_mb"] >= max(s["raw"]["Pss"] for s in samples) / 1024
    assert row["peak_rss_mb"] >= row["peak_pss_mb"] > 0 and row["peak_swap_mb"] >= 0
    assert "governor not applied: cpu1" in row["warnings"]
