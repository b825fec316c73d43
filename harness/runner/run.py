#!/usr/bin/env python3
"""The on-device runner: load one model, time it, print one JSON document.

Copied with its sibling files to `<workdir>/runner/<hash>/` on the device and started as
`python3 run.py JOB.json` (or `run.py --facts WORKDIR` for `harness devices check`): this
file is the entry point; contract.py, device.py, runtimes.py and measure.py hold the rest,
sampler.py runs as a process of its own.
Standard library + the inference runtime (and the numpy it needs) only; Python 3.8+.
It never imports `harness`.

Output: exactly one JSON document on stdout (schema `harness.result/1`); everything else,
including what native libraries print, goes to stderr.

The job spec and result document are described in contract.py, with their format history.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import select
import shutil
import signal
import sys
import time

try:  # imported as harness.runner.contract (the controller, the tests)
    from .contract import JOB_SCHEMA, RESULT_SCHEMA, JobError, JobSpec, ResultDoc
except ImportError:  # run on the device, where this file's folder is on sys.path
    from contract import (  # type: ignore[no-redef]
        JOB_SCHEMA,
        RESULT_SCHEMA,
        JobError,
        JobSpec,
        ResultDoc,
    )

try:  # imported as harness.runner.device (the controller, the tests)
    from .device import device_facts, device_identity
except ImportError:  # run on the device, where this file's folder is on sys.path
    from device import device_facts, device_identity  # type: ignore[no-redef]

try:  # imported as harness.runner.measure (the controller, the tests)
    from .measure import run_job
except ImportError:  # run on the device, where this file's folder is on sys.path
    from measure import run_job  # type: ignore[no-redef]


# ----------------------------------------------------------------------------- entry point


def start_watchdog(deadline_s: float, session_alive: int | None = None) -> int:
    """Fork a watchdog that ends this runner's whole process group (its samplers too) at
    the deadline, so a runner never outlives a controller that died or lost its link.
    It learns that the runner ended when the pipe's write end (held only by the runner)
    closes, so it never outlives a runner that finished. Forked before any runtime session
    exists. A job forked by a persistent runner (persistent.py) passes `session_alive`, a
    pipe's read end whose write end only that runner holds: when the runner dies, the job
    ends too."""
    read_end, write_end = os.pipe()
    runner_pid = os.getpid()
    if os.fork() != 0:
        os.close(read_end)
        return write_end
    try:  # the watchdog: no stdio of the runner's kept open (the controller waits for EOF)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        watched = [read_end] + ([session_alive] if session_alive is not None else [])
        low = 3
        for fd in sorted(watched):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 4096)
        ready, _, _ = select.select(watched, [], [], deadline_s)
        if read_end not in ready:  # the deadline, or the persistent runner died
            group = os.getpgid(runner_pid)
            os.killpg(group, signal.SIGTERM)
            for _ in range(20):
                time.sleep(0.1)
                try:
                    os.kill(runner_pid, 0)
                except OSError:
                    break
            os.killpg(group, signal.SIGKILL)
    finally:
        os._exit(0)


class RunningRecord:
    """`<job>.running` beside the job spec while the runner runs: pid, process group and
    job, so that the next controller to take the device ends what a dead one left."""

    def __init__(self, path: str | None, job_id: str | None) -> None:
        self.path = path
        if path:
            with open(path, "w") as handle:
                handle.write("%d %d %s\n" % (os.getpid(), os.getpgid(0), job_id))

    def remove(self) -> None:
        if self.path:
            with contextlib.suppress(OSError):
                os.remove(self.path)


def formatted_traceback() -> str:
    import traceback  # here: only a failed job needs it (a runner starts faster without)

    return traceback.format_exc()


def free_bytes(folder: str) -> int | None:
    """Free space for this user in `folder`'s file system (None if it cannot be read)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def main(argv: list[str]) -> int:
    started = time.perf_counter_ns()
    # Keep stdout for the one JSON document: native libraries that print go to stderr.
    result_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if len(argv) == 3 and argv[1] == "--facts":
        json.dump(device_facts(argv[2]), result_stream)
        result_stream.write("\n")
        result_stream.flush()
        return 0
    if len(argv) >= 2 and argv[1] == "--serve":  # RUNTIME ... to import once
        try:
            from .persistent import serve
        except ImportError:  # run on the device, where this file's folder is on sys.path
            from persistent import serve  # type: ignore[no-redef]

        return serve(result_stream, run_spec, argv[2:])
    if len(argv) != 2:
        sys.stderr.write("usage: run.py JOB.json | run.py --facts WORKDIR | run.py --serve\n")
        return 2
    doc = run_spec(argv[1], started)
    json.dump(doc, result_stream)
    result_stream.write("\n")
    result_stream.flush()
    return 0 if doc["status"] == "ok" else 1


def run_spec(spec_path: str, started: int, session_alive: int | None = None) -> ResultDoc:
    """One job from its spec file: the result document, status ok or error (never raises).
    `started` is when this process began the job (perf_counter_ns): its exec or its fork."""
    doc: ResultDoc = {
        "schema": RESULT_SCHEMA,
        "status": "error",
        "error": None,
        "python": platform.python_version(),
        "arch": platform.machine(),
        "device": device_identity(),
        "process": "exec" if session_alive is None else "forked",
    }
    stage = "reading the job spec"
    try:
        with open(spec_path) as handle:
            job: JobSpec = json.load(handle)
        if job.get("schema") != JOB_SCHEMA:
            raise JobError("job spec schema %r is not %s" % (job.get("schema"), JOB_SCHEMA))
        doc["job_id"] = job.get("job_id")
        doc["threads"] = job.get("threads")
        if job.get("deadline_s"):
            start_watchdog(float(job["deadline_s"]), session_alive)
        running = RunningRecord(job.get("running_file"), job.get("job_id"))
        try:
            stage = "running the job"
            run_job(job, doc, started)
            doc["status"] = "ok"
        finally:
            running.remove()
    except Exception as exc:
        doc["error"] = {
            "type": type(exc).__name__,
            "message": str(exc) or repr(exc),
            "stage": stage,
            "traceback": formatted_traceback(),
            # a full disk makes many things fail, some of them wordlessly: the controller
            # tells that condition from these two
            "errno": getattr(exc, "errno", None),
            "disk_free_bytes": free_bytes(os.path.dirname(os.path.abspath(spec_path))),
        }
    doc["wall_ms"] = (time.perf_counter_ns() - started) / 1e6
    return doc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
