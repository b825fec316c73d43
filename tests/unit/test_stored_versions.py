"""Every stored format's reader refuses a file written by a newer harness (it is never
guessed at), and the store's files get the mode the user's umask gives (job records and
run.json as the parquet views beside them)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from scripted_device import WORKDIR, ScriptedTransport

from harness.calibration_store import read_calibrations, write_calibration
from harness.errors import HarnessError, StoreError
from harness.lease import LEASE_DIR, LEASE_FILE, read_lease
from harness.store import RunStore
from harness.stored_files import FILE_MODE, read_view, write_json_atomic


def test_a_newer_run_json_is_refused(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "nightly")
    store.begin({"run_id": store.run_id, "plan": {"name": "nightly"}})
    assert store.read_run_meta()["schema"] == "harness.run/2"
    (store.run_dir / "run.json").write_text(json.dumps({"schema": "harness.run/3"}))
    with pytest.raises(StoreError, match=r"run.json: written by a newer harness \(harness.run/3\)"):
        store.read_run_meta()


def test_a_newer_calibration_is_refused(tmp_path: Path) -> None:
    path = write_calibration(tmp_path, "pi", {1: 0.02, 2: 0.015}, model="m")
    assert read_calibrations(tmp_path) == {"pi": {1: 0.02, 2: 0.015}}
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema": "harness.calibration/2"}))
    with pytest.raises(StoreError, match="newer harness"):
        read_calibrations(tmp_path)


def test_a_view_with_newer_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.parquet"
    pd.DataFrame({"job_id": ["a", "b"], "schema_version": [8, 9]}).to_parquet(path)
    assert len(read_view(path, 9)) == 2
    with pytest.raises(StoreError, match="table version 9, this one reads up to 8"):
        read_view(path, 8)


def test_a_lease_of_a_newer_harness_is_neither_read_nor_taken_over() -> None:
    transport = ScriptedTransport("pi", lambda argv: None)
    transport.folders.add(f"{WORKDIR}/{LEASE_DIR}")
    lease = {"schema": "harness.lease/2", "owner": "ci@lab", "token": "t"}
    transport.files[f"{WORKDIR}/{LEASE_DIR}/{LEASE_FILE}"] = json.dumps(lease).encode()
    with pytest.raises(HarnessError, match=r"newer harness \(harness.lease/2\); upgrade"):
        read_lease(transport)


def test_stored_files_get_the_umask_mode(tmp_path: Path) -> None:
    record = tmp_path / "jobs" / "a.json"
    write_json_atomic(record, {"schema": "x"})
    view = tmp_path / "results.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(view)
    mask = os.umask(0o022)
    os.umask(mask)
    assert record.stat().st_mode & 0o777 == FILE_MODE == 0o666 & ~mask
    assert view.stat().st_mode & 0o777 == FILE_MODE
