"""The built-in `local` device: this machine, through subprocess and the file system."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from harness.errors import CommandInterrupted, CommandTimeout, TransportError
from harness.transport.base import BaseTransport, CommandResult
from harness.transport.channel import Channel, PipeChannel

KILL_GRACE_S = 2.0
CANCEL_POLL_S = 0.25  # how soon an interrupted command is noticed


class LocalTransport(BaseTransport):
    def __init__(self, device_name: str, workdir: str) -> None:
        super().__init__(device_name)
        self._requested_workdir = workdir

    def _open(self) -> str:
        path = Path(self._requested_workdir).expanduser().resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportError(self.device_name, f"cannot create workdir {path}: {exc}") from exc
        return str(path)

    def _close(self) -> None:
        pass

    def _run(
        self, argv: list[str], timeout_s: float, cancel: threading.Event | None = None
    ) -> CommandResult:
        started = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, so a timeout kills all of it
            )
        except FileNotFoundError:
            return CommandResult(tuple(argv), "", f"{argv[0]}: not found", 127, 0.0)
        try:
            output = communicate_until(proc, timeout_s, cancel)
        except subprocess.TimeoutExpired:
            kill_process_group(proc)
            _, stderr = proc.communicate()
            raise CommandTimeout(
                self.device_name, argv, timeout_s, stderr.decode(errors="replace")
            ) from None
        if output is None:
            kill_process_group(proc)
            proc.communicate()
            raise CommandInterrupted(self.device_name, argv)
        stdout, stderr = output
        return CommandResult(
            tuple(argv),
            stdout.decode(errors="replace"),
            stderr.decode(errors="replace"),
            proc.returncode,
            time.perf_counter() - started,
        )

    def _start(self, argv: list[str]) -> Channel:
        return PipeChannel(self.device_name, argv, argv)

    def _put(self, local: Path, remote: str) -> None:
        target = Path(remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_beside(target)
        shutil.copyfile(local, tmp)
        os.replace(tmp, target)

    def _put_bytes(self, data: bytes, remote: str) -> None:
        target = Path(remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_beside(target)
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def _first_symlink(self, paths: list[str]) -> str | None:
        return next((path for path in paths if os.path.islink(path)), None)

    def _get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def _exists(self, remote: str) -> bool:
        return os.path.exists(remote)


def _temp_beside(target: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    return Path(name)


def communicate_until(
    proc: subprocess.Popen[bytes], timeout_s: float, cancel: threading.Event | None
) -> tuple[bytes, bytes] | None:
    """`proc.communicate(timeout=timeout_s)`, looking at `cancel` every CANCEL_POLL_S:
    None once it is set (the process still running). Output is not lost between polls
    (communicate may be called again after its TimeoutExpired)."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            if cancel is None:
                return proc.communicate(timeout=max(0.0, remaining))
            return proc.communicate(timeout=max(0.0, min(remaining, CANCEL_POLL_S)))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout_s) from None
            if cancel is not None and cancel.is_set():
                return None


def kill_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        if sig == signal.SIGTERM:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=KILL_GRACE_S)
    proc.wait()
