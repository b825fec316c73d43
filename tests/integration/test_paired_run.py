"""Paired in-process comparison through a whole run (`[measure] paired = true`): each variant
also runs beside its fp32 in the same runner processes, on the local device and on a
loopback SSH device (the reference model pushed beside the variant), decided sequentially
and stored in comparisons.parquet; `show --compare` takes that decision."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from conftest import SSHServer, bundled_model, harness
from device_files import local_device_file

from harness.scheduler import prepare_run, run_prepared


def same_model_twice(workspace: Path) -> None:
    """An A/A pair: fp32 and an `external` variant that is a copy of the same file."""
    base = bundled_model("tiny_mbv2.onnx")
    copy = workspace / "models" / "tiny_copy.onnx"
    shutil.copyfile(base, copy)
    (workspace / "models" / "aa.toml").write_text(
        f'file = "{base}"\n[[inputs]]\nname = "input"\nshape = ["batch", 3, 128, 128]\n'
        '[[variants]]\nname = "same"\nstrategy = "external"\nfile = "tiny_copy.onnx"\n'
    )


def plan(workspace: Path, devices: list[str], slowdown: float) -> Path:
    path = workspace / "plans" / f"paired-{len(devices)}.toml"
    path.write_text(
        f'name = "paired"\ndevices = {devices!r}\nmodels = ["aa"]\n'.replace("'", '"')
        + "[measure]\nwarmup = 5\niterations = 30\nprocesses = 2\npaired = true\n"
        f"paired_budget_s = 8\nequivalence_pct = 5\ninject_slowdown = {slowdown}\n"
        "[inputs]\ndims = { batch = 1 }\n"
    )
    return path


def test_an_injected_slowdown_is_found_in_process_on_both_devices(
    workspace: Path, sshd: SSHServer
) -> None:
    same_model_twice(workspace)
    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "wd"))
    (workspace / "devices" / "loop.toml").write_text(sshd.device_toml("loop", workspace / "ssh"))
    prepared = prepare_run(plan(workspace, ["local", "loop"], slowdown=0.25))
    records = run_prepared(prepared)
    assert {r.status for r in records} == {"ok"}, [r.error for r in records]
    run_dir = prepared.store.run_dir
    results = pd.read_parquet(run_dir / "results.parquet")
    assert set(results["variant"]) == {"fp32", "same"} and len(results) == 4  # solo jobs only
    comparisons = pd.read_parquet(run_dir / "comparisons.parquet").set_index("device")
    assert set(comparisons.index) == {"local", "loop"}
    for device in ("local", "loop"):
        row = comparisons.loc[device]
        # only the variant's side is slowed: every inference 25 % longer. Found slower by
        # more than half that; a busy machine stretches the added time (it is spent
        # computing), so the bound above is loose
        assert row["verdict"] == "slower" and 1.12 < row["ratio"] < 2.0, row.to_dict()
        assert row["ratio_ci_low"] < row["ratio"] < row["ratio_ci_high"]
        assert row["processes"] == 2 and row["blocks"] >= 12 and row["device_s"] < 8 + 4
    shown = harness("show", run_dir, "--compare")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "paired in-process: slower than fp32 beyond ±5%" in shown.stdout
    assert "by paired: paired blocks in one process" in shown.stdout


def test_the_same_model_twice_is_never_called_faster_or_slower(workspace: Path) -> None:
    same_model_twice(workspace)
    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "wd"))
    prepared = prepare_run(plan(workspace, ["local"], slowdown=0.0))
    run_prepared(prepared)
    [row] = prepared.store.comparisons().to_dict("records")
    assert row["status"] == "ok" and row["verdict"] in ("equivalent", "inconclusive"), row
    assert row["ratio_ci_low"] < 1.05 and row["ratio_ci_high"] > 1 / 1.05
