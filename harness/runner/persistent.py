"""A runner that stays for a device session: `python3 run.py --serve [RUNTIME ...]`.

It imports numpy and the runtimes once, waits for the controller's hello line (the proof
that its stdin is open), says who it is (`SessionHello`, with its version), then reads
`{"run": SPEC_PATH}` lines on stdin and, for each, forks a fresh child that runs the job
exactly as `run.py SPEC_PATH` would (its own process group, watchdog, `.running` file,
samplers, session built after the fork) and answers one `ForkedResult` line on stdout.
Each job still measures in a process of its own; what it no longer pays is the
interpreter's start and the imports. The fork happens before any runtime session exists
in this process; numpy's BLAS pool and onnxruntime's import-time thread do (`threads` in
the hello says how many), and both libraries are safe to fork (OpenBLAS re-creates its pool
in the child through pthread_atfork; no runtime session is built before the fork).

`{"cancel": true}` while a job runs ends the child's process group; EOF on stdin (the
controller gone, the link dropped), SIGTERM or SIGHUP end the running child and the runner.
A child whose persistent runner dies is ended by its own watchdog (`session_alive`).
Standard library + the runtime only; Python 3.8+. Never imports harness.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import select
import signal
import sys
import time
import traceback
from typing import IO, Any, Callable, Optional, TypedDict, final

try:  # imported as harness.runner.contract (the controller, the tests)
    from .contract import SESSION_SCHEMA, ResultDoc
except ImportError:  # run on the device, where this file's folder is on sys.path
    from contract import SESSION_SCHEMA, ResultDoc  # type: ignore[no-redef]

# the runner's files: the entry point, the modules it imports from its own folder, the
# sampler it starts; what the controller installs (deploy.py) and the runner's version
RUNNER_FILES = (
    "run.py", "contract.py", "device.py", "runtimes.py", "paired.py", "op_profile.py",
    "outputs.py", "measure.py", "sampler.py", "persistent.py",
)  # fmt: skip


@final
class SessionHello(TypedDict):
    """A persistent runner's first line: who it is, before any job is sent."""

    schema: str  # SESSION_SCHEMA
    runner: str  # the sha256 (16 hex) of its RUNNER_FILES: a controller of another refuses it
    pid: int
    python: str
    preloaded: list[str]  # the modules imported once, before any fork
    threads: int  # the runner's threads when it forks (numpy's BLAS pool, the runtime's)
    ready_ms: float  # its start to this line


@final
class ForkedResult(TypedDict):
    """A persistent runner's answer to a job: the child's document, or how it ended."""

    spec: str
    document: ResultDoc | None  # None: the child died before it wrote one
    exit_code: int | None  # the child's exit status, or None when a signal ended it
    signal: str | None  # "SIGSEGV", "SIGKILL", ... when one did
    stderr: str  # the tail of the child's stderr
    ended_by: str | None  # "cancel" or "stdin closed" when the runner ended the child


RunSpec = Callable[[str, int, Optional[int]], ResultDoc]
KILL_GRACE_S = 2.0
RUNNING: list[int] = []  # the child running now (its pid is its process group)


