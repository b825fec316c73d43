"""Android phones through the `adb` client: `adb -s SERIAL shell|push|pull`.

We drive the `adb` executable (Debian package `adb`, or the SDK's platform-tools) rather than
a Python adb library: labs already have it, it talks to an adb server on another machine
with `-H/-P`, and the tests can put a stand-in `adb` first on PATH and exercise this exact
code path. Every command is an argv joined with `shlex.join` into the one string `adb shell`
takes. With shell protocol v2 (adb's `shell_v2` feature, Android 7+) the exit status and
stderr come back as they are; without it stderr is merged into stdout and the exit status is
lost, so an exit marker is appended and parsed. A timeout kills the local adb client and
then the remote process group, whose pid the wrapper reported.
"""

from __future__ import annotations

import contextlib
import posixpath
import shlex
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from harness.errors import (
    CommandInterrupted,
    CommandTimeout,
    DeviceUnreachable,
    TransportError,
)
from harness.transport.base import BaseTransport, CommandResult
from harness.transport.channel import Channel, PipeChannel
from harness.transport.local import communicate_until, kill_process_group
from harness.transport.remote_shell import MARKER, WRAPPER, kill_command, strip_marker

ADMIN_TIMEOUT_S = 30.0
_EXIT_MARKER = "harness-exit:"


