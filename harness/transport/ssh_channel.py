"""A command that stays on an SSH device (the persistent runner): its own channel of the
device's connection, lines on its stdin and stdout, a dead link told by keep-alives."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable

import paramiko

from harness.errors import DeviceUnreachable
from harness.transport.channel import LineChannel


def answers_keepalive(session: paramiko.Transport, timeout_s: float) -> bool:
    """Whether the server replies to a keep-alive request within `timeout_s` (keep-alives
    alone take minutes to notice a dead link: this asks and waits for the answer)."""
    request = threading.Thread(
        target=session.global_request, args=("keepalive@openssh.com",), daemon=True
    )  # it waits for the reply; on a dead link until the connection is closed
    request.start()
    request.join(timeout_s)
    return not request.is_alive()


class SSHChannel(LineChannel):
    """A command that stays, on its own SSH channel of the device's connection."""

    def __init__(
        self,
        device_name: str,
        channel: paramiko.Channel,
        argv: list[str],
        io_timeout_s: float,
        kill_remote: Callable[[bytes], None],
    ) -> None:
        """`kill_remote` ends the command's process group on the device from the wrapper's
        marker, when closing its stdin did not end it."""
        super().__init__(device_name, argv)
        self.io_timeout_s = io_timeout_s
        self.kill_remote = kill_remote
        self.channel = channel
        self._heard = time.monotonic()  # the last sign of life from the device

    def send(self, line: str) -> None:
        try:
            self.channel.sendall(line.encode() + b"\n")
        except (paramiko.SSHException, OSError):
            raise DeviceUnreachable(self.device_name, self._ended()) from None

    def _read(self, wait_s: float) -> bool:
        channel = self.channel
        select.select([channel], [], [], wait_s)
        if channel.recv_ready() or channel.recv_stderr_ready():
            self._heard = time.monotonic()
        while channel.recv_stderr_ready():
            self._keep_stderr(channel.recv_stderr(1 << 16))
        while channel.recv_ready():
            self._stdout += channel.recv(1 << 16)
        if channel.eof_received and not channel.recv_ready():
            return False
        session = channel.get_transport()
        if session is None or not session.is_active():
            raise DeviceUnreachable(self.device_name, "the SSH connection dropped")
        probe_s = max(1.0, self.io_timeout_s / 2)
        if time.monotonic() - self._heard > probe_s:
            if not answers_keepalive(session, probe_s):
                raise DeviceUnreachable(
                    self.device_name,
                    f"the device stopped answering (no reply to an SSH keep-alive in "
                    f"{probe_s:g} s: a dead link?)",
                )
            self._heard = time.monotonic()
        return True

    def _exit_text(self) -> str:
        if self.channel.exit_status_ready():
            return f"exit status {self.channel.recv_exit_status()}"
        return "the channel ended"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(paramiko.SSHException, OSError):
            self.channel.shutdown_write()  # EOF on its stdin: it ends its job and itself
            deadline = time.monotonic() + 2.0
            while not self.channel.exit_status_ready() and time.monotonic() < deadline:
                self._read(0.1)
        if not self.channel.exit_status_ready():
            with contextlib.suppress(Exception):
                self.kill_remote(self.marker)
        self.channel.close()
