"""One try of one process of a job, as the device worker sees it: a result, or the job's
own failure with its status. Link faults and a lost lease are not the job's: they propagate
to the worker, which retries or quarantines the device."""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass

from harness.errors import (
    CommandInterrupted,
    CommandTimeout,
    ControllerFileMissing,
    DeviceDiskFull,
    DeviceUnreachable,
    HarnessError,
    LeaseHeld,
)
from harness.execute import MIN_FREE_BYTES, DeviceSession, execute
from harness.jobs import Job
from harness.probes.thermal import parse_zone_temps, throttle_reasons
from harness.records import ControllerNotes, Cooldown
from harness.runner.contract import ResultDoc
from harness.runner.result_document import ResultDocument

COOLDOWN_POLL_S = 0.5
INTERRUPTED = "the run was interrupted (Ctrl-C or SIGTERM); --resume runs the job again"


@dataclass(frozen=True)
class Attempt:
    """One successful process of a job: its result document and the controller's notes."""

    doc: ResultDoc
    notes: ControllerNotes


@dataclass(frozen=True)
class Failure:
    """The job's own failure, never retried: `error`, `timeout` or `interrupted`; or
    `skipped` when what stopped it was not the job's (a full device disk, a controller
    file gone), so that --resume runs it."""

    status: str
    error: str
    notes: ControllerNotes
    doc: ResultDoc | None = None  # what the runner reported, when it did


def attempt(
    job: Job, session: DeviceSession, round_index: int, stop: threading.Event
) -> Attempt | Failure:
    """Cool down (if the device asks for it), then one process of the job."""
    if job.build_error:
        if job.build_status == "no-effect":  # built, but the same model: never measured
            return Failure("no-effect", job.build_error, {})
        return Failure("error", f"variant not built: {job.build_error}", {})
    clock = time.perf_counter()
    notes: ControllerNotes = {}
    try:
        if session.device.thermal.cooldown_c is not None:
            notes["cooldown"] = cool_down(session, stop)
        doc = execute(job, session, round_index, notes)
    except (DeviceUnreachable, LeaseHeld):
        session.transport.close()  # reconnect on the next try
        raise
    except ControllerFileMissing as exc:  # not the job's failure: --resume runs it
        whose = f"a file of variant {job.variant} of {job.model}"
        fix = f"`harness compress {job.model}` rebuilds its variants"
        return Failure(
            "skipped",
            f"{exc} ({whose}: the variant cache cleared or the file moved?); restore it "
            f"({fix}), then --resume runs this job",
            notes,
        )
    except DeviceDiskFull as exc:  # a condition of the device: --resume runs the job
        return Failure("skipped", f"{exc}; --resume runs this job once there is room", notes)
    except CommandTimeout as exc:
        return Failure("timeout", str(exc), notes)
    except CommandInterrupted:
        return Failure("interrupted", INTERRUPTED, notes)
    except HarnessError as exc:
        return Failure("error", str(exc), notes)
    except Exception as exc:  # a bug of ours must not lose the other jobs
        notes["traceback"] = traceback.format_exc()
        return Failure("error", f"internal error: {exc!r}", notes)
    notes["total_s"] = time.perf_counter() - clock
    read = ResultDocument(doc)
    notes["throttle_reasons"] = throttle_reasons(
        read.state("before"), read.state("after"), session.device.thermal.throttle_min_freq_fraction
    )
    if read.status != "ok":
        if read.disk_full(MIN_FREE_BYTES):  # a condition of the device: --resume runs it
            full = f"the device's disk is full ({read.describe_error()}); free space there"
            return Failure("skipped", f"{full}, then --resume runs this job", notes, doc)
        return Failure("error", read.describe_error(), notes, doc)
    return Attempt(doc, notes)


def cool_down(session: DeviceSession, stop: threading.Event) -> Cooldown:
    """Wait until the hottest thermal zone is below the device's cooldown_c, or until
    cooldown_max_s has passed; says how long it waited and where it got to."""
    device = session.device
    target = device.thermal.cooldown_c
    assert target is not None
    clock = session.clock
    started = clock.monotonic()
    probe = 'cat "$1"/class/thermal/thermal_zone*/temp 2>/dev/null; true'
    while True:
        result = session.transport.run(
            ["sh", "-c", probe, "cooldown", device.placement.sysfs_root], timeout_s=30
        )
        temps = parse_zone_temps(result.stdout)
        hottest = max(temps) if temps else None
        waited = clock.monotonic() - started
        reached = hottest is None or hottest < target  # no zones: nothing to wait for
        if reached or waited >= device.thermal.cooldown_max_s or stop.is_set():
            return {
                "waited_s": round(waited, 3),
                "hottest_c": hottest,
                "target_c": target,
                "reached": reached,
            }
        clock.wait(COOLDOWN_POLL_S, stop)
