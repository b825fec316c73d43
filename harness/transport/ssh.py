"""SSH devices through paramiko: one connection per device, SFTP for files.

Host keys are verified against known_hosts (trust-on-first-use only when the device file
says so). Commands are argv lists joined with `shlex.join`; each runs under a wrapper that
reports its process group, so a timeout kills the remote process and its children.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import select
import shlex
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko

from harness.errors import (
    AuthFailed,
    CommandInterrupted,
    CommandTimeout,
    DeviceUnreachable,
    HostKeyRejected,
    TransportError,
)
from harness.transport.base import BaseTransport, CommandResult
from harness.transport.channel import Channel
from harness.transport.local import CANCEL_POLL_S
from harness.transport.remote_shell import WRAPPER, kill_command, strip_marker
from harness.transport.ssh_channel import SSHChannel, answers_keepalive
from harness.transport.ssh_target import SSHTarget, _known_hosts_name, _SaveNewKey

# paramiko logs connection failures with tracebacks; we raise our own errors instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class SSHTransport(BaseTransport):
    def __init__(
        self,
        device_name: str,
        target: SSHTarget,
        workdir: str,
        jump: BaseTransport | None = None,
    ) -> None:
        super().__init__(device_name)
        self.target = target
        self.jump = jump
        self._requested_workdir = workdir
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # -- lifecycle
    def _open(self) -> str:
        self._client = self._connect()
        transport = self._client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        home = self._sftp_client().normalize(".")
        workdir = posixpath.join(home, self._requested_workdir.replace("~/", "", 1))
        self._mkdirs(workdir)
        return posixpath.normpath(workdir)

    def _abort(self) -> None:
        client = self._client
        session = client.get_transport() if client is not None else None
        if session is not None:
            session.close()  # wakes every channel blocked on the dead link

    def _close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.jump is not None:
            self.jump.close()

    def _connect(self) -> paramiko.SSHClient:
        target = self.target
        client = paramiko.SSHClient()
        if os.path.exists(target.known_hosts):
            client.load_host_keys(target.known_hosts)
        if target.trust_on_first_use:
            client.set_missing_host_key_policy(_SaveNewKey(target.known_hosts))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        password = os.environ.get(target.password_env) if target.password_env else None
        missing = [key for key in target.identity_files if not os.path.isfile(key)]
        if missing:  # not a fault of the link: retrying cannot help
            raise AuthFailed(
                self.device_name,
                f"the key file {missing[0]} does not exist: fix `identity_file` in the device "
                "file (or IdentityFile in the ssh config it names)",
            )
        sock = self._tunnel() if self.jump is not None else None
        try:
            client.connect(
                target.host,
                port=target.port,
                username=target.user,
                password=password,
                key_filename=list(target.identity_files) or None,
                allow_agent=target.use_agent,
                look_for_keys=not target.identity_files,
                timeout=target.connect_timeout_s,
                banner_timeout=target.connect_timeout_s,
                auth_timeout=target.connect_timeout_s,
                channel_timeout=target.connect_timeout_s,
                sock=sock,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyRejected(
                self.device_name,
                f"the host key of {target} does not match {target.known_hosts} "
                f"(got {exc.key.get_name()} {exc.key.fingerprint}). Nothing was run. If the "
                f"device was reinstalled, verify the new key, then `ssh-keygen -f "
                f"{target.known_hosts} -R {_known_hosts_name(target)}` and add it again.",
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            how = ", ".join(target.identity_files) or "the agent / default keys"
            raise AuthFailed(
                self.device_name,
                f"{target} refused authentication with {how} ({exc}). Check `user` and "
                "`identity_file` under [connection] in the device file, and that the public "
                "key is in the device's ~/.ssh/authorized_keys.",
            ) from None
        except paramiko.SSHException as exc:
            session = client.get_transport()
            greeted = bool(session and session.remote_version)
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyRejected(
                    self.device_name,
                    f"the host key of {target} is not in {target.known_hosts}; nothing was "
                    f"run. Verify the device's fingerprint, then add it: `ssh-keyscan -p "
                    f"{target.port} {target.host} >> {target.known_hosts}`, or set "
                    "trust_on_first_use = true under [connection] in the device file.",
                ) from None
            if not greeted:
                raise DeviceUnreachable(
                    self.device_name,
                    f"no SSH greeting from {target.described} within "
                    f"{target.connect_timeout_s:g} s: is an SSH server listening there, and is "
                    "the device responsive?",
                ) from None
            raise DeviceUnreachable(
                self.device_name, f"SSH handshake with {target} failed: {exc}"
            ) from None
        except TimeoutError:
            client.close()
            raise DeviceUnreachable(
                self.device_name,
                f"timed out after {target.connect_timeout_s:g} s connecting to "
                f"{target.described}; is the device on and the address right?",
            ) from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            client.close()
            raise DeviceUnreachable(
                self.device_name,
                f"connection refused by {target.described} ({exc.strerror}); is sshd running "
                "there and the port right?",
            ) from None
        except socket.gaierror as exc:
            client.close()
            raise DeviceUnreachable(
                self.device_name,
                f"cannot resolve host name '{target.host}' ({target.described}): {exc.strerror}",
            ) from None
        except OSError as exc:
            client.close()
            raise DeviceUnreachable(
                self.device_name, f"cannot connect to {target.described}: {exc}"
            ) from None
        return client

    def _tunnel(self) -> paramiko.Channel:
        assert self.jump is not None
        self.jump.open()
        assert isinstance(self.jump, SSHTransport) and self.jump._client is not None
        jump_transport = self.jump._client.get_transport()
        assert jump_transport is not None
        try:
            return jump_transport.open_channel(
                "direct-tcpip",
                (self.target.host, self.target.port),
                ("127.0.0.1", 0),
                timeout=self.target.connect_timeout_s,
            )
        except (paramiko.SSHException, OSError) as exc:
            raise DeviceUnreachable(
                self.device_name,
                f"jump host '{self.jump.device_name}' could not reach {self.target}: {exc}",
            ) from None

    # -- commands
    def _run(
        self, argv: list[str], timeout_s: float, cancel: threading.Event | None = None
    ) -> CommandResult:
        assert self._client is not None
        started = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        command = shlex.join(["sh", "-c", WRAPPER, "harness-run", *argv])
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise DeviceUnreachable(self.device_name, "the SSH connection was lost")
        try:
            channel = transport.open_session(timeout=self.target.connect_timeout_s)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError) as exc:
            raise DeviceUnreachable(self.device_name, f"cannot start a command: {exc}") from None
        stdout, stderr = bytearray(), bytearray()
        heard = time.monotonic()  # the last sign of life from the device
        probe_s = max(1.0, self.io_timeout_s / 2)
        try:
            while True:
                if channel.recv_ready() or channel.recv_stderr_ready():
                    heard = time.monotonic()
                while channel.recv_ready():
                    stdout += channel.recv(1 << 16)
                while channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(1 << 16)
                if channel.exit_status_ready() and channel.eof_received:
                    if not channel.recv_ready() and not channel.recv_stderr_ready():
                        break
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._kill_remote(bytes(stderr))
                    raise CommandTimeout(
                        self.device_name, argv, timeout_s, strip_marker(bytes(stderr))
                    )
                if cancel is not None and cancel.is_set():
                    self._kill_remote(bytes(stderr))
                    raise CommandInterrupted(self.device_name, argv)
                if not transport.is_active():
                    raise DeviceUnreachable(
                        self.device_name, "the SSH connection dropped while a command ran"
                    )
                if time.monotonic() - heard > probe_s:
                    if not answers_keepalive(transport, probe_s):
                        raise DeviceUnreachable(
                            self.device_name,
                            f"the device stopped answering while a command ran (no reply to "
                            f"an SSH keep-alive in {probe_s:g} s: a dead link?)",
                        )
                    heard = time.monotonic()
                select.select([channel], [], [], min(remaining, CANCEL_POLL_S))
            exit_code = channel.recv_exit_status()
        finally:
            channel.close()
        return CommandResult(
            tuple(argv),
            stdout.decode(errors="replace"),
            strip_marker(bytes(stderr)),
            exit_code,
            time.perf_counter() - started,
        )

    def _start(self, argv: list[str]) -> Channel:
        assert self._client is not None
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise DeviceUnreachable(self.device_name, "the SSH connection was lost")
        try:
            channel = transport.open_session(timeout=self.target.connect_timeout_s)
            channel.exec_command(shlex.join(["sh", "-c", WRAPPER, "harness-run", *argv]))
        except (paramiko.SSHException, OSError) as exc:
            raise DeviceUnreachable(self.device_name, f"cannot start a command: {exc}") from None
        return SSHChannel(self.device_name, channel, argv, self.io_timeout_s, self._kill_remote)

    def _kill_remote(self, stderr: bytes) -> None:
        """Kill the timed-out command's process group on the device (TERM, then KILL)."""
        killer = kill_command(stderr)
        if killer is None:
            return
        assert self._client is not None
        try:
            _, out, _ = self._client.exec_command(killer, timeout=10)
            out.channel.recv_exit_status()
        except (paramiko.SSHException, OSError):
            pass

    # -- files
    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            assert self._client is not None
            try:
                self._sftp = self._client.open_sftp()
            except paramiko.SSHException as exc:
                raise TransportError(
                    self.device_name,
                    f"SFTP is not available ({exc}); enable 'Subsystem sftp' in the device's sshd",
                ) from None
        return self._sftp

    def _first_symlink(self, paths: list[str]) -> str | None:
        with self._sftp_errors("looking for symbolic links"):
            sftp = self._sftp_client()
            for path in paths:
                try:
                    if stat.S_ISLNK(sftp.lstat(path).st_mode or 0):
                        return path
                except FileNotFoundError:
                    return None  # nothing below a path that is not there
        return None

    def _mkdirs(self, path: str) -> None:
        sftp = self._sftp_client()
        missing: list[str] = []
        current = path
        while current not in ("", "/"):
            try:
                sftp.stat(current)
                break
            except FileNotFoundError:
                missing.append(current)
                current = posixpath.dirname(current)
        for folder in reversed(missing):
            sftp.mkdir(folder)

    def _put(self, local: Path, remote: str) -> None:
        with self._sftp_errors(f"copying to {remote}"):
            self._mkdirs(posixpath.dirname(remote))
            tmp = f"{remote}.{uuid.uuid4().hex[:8]}.part"
            sftp = self._sftp_client()
            try:
                sftp.put(str(local), tmp)
            except OSError:
                with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
                    sftp.remove(tmp)  # a disk-full upload leaves no half file behind
                raise
            sftp.posix_rename(tmp, remote)

    def _put_bytes(self, data: bytes, remote: str) -> None:
        with self._sftp_errors(f"writing {remote}"):
            self._mkdirs(posixpath.dirname(remote))
            tmp = f"{remote}.{uuid.uuid4().hex[:8]}.part"
            sftp = self._sftp_client()
            with sftp.open(tmp, "wb") as handle:
                handle.write(data)
            sftp.posix_rename(tmp, remote)

    def _get(self, remote: str, local: Path) -> None:
        with self._sftp_errors(f"fetching {remote}"):
            self._sftp_client().get(remote, str(local))

    def _exists(self, remote: str) -> bool:
        with self._sftp_errors(f"looking up {remote}"):
            try:
                self._sftp_client().stat(remote)
            except FileNotFoundError:
                return False
            return True

    @contextlib.contextmanager
    def _sftp_errors(self, what: str) -> Iterator[None]:
        """paramiko's errors as ours: a dropped connection is DeviceUnreachable (worth a
        retry); a failure the server reported on a live one is a TransportError."""
        try:
            yield
        except FileNotFoundError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            session = self._client.get_transport() if self._client is not None else None
            if session is None or not session.is_active():
                raise DeviceUnreachable(
                    self.device_name,
                    f"the connection was lost while {what}: {exc or type(exc).__name__}",
                ) from None
            raise TransportError(self.device_name, f"{what} failed: {exc}") from None
