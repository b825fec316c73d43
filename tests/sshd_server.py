"""A real OpenSSH sshd on 127.0.0.1 with throwaway keys: for the tests and the benchmarks.

It is the system's sshd binary with its own config, host key and user key in a folder of
ours (never the system's sshd config). It serves the current user.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from device_files import device_file


class SSHDUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SSHServer:
    host: str
    port: int
    user: str
    user_key: Path
    host_public_key: str
    known_hosts: Path
    root: Path

    def device_toml(self, name: str, workdir: Path, **extra: object) -> str:
        """A device file for this server; the device's Python is this interpreter."""
        fields: dict[str, object] = {
            "transport": "ssh",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identity_file": str(self.user_key),
            "use_agent": False,
            "known_hosts": str(self.known_hosts),
            "python": sys.executable,
            "workdir": str(workdir),
            "connect_timeout_s": 5,
        }
        fields.update(extra)
        return device_file(fields, labels={"class": "loopback"})


def _find_sshd() -> str | None:
    return shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
    )


@contextmanager
def loopback_sshd(root: Path) -> Iterator[SSHServer]:
    binary = _find_sshd()
    if binary is None:
        raise SSHDUnavailable(
            "OpenSSH sshd is not installed: the SSH tests need a real server. Install it "
            "(`apt-get install openssh-server`, or run `make test`, which does so as root)."
        )
    for key_name in ("host_key", "user_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key_name)],
            check=True,
        )
    (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"""ListenAddress 127.0.0.1
Port {port}
HostKey {root / "host_key"}
PidFile {root / "sshd.pid"}
AuthorizedKeysFile {root / "authorized_keys"}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
MaxSessions 50
MaxStartups 50:30:100
LogLevel ERROR
"""
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with open(root / "sshd.log", "wb") as log:
        process = subprocess.Popen([binary, "-f", str(config), "-D", "-e"], stdout=log, stderr=log)
        try:
            _wait_listening(process, port, root / "sshd.log")
            host_public = (root / "host_key.pub").read_text().split()
            known_hosts = root / "known_hosts"
            known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
            yield SSHServer(
                host="127.0.0.1",
                port=port,
                user=getpass.getuser(),
                user_key=root / "user_key",
                host_public_key=f"{host_public[0]} {host_public[1]}",
                known_hosts=known_hosts,
                root=root,
            )
        finally:
            stop(process, timeout_s=10)


def stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """TERM, then KILL if it has not ended within timeout_s; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise SSHDUnavailable(f"sshd exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SSHDUnavailable("sshd did not start listening within 15 s") from None
            time.sleep(0.05)
