"""A command that stays: started once on the device, spoken to in lines on its stdin and
stdout for as long as the session lasts (the persistent runner, harness/runner/persistent.py).

`Transport.start(argv)` gives a `Channel`. `LineChannel` holds what every transport shares
(the line buffer, the timeout, the interrupt); each transport reads and writes its own pipe
(`PipeChannel`: a local process, or the `adb shell` client; ssh.py: a paramiko channel).
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Protocol

from harness.errors import CommandInterrupted, CommandTimeout, DeviceUnreachable
from harness.transport.remote_shell import strip_marker

POLL_S = 0.25  # how soon an interrupt is noticed while a line is awaited
STDERR_KEPT = 4000  # the tail of the command's stderr kept, for a message


class Channel(Protocol):
    """A running command's stdin and stdout, as lines."""

    device_name: str
    argv: list[str]
    interrupted: threading.Event | None  # the transport's: set by Transport.interrupt

    def send(self, line: str) -> None:
        """One line to its stdin; DeviceUnreachable when the command or the link is gone."""

    def receive(self, timeout_s: float, interruptible: bool = False) -> str:
        """Its next line on stdout. CommandTimeout after `timeout_s`; CommandInterrupted,
        when `interruptible`, once the transport is interrupted (the command left running:
        the caller decides); DeviceUnreachable when its stdout closes (it ended, or the
        link dropped)."""

    def stderr_tail(self) -> str: ...

    def close(self) -> None:
        """Its stdin closed, then its process group on the device ended."""


class LineChannel:
    """The shared half: lines out of the bytes a transport reads."""

    def __init__(self, device_name: str, argv: list[str]) -> None:
        self.device_name = device_name
        self.argv = argv
        self._stdout = b""
        self._stderr = b""
        self.marker = b""  # the wrapper's first stderr line: the remote pid and group
        self.interrupted: threading.Event | None = None  # the transport's (Transport.start)
        self._closed = False

    def receive(self, timeout_s: float, interruptible: bool = False) -> str:
        deadline = time.monotonic() + timeout_s
        cancel = self.interrupted if interruptible else None
        while b"\n" not in self._stdout:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandTimeout(self.device_name, self.argv, timeout_s, self.stderr_tail())
            if cancel is not None and cancel.is_set():
                raise CommandInterrupted(self.device_name, self.argv)
            if not self._read(min(remaining, POLL_S)):
                raise DeviceUnreachable(self.device_name, self._ended())
        line, _, self._stdout = self._stdout.partition(b"\n")
        return line.decode(errors="replace")

    def stderr_tail(self) -> str:
        return strip_marker(self._stderr[-STDERR_KEPT:] if self._stderr else b"").strip()

    def _keep_stderr(self, data: bytes) -> None:
        if not self.marker and b"\n" in self._stderr + data:
            self.marker = (self._stderr + data).split(b"\n", 1)[0] + b"\n"
        self._stderr = (self._stderr + data)[-(STDERR_KEPT + 200) :]

    def _ended(self) -> str:
        tail = self.stderr_tail()
        return f"the persistent runner's channel closed ({self._exit_text()})" + (
            f"; its stderr: {' | '.join(tail.splitlines()[-5:])}" if tail else ""
        )

    # what a transport implements
    def _read(self, wait_s: float) -> bool:
        """Read what arrives within `wait_s` into the buffers; False once stdout is closed."""
        raise NotImplementedError

    def _exit_text(self) -> str:
        raise NotImplementedError


class PipeChannel(LineChannel):
    """A local process (the `local` device's runner, or the `adb shell` client)."""

    def __init__(
        self,
        device_name: str,
        argv: list[str],
        command: list[str],
        kill_remote: Callable[[bytes], None] | None = None,
    ) -> None:
        """`command` runs `argv` (itself, or `adb shell` with it); `kill_remote` ends the
        command on the device from the wrapper's marker, when ending the client does not."""
        super().__init__(device_name, argv)
        self.kill_remote = kill_remote
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: close() ends all of it
            )
        except FileNotFoundError:
            raise DeviceUnreachable(device_name, f"{command[0]}: not found") from None
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._fds = {self.proc.stdout.fileno(): "out", self.proc.stderr.fileno(): "err"}

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise DeviceUnreachable(self.device_name, self._ended()) from None

    def _read(self, wait_s: float) -> bool:
        if "out" not in self._fds.values():
            return False
        ready, _, _ = select.select(list(self._fds), [], [], wait_s)
        for fd in ready:
            data = os.read(fd, 1 << 16)
            if self._fds[fd] == "out":
                self._stdout += data
            else:
                self._keep_stderr(data)
            if not data:
                del self._fds[fd]
        return "out" in self._fds.values()

    def _exit_text(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1.0)
        code = self.proc.returncode
        return "still running" if code is None else f"exit status {code}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait()
            if self.kill_remote is not None:
                self.kill_remote(self.marker)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
