"""Device reservations: an exclusive lease in the device's work directory.

Two controllers (two CI jobs, a person at a desk) must never benchmark one board at once:
each would disturb the other's numbers. Before its first job a controller takes the lease:
`mkdir <workdir>/.harness-lease` is the atomic "take" (it fails if the folder exists, on
every POSIX shell, toybox's included), and `lease.json` inside says who holds it — owner,
host, pid, run, and an expiry on the controller's clock (labs keep their clocks in sync
with NTP). The holder refreshes the expiry before a process once half its time is gone
(harness/worker.py); a lease past its expiry, or one held by a dead process on this same
host, is taken over; a live one is waited for. A lease written by a newer harness is
neither read nor taken over.

Only the transport's `run`, `put_bytes`, `get` and `exists` are used, so the lease works
over ssh, adb and on the local device alike.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.clock import SYSTEM_CLOCK, Clock
from harness.errors import HarnessError, LeaseHeld, TransportError
from harness.transport.base import Transport
from harness.transport.remote_shell import END_LEFTOVERS

LEASE_DIR = ".harness-lease"
LEASE_FILE = "lease.json"
LEASE_SCHEMA = "harness.lease/1"
POLL_S = 2.0
COMMAND_TIMEOUT_S = 30.0
# a lease folder without a readable lease.json may be one being taken right now (mkdir,
# then the file): it is stale only if it is still unreadable this much later
UNREADABLE_GRACE_S = 1.0
UNREADABLE = "unreadable lease"


@dataclass(frozen=True)
class Lease:
    owner: str  # user@host of the controller
    host: str
    pid: int
    token: str  # tells this holder's lease from the next one's
    purpose: str  # the run id, or "manual" (`harness devices lock`)
    acquired_at: float  # epoch seconds, the controller's clock
    expires_at: float

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def holder_is_dead(self) -> bool:
        """A process of this host that no longer exists holds it (a killed controller)."""
        if self.host != socket.gethostname() or self.purpose == "manual":
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def taken_by_hand_by_me(self) -> bool:
        """`harness devices lock` by this user on this machine: theirs to unlock."""
        return self.purpose == "manual" and self.owner == current_owner()

    def describe(self, now: float | None = None) -> str:
        left = self.expires_at - (time.time() if now is None else now)
        expiry = f"expires in {left:.0f} s" if left > 0 else f"expired {-left:.0f} s ago"
        return f"{self.owner} (pid {self.pid}, {self.purpose}), {expiry}"


def current_owner() -> str:
    """user@host of this controller, as leases record it."""
    return f"{_user()}@{socket.gethostname()}"


def new_lease(purpose: str, ttl_s: float) -> Lease:
    now = time.time()
    return Lease(
        owner=current_owner(),
        host=socket.gethostname(),
        pid=os.getpid(),
        token=uuid.uuid4().hex,
        purpose=purpose,
        acquired_at=now,
        expires_at=now + ttl_s,
    )


def read_lease(transport: Transport) -> Lease | None:
    """The lease on the device, None when there is none. A lease folder without a
    readable lease.json (a controller killed while taking it) reads as a lease that
    expired at once, so it is taken over."""
    folder = transport.remote_path(LEASE_DIR)
    if not transport.exists(folder):
        return None
    data = _read_at(transport, f"{folder}/{LEASE_FILE}")
    schema = str((data or {}).get("schema", LEASE_SCHEMA))
    if schema != LEASE_SCHEMA and schema.startswith("harness.lease/"):
        raise HarnessError(
            f"the device's lease ({folder}) was written by a newer harness ({schema}); "
            "upgrade this controller to share the device with it"
        )
    try:
        return Lease(**{k: v for k, v in (data or {}).items() if k != "schema"})
    except TypeError:
        if not transport.exists(folder):
            return None  # released while we looked
        return Lease("unknown", "", 0, "", UNREADABLE, 0.0, 0.0)


def acquire(
    transport: Transport,
    lease: Lease,
    wait_s: float,
    on_wait: Callable[[Lease], None] = lambda held: None,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Clock = SYSTEM_CLOCK,
) -> Lease:
    """Take the device's lease, waiting up to `wait_s` for a live holder; LeaseHeld after
    that. Returns the lease as written (its expiry counted from now)."""
    deadline = clock.monotonic() + wait_s
    told = False
    while True:
        taken = _try_take(transport, lease, clock)
        if taken is not None:
            return taken
        held = read_lease(transport)
        if held is None:
            continue  # released between our mkdir and our look: try again at once
        if held.token == lease.token:
            return held  # ours: taken before a dropped connection made us start over
        if held.purpose == UNREADABLE:
            clock.wait(UNREADABLE_GRACE_S)  # perhaps another controller is writing it
            held = read_lease(transport)
            if held is None:
                continue
        if held.expired(clock.time()) or held.holder_is_dead():
            _take_over(transport, held)
            continue
        if clock.monotonic() >= deadline or should_stop():
            raise LeaseHeld(
                transport.device_name,
                f"reserved by {held.describe()}; waited {wait_s:g} s. Its jobs were skipped: "
                f"run them later with --resume, or see `harness devices who "
                f"{transport.device_name}`",
            )
        if not told:
            on_wait(held)
            told = True
        clock.wait(min(POLL_S, max(0.05, deadline - clock.monotonic())))


def end_leftovers(transport: Transport) -> list[str]:
    """With the lease held: kill the runners (and their samplers) that an earlier holder
    left running — a controller killed mid-job, or one whose link died — and clear the
    old job specs. Returns the jobs whose runners were ended."""
    result = transport.run(
        ["sh", "-c", END_LEFTOVERS, "harness-cleanup", transport.remote_path("jobs")],
        timeout_s=COMMAND_TIMEOUT_S,
    )
    return [
        line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("ended ")
    ]


def refresh(transport: Transport, lease: Lease, ttl_s: float, clock: Clock = SYSTEM_CLOCK) -> Lease:
    """Push the expiry on; LeaseHeld if the lease is no longer ours (taken over after it
    expired — the jobs must stop: another controller is using the device now)."""
    held = read_lease(transport)
    if held is None or held.token != lease.token:
        who = held.describe() if held else "nobody"
        raise LeaseHeld(
            transport.device_name, f"our reservation was lost; the device is now held by {who}"
        )
    renewed = replace(lease, expires_at=clock.time() + ttl_s)
    _write(transport, renewed)
    return renewed


def release(transport: Transport, lease: Lease | None = None, force: bool = False) -> Lease | None:
    """Remove the lease if it is `lease` (or any, with `force`); returns what was removed."""
    held = read_lease(transport)
    if held is None:
        return None
    if not force and (lease is None or held.token != lease.token):
        return None
    folder = transport.remote_path(LEASE_DIR)
    transport.run_check(["rm", "-rf", folder], timeout_s=COMMAND_TIMEOUT_S)
    return held


def _try_take(transport: Transport, lease: Lease, clock: Clock) -> Lease | None:
    folder = transport.remote_path(LEASE_DIR)
    result = transport.run(["mkdir", folder], timeout_s=COMMAND_TIMEOUT_S)
    if result.exit_code != 0:
        return None
    now = clock.time()
    taken = replace(lease, acquired_at=now, expires_at=now + (lease.expires_at - lease.acquired_at))
    _write(transport, taken)
    return taken


def _take_over(transport: Transport, stale: Lease) -> None:
    """Move the stale lease aside (rename is atomic: of two controllers taking over, one
    wins) and remove it. If what was moved is not the stale lease we saw (someone took the
    device in between), put it back."""
    folder = transport.remote_path(LEASE_DIR)
    aside = transport.remote_path(f"{LEASE_DIR}.stale.{uuid.uuid4().hex[:8]}")
    if transport.run(["mv", folder, aside], timeout_s=COMMAND_TIMEOUT_S).exit_code != 0:
        return
    moved = _read_at(transport, f"{aside}/{LEASE_FILE}")
    if moved is not None and moved.get("token") != stale.token:
        transport.run(["mv", aside, folder], timeout_s=COMMAND_TIMEOUT_S)
        return
    transport.run(["rm", "-rf", aside], timeout_s=COMMAND_TIMEOUT_S)


def _write(transport: Transport, lease: Lease) -> None:
    body = json.dumps({"schema": LEASE_SCHEMA, **asdict(lease)}, indent=1).encode()
    transport.put_bytes(body, transport.remote_path(f"{LEASE_DIR}/{LEASE_FILE}"))


def _read_at(transport: Transport, remote: str) -> dict[str, Any] | None:
    try:
        with tempfile.TemporaryDirectory(prefix="harness-lease-") as tmp:
            local = Path(tmp) / LEASE_FILE
            transport.get(remote, local)
            data: dict[str, Any] = json.loads(local.read_text())
            return data
    except (TransportError, OSError, ValueError):
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
