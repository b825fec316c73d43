"""Device reservations (harness/lease.py) on real files through the local transport, and
`harness devices lock / who / unlock`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from device_files import local_device_file
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import LeaseHeld
from harness.lease import LEASE_DIR, acquire, new_lease, read_lease, refresh, release
from harness.transport.local import LocalTransport


@pytest.fixture
def transport(tmp_path: Path) -> LocalTransport:
    return LocalTransport("bench", str(tmp_path / "wd"))


def test_a_live_lease_is_waited_for_then_refused(transport: LocalTransport) -> None:
    first = acquire(transport, new_lease("run-a", 60), wait_s=0)
    assert read_lease(transport) == first
    told = []
    started = time.monotonic()
    with pytest.raises(LeaseHeld, match=r"reserved by .*run-a.*waited 0.5 s"):
        acquire(transport, new_lease("run-b", 60), wait_s=0.5, on_wait=told.append)
    assert time.monotonic() - started >= 0.5 and told == [first]
    # released while the second waits: it gets the device
    threading.Timer(0.3, lambda: release(transport, first)).start()
    second = acquire(transport, new_lease("run-b", 60), wait_s=10)
    assert read_lease(transport) == second and second.purpose == "run-b"
    assert release(transport, first) is None  # not ours any more: left alone
    assert read_lease(transport) == second


def test_expired_dead_and_unreadable_leases_are_taken_over(transport: LocalTransport) -> None:
    stale = acquire(transport, new_lease("run-a", 60), wait_s=0)
    folder = Path(transport.remote_path(LEASE_DIR))
    expired = replace(stale, expires_at=time.time() - 1)
    (folder / "lease.json").write_text(json.dumps(expired.__dict__))
    taken = acquire(transport, new_lease("run-b", 60), wait_s=0)
    assert taken.purpose == "run-b"
    with pytest.raises(LeaseHeld, match="our reservation was lost"):
        refresh(transport, stale, 60)  # the first controller learns it lost the device
    # a controller of this host that was killed (its pid is gone) holds it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (folder / "lease.json").write_text(json.dumps({**taken.__dict__, "pid": int(dead.stdout)}))
    assert acquire(transport, new_lease("run-c", 60), wait_s=0).purpose == "run-c"
    # a lease folder without its file (killed while taking it)
    (folder / "lease.json").unlink()
    assert acquire(transport, new_lease("run-d", 60), wait_s=0).purpose == "run-d"
    assert not list(folder.parent.glob(f"{LEASE_DIR}.stale.*"))  # nothing stale left beside it


def test_refresh_pushes_the_expiry_on(transport: LocalTransport) -> None:
    lease = acquire(transport, new_lease("run-a", 5), wait_s=0)
    renewed = refresh(transport, lease, 600)
    assert renewed.expires_at > lease.expires_at + 500
    assert read_lease(transport) == renewed


def test_cli_lock_who_unlock(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "bench.toml").write_text(local_device_file(tmp_path / "wd"))
    runner = CliRunner()
    env = {"HARNESS_DEVICES_DIR": str(devices), "COLUMNS": "200"}
    assert "not reserved" in runner.invoke(app, ["devices", "who", "bench"], env=env).output
    locked = runner.invoke(app, ["devices", "lock", "bench", "--hours", "1"], env=env)
    assert locked.exit_code == 0 and "reserved by" in locked.output and "manual" in locked.output
    who = runner.invoke(app, ["devices", "who", "bench"], env=env)
    assert f"pid {os.getpid()}" in who.output and "expires in" in who.output
    again = runner.invoke(app, ["devices", "lock", "bench"], env=env)
    assert again.exit_code == 1 and "reserved by" in again.output
    transport = LocalTransport("bench", str(tmp_path / "wd"))
    held = read_lease(transport)
    assert held is not None
    (Path(transport.remote_path(LEASE_DIR)) / "lease.json").write_text(
        json.dumps({**held.__dict__, "owner": "someone@elsewhere"})
    )
    refused = runner.invoke(app, ["devices", "unlock", "bench"], env=env)
    assert refused.exit_code == 1 and "--force" in refused.output
    forced = runner.invoke(app, ["devices", "unlock", "bench", "--force"], env=env)
    assert forced.exit_code == 0 and "released" in forced.output
    assert read_lease(transport) is None