class AdbTransport(BaseTransport):
    def __init__(
        self,
        device_name: str,
        serial: str,
        workdir: str,
        adb: str = "adb",
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(device_name)
        self.serial = serial
        self._requested_workdir = workdir
        self._client = [adb]
        if host:
            self._client += ["-H", host]
        if port:
            self._client += ["-P", str(port)]
        self._client += ["-s", serial]
        self.shell_v2 = True

    # -- lifecycle
    def _open(self) -> str:
        state = self._adb(["get-state"], ADMIN_TIMEOUT_S)
        if state.returncode != 0 or state.stdout.strip() != "device":
            detail = (state.stderr or state.stdout).strip() or f"state {state.stdout.strip()!r}"
            raise DeviceUnreachable(
                self.device_name, f"adb serial {self.serial}: {detail}{_hint(detail)}"
            )
        features = self._adb(["features"], ADMIN_TIMEOUT_S)
        self.shell_v2 = "shell_v2" in features.stdout.replace(",", " ").split()
        workdir = self._requested_workdir
        if not posixpath.isabs(workdir):
            raise TransportError(
                self.device_name, f"workdir '{workdir}' must be an absolute path on the phone"
            )
        made = self._run(["mkdir", "-p", workdir], ADMIN_TIMEOUT_S)
        if made.exit_code != 0:
            raise TransportError(
                self.device_name, f"cannot create workdir {workdir}: {made.stderr or made.stdout}"
            )
        return posixpath.normpath(workdir)

    def _close(self) -> None:
        pass

    # -- commands
    def _run(
        self, argv: list[str], timeout_s: float, cancel: threading.Event | None = None
    ) -> CommandResult:
        started = time.perf_counter()
        remote = shlex.join(["sh", "-c", WRAPPER, "harness-run", *argv])
        if not self.shell_v2:
            remote += f'; echo "{_EXIT_MARKER}$?"'
        try:
            proc = subprocess.Popen(
                [*self._client, "shell", remote],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise DeviceUnreachable(self.device_name, _NO_CLIENT.format(self._client[0])) from None
        try:
            output = communicate_until(proc, timeout_s, cancel)
        except subprocess.TimeoutExpired:
            kill_process_group(proc)
            out, err = proc.communicate()
            self._kill_remote(err if err.startswith(MARKER.encode()) else out)
            raise CommandTimeout(self.device_name, argv, timeout_s, strip_marker(err)) from None
        if output is None:
            kill_process_group(proc)
            out, err = proc.communicate()
            self._kill_remote(err if err.startswith(MARKER.encode()) else out)
            raise CommandInterrupted(self.device_name, argv)
        out, err = output
        stderr = strip_marker(err)
        if self.shell_v2:
            stdout, exit_code = out.decode(errors="replace"), proc.returncode
        else:  # stderr arrives merged into stdout: the wrapper's marker and our exit marker
            stdout, exit_code = _split_exit_marker(strip_marker(out))
        if exit_code == 255 and "error: " in stderr and "device" in stderr:
            raise DeviceUnreachable(self.device_name, stderr.strip() + _hint(stderr))
        return CommandResult(tuple(argv), stdout, stderr, exit_code, time.perf_counter() - started)

    def _start(self, argv: list[str]) -> Channel:
        """`adb shell` with stdin kept open: shell protocol v2 carries it (and its close)."""
        remote = shlex.join(["sh", "-c", WRAPPER, "harness-run", *argv])
        return PipeChannel(
            self.device_name, argv, [*self._client, "shell", remote], self._kill_remote
        )

    def _kill_remote(self, marker_stream: bytes) -> None:
        killer = kill_command(marker_stream)
        if killer is not None:
            with contextlib.suppress(DeviceUnreachable):  # the timeout is what gets reported
                self._adb(["shell", killer], ADMIN_TIMEOUT_S)

    # -- files
    def _put(self, local: Path, remote: str) -> None:
        parent = posixpath.dirname(remote)
        self._run(["mkdir", "-p", parent], ADMIN_TIMEOUT_S)
        partial = f"{remote}.part"
        self._checked_adb(["push", str(local), partial], f"push {local} to {partial}")
        moved = self._run(["mv", "-f", partial, remote], ADMIN_TIMEOUT_S)
        if moved.exit_code != 0:
            raise TransportError(
                self.device_name, f"cannot move {partial} into place: {moved.stderr}"
            )

    def _put_bytes(self, data: bytes, remote: str) -> None:
        with tempfile.TemporaryDirectory(prefix="harness-adb-") as folder:
            staged = Path(folder) / posixpath.basename(remote)
            staged.write_bytes(data)
            self._put(staged, remote)

    def _get(self, remote: str, local: Path) -> None:
        self._checked_adb(["pull", remote, str(local)], f"pull {remote}")

    def _exists(self, remote: str) -> bool:
        return self._run(["test", "-e", remote], ADMIN_TIMEOUT_S).exit_code == 0

    # -- the adb client itself
    def _adb(self, args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [*self._client, *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except FileNotFoundError:
            raise DeviceUnreachable(self.device_name, _NO_CLIENT.format(self._client[0])) from None
        except subprocess.TimeoutExpired:
            raise DeviceUnreachable(
                self.device_name, f"adb {' '.join(args)} did not answer in {timeout_s:.0f} s"
            ) from None

    def _checked_adb(self, args: list[str], what: str) -> None:
        done = self._adb(args, max(ADMIN_TIMEOUT_S, 600.0))
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()
            if "No space left" in detail:
                detail += " (the phone's storage is full: free space under the workdir)"
            raise TransportError(self.device_name, f"adb {what} failed: {detail}")


_NO_CLIENT = (
    "the adb client '{}' was not found: install Debian's 'adb' package (or Android "
    'platform-tools) or set `adb = "/path/to/adb"` under [connection] in the device file'
)


def _hint(detail: str) -> str:
    if "unauthorized" in detail:
        return " (accept the 'Allow USB debugging' prompt on the phone)"
    if "offline" in detail:
        return " (reconnect the USB cable or restart adbd: `adb reconnect`)"
    if "not found" in detail:
        return " (is it plugged in? `adb devices` lists the serials this adb server sees)"
    return ""


def _split_exit_marker(stdout: str) -> tuple[str, int]:
    """Legacy `adb shell` loses the exit status; our appended `echo` carries it."""
    head, sep, tail = stdout.rstrip("\n").rpartition(_EXIT_MARKER)
    if not sep or not tail.strip().isdigit():
        return stdout, 255
    return head, int(tail.strip())
