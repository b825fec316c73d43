"""Shared fixtures: an isolated HOME, a real OpenSSH sshd on 127.0.0.1, device files.

The sshd is the system's OpenSSH binary with a throwaway config, host key and user key in a
temp dir (never the system sshd config). It serves the current user; the "device" side runs
this interpreter, which has onnxruntime and LiteRT installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"


def _find_sshd() -> str | None:
    return shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
    )


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
    process: subprocess.Popen[bytes]

    def device_toml(self, name: str, workdir: Path, **extra: object) -> str:
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
        lines = [
            f"{key} = {_toml_value(value)}" for key, value in fields.items() if value is not None
        ]
        lines += ["", "[labels]", 'class = "loopback"']
        return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep the user's ~/.ssh/config, known_hosts, agent and HARNESS_* out of every test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    for key in list(os.environ):
        if key.startswith("HARNESS_"):
            monkeypatch.delenv(key)
    return home


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    binary = _find_sshd()
    if binary is None:
        pytest.fail(
            "OpenSSH sshd is not installed: the SSH tests need a real server. Install it "
            "(`apt-get install openssh-server`, or run `make test`, which does so as root)."
        )
    root = tmp_path_factory.mktemp("sshd")
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
    log = open(root / "sshd.log", "wb")  # noqa: SIM115 - closed in teardown
    process = subprocess.Popen([binary, "-f", str(config), "-D", "-e"], stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            pytest.fail(f"sshd exited: {(root / 'sshd.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("sshd did not start listening within 15 s")
            time.sleep(0.05)
    host_public = (root / "host_key.pub").read_text().split()
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    import getpass

    try:
        yield SSHServer(
            host="127.0.0.1",
            port=port,
            user=getpass.getuser(),
            user_key=root / "user_key",
            host_public_key=f"{host_public[0]} {host_public[1]}",
            known_hosts=known_hosts,
            root=root,
            process=process,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A project-like folder: devices/, models/ (manifests of the bundled models), plans/."""
    (tmp_path / "devices").mkdir()
    (tmp_path / "plans").mkdir()
    models = tmp_path / "models"
    models.mkdir()
    for manifest in MODELS_DIR.glob("*.toml"):
        text = manifest.read_text().replace('file = "cache/', f'file = "{MODELS_DIR}/cache/')
        (models / manifest.name).write_text(text)
    return tmp_path


def bundled_model(name: str) -> Path:
    path = MODELS_DIR / "cache" / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make models` (make test does it first)")
    return path


def pids_matching(pattern: str) -> list[int]:
    """Processes whose command line contains `pattern` (the device is this machine)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pattern in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found