def runner_version(folder: str) -> str:
    """The sha256 (16 hex) of this runner's files, as the controller's deploy.runner_hash."""
    digest = hashlib.sha256()
    for name in RUNNER_FILES:
        with open(os.path.join(folder, name), "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:16]


def preload(runtimes: list[str]) -> list[str]:
    """numpy and the runtimes the session's jobs use, imported once: a child's import is
    then free. One that fails is left to the child, whose document says why."""
    imported = []
    for name in ["numpy"] + runtimes:
        try:
            if name == "tflite":
                try:
                    from .runtimes import import_tflite
                except ImportError:
                    from runtimes import import_tflite  # type: ignore[no-redef]
                import_tflite()
            else:
                __import__(name)
            imported.append(name)
        except Exception as exc:  # noqa: BLE001 -- the child reports it with its job
            sys.stderr.write("persistent runner: %s not preloaded: %s\n" % (name, exc))
    return imported


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def write_line(out: IO[str], record: Any) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


class Requests:
    """Lines from stdin (fd 0), read without blocking past what select says is there."""

    def __init__(self) -> None:
        self.buffer = b""
        self.closed = False

    def pending(self) -> dict[str, Any] | None:
        line, sep, rest = self.buffer.partition(b"\n")
        if not sep:
            return None
        self.buffer = rest
        try:
            request = json.loads(line.decode())
        except ValueError:
            request = {"bad": line.decode(errors="replace")[:200]}
        return request if isinstance(request, dict) else {"bad": str(request)[:200]}

    def fill(self) -> None:
        data = os.read(0, 1 << 16)
        if data:
            self.buffer += data
        else:
            self.closed = True


def serve(out: IO[str], run_spec: RunSpec, runtimes: list[str]) -> int:
    started = time.perf_counter_ns()
    folder = os.path.dirname(os.path.abspath(__file__))
    preloaded = preload(runtimes)
    alive_read, alive_write = os.pipe()  # children's watchdogs see EOF when this one dies
    wake_read, wake_write = os.pipe()  # SIGCHLD wakes the select below
    for fd in (wake_read, wake_write):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    for ending in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(ending, end_on_signal)
    hello: SessionHello = {
        "schema": SESSION_SCHEMA,
        "runner": runner_version(folder),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "preloaded": preloaded,
        "threads": thread_count(),
        "ready_ms": (time.perf_counter_ns() - started) / 1e6,
    }
    requests = Requests()
    while requests.pending() is None and not requests.closed:  # the controller speaks first
        select.select([0], [], [])
        requests.fill()
    if requests.closed:  # a shell that gives its commands no stdin: exec-per-job it is
        write_line(out, {"schema": SESSION_SCHEMA, "error": "stdin closed before the hello"})
        return 3
    write_line(out, hello)
    while True:
        request = requests.pending()
        if request is None:
            if requests.closed:
                return 0
            select.select([0], [], [])
            requests.fill()
            continue
        if "run" not in request:  # a cancel with no job running, or a line we cannot read
            continue
        spec = str(request["run"])
        child = fork_job(spec, run_spec, out, (alive_read, alive_write, wake_read, wake_write))
        status, ended_by = wait_for_child(child, requests, wake_read)
        write_line(out, forked_result(spec, child, status, ended_by))
        if requests.closed:
            return 0


class Child:
    """A forked job: its pid (its process group too), and what it sends back through two
    pipes, never a file (a full disk must not lose the document that says it is full):
    its result document, and the tail of its stdout and stderr."""

    def __init__(self, pid: int, document_fd: int, stderr_fd: int) -> None:
        self.pid = pid
        self.pipes = {document_fd: b"", stderr_fd: b""}  # open ones: what came so far
        self.document_fd, self.stderr_fd = document_fd, stderr_fd
        self.document = b""
        self.stderr = b""

    def read(self, fd: int) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            os.close(fd)
            del self.pipes[fd]
        elif fd == self.document_fd:
            self.document += data
        else:
            self.stderr = (self.stderr + data)[-STDERR_KEPT:]


STDERR_KEPT = 2000


def fork_job(spec: str, run_spec: RunSpec, out: IO[str], own_fds: tuple[int, ...]) -> Child:
    """The child: a process group of its own, stdin closed, its stdout and stderr and its
    result document in pipes to this runner; it never returns."""
    started = time.perf_counter_ns()
    document_read, document_write = os.pipe()
    stderr_read, stderr_write = os.pipe()
    pid = os.fork()
    if pid:
        RUNNING[:] = [pid]
        for fd in (document_write, stderr_write):
            os.close(fd)
        for fd in (document_read, stderr_read):
            os.set_blocking(fd, False)
        return Child(pid, document_read, stderr_read)
    code = 3
    try:
        alive_read, alive_write, wake_read, wake_write = own_fds
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)
        for fd in (alive_write, wake_read, wake_write, out.fileno(), document_read, stderr_read):
            os.close(fd)
        os.dup2(stderr_write, 1)
        os.dup2(stderr_write, 2)
        os.close(stderr_write)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        doc = run_spec(spec, started, alive_read)
        with os.fdopen(document_write, "w") as document:
            json.dump(doc, document)
        code = 0 if doc.get("status") == "ok" else 1
    except BaseException:  # noqa: BLE001 -- said on its stderr; the parent reports the rest
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def wait_for_child(child: Child, requests: Requests, wake_read: int) -> tuple[int, str | None]:
    """The child's wait status once its pipes closed, and what ended it when this runner
    did: a cancel, or EOF on stdin (the controller or the link gone), which end its
    process group first."""
    kill_at: float | None = None
    ended_by: str | None = None
    status: int | None = None
    while status is None or child.pipes:
        if status is None:
            done, waited = os.waitpid(child.pid, os.WNOHANG)
            if done:
                RUNNING[:] = []
                status = waited
                kill_at = kill_at or time.monotonic() + KILL_GRACE_S  # its pipes' holders
        watched = list(child.pipes) + [wake_read] + ([] if requests.closed else [0])
        ready, _, _ = select.select(watched, [], [], 0.2 if kill_at else 1.0)
        for fd in ready:
            if fd in child.pipes:
                child.read(fd)
        if wake_read in ready:
            drain(wake_read)
        if 0 in ready:
            requests.fill()
            request = requests.pending()
            if status is None and (
                requests.closed or (request is not None and request.get("cancel"))
            ):
                signal_group(child.pid, signal.SIGTERM)  # TERM, then KILL after a grace
                kill_at = time.monotonic() + KILL_GRACE_S
                ended_by = "stdin closed" if requests.closed else "cancel"
        if kill_at is not None and time.monotonic() >= kill_at:
            signal_group(child.pid, signal.SIGKILL)
            if status is not None:  # what still held its pipes is gone: stop reading
                for fd in list(child.pipes):
                    os.close(fd)
                child.pipes.clear()
    return status, ended_by


def drain(fd: int) -> None:
    """What the signals wrote to the wake-up pipe (non-blocking)."""
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def signal_group(pid: int, number: int) -> None:
    """The child's process group: the child, its samplers and its watchdog."""
    with contextlib.suppress(OSError):
        os.killpg(pid, number)


def end_on_signal(signum: int, frame: Any) -> None:
    for pid in RUNNING:
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_S
        while time.monotonic() < deadline and not os.waitpid(pid, os.WNOHANG)[0]:
            time.sleep(0.02)
        signal_group(pid, signal.SIGKILL)
    os._exit(128 + signum)


def forked_result(spec: str, child: Child, status: int, ended_by: str | None) -> ForkedResult:
    try:
        document = json.loads(child.document.decode()) if child.document else None
    except ValueError:  # cut short: the child died writing it
        document = None
    signalled = os.WIFSIGNALED(status)
    return {
        "spec": spec,
        "document": document,
        "exit_code": None if signalled else os.WEXITSTATUS(status),
        "signal": signal.Signals(os.WTERMSIG(status)).name if signalled else None,
        "stderr": child.stderr.decode(errors="replace"),
        "ended_by": ended_by,
    }
