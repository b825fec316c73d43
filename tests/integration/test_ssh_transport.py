"""What only the SSH transport does, against a real OpenSSH sshd on 127.0.0.1: host keys,
authentication, unreachable and silent servers, ~/.ssh/config aliases and ProxyJump. The
behaviour every transport shares is in test_transport_contract.py."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import SSHServer, free_port

from harness.config import load_device, load_inventory
from harness.errors import (
    AuthFailed,
    DeviceUnreachable,
    HostKeyRejected,
)
from harness.transport import open_transport
from harness.transport.base import BaseTransport


def ssh_transport(
    tmp_path: Path, sshd: SSHServer, name: str = "loop", **extra: object
) -> BaseTransport:
    devices = tmp_path / "devices"
    devices.mkdir(exist_ok=True)
    path = devices / f"{name}.toml"
    path.write_text(sshd.device_toml(name, tmp_path / f"{name}-workdir", **extra))
    return open_transport(load_device(path), load_inventory(devices))


def test_unknown_host_key_is_refused_and_nothing_runs(tmp_path: Path, sshd: SSHServer) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    transport = ssh_transport(tmp_path, sshd, known_hosts=str(empty))
    with pytest.raises(HostKeyRejected, match=r"not in .*ssh-keyscan -p \d+ 127\.0\.0\.1"):
        transport.run(["true"], timeout_s=10)
    assert not (tmp_path / "loop-workdir").exists()


def test_trust_on_first_use_records_the_key(tmp_path: Path, sshd: SSHServer) -> None:
    known = tmp_path / "tofu_known_hosts"
    with ssh_transport(
        tmp_path, sshd, known_hosts=str(known), trust_on_first_use=True
    ) as transport:
        assert transport.run(["true"], timeout_s=10).exit_code == 0
    assert sshd.host_public_key.split()[1] in known.read_text()


def test_changed_host_key_is_refused_and_nothing_runs(tmp_path: Path, sshd: SSHServer) -> None:
    import subprocess

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True
    )
    other = (tmp_path / "other.pub").read_text().split()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    transport = ssh_transport(tmp_path, sshd, known_hosts=str(wrong), trust_on_first_use=True)
    with pytest.raises(HostKeyRejected, match="does not match"):
        transport.run(["true"], timeout_s=10)
    assert not (tmp_path / "loop-workdir").exists()


def test_wrong_key_is_an_auth_failure(tmp_path: Path, sshd: SSHServer) -> None:
    import subprocess

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")],
        check=True,
    )
    transport = ssh_transport(tmp_path, sshd, identity_file=str(tmp_path / "stranger"))
    with pytest.raises(AuthFailed, match="refused authentication.*authorized_keys"):
        transport.run(["true"], timeout_s=10)


def test_closed_port_is_unreachable(tmp_path: Path, sshd: SSHServer) -> None:
    transport = ssh_transport(tmp_path, sshd, port=free_port())
    with pytest.raises(DeviceUnreachable, match="connection refused"):
        transport.run(["true"], timeout_s=10)


def test_silent_server_times_out(tmp_path: Path, sshd: SSHServer) -> None:
    """A port that accepts TCP but never speaks SSH (a hung board, a wrong service)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        transport = ssh_transport(
            tmp_path, sshd, port=listener.getsockname()[1], connect_timeout_s=1
        )
        started = time.monotonic()
        with pytest.raises(DeviceUnreachable, match="no SSH greeting from .* within 1 s"):
            transport.run(["true"], timeout_s=10)
        assert time.monotonic() - started < 8
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_ssh_config_alias_and_proxy_jump(tmp_path: Path, sshd: SSHServer) -> None:
    """A device named by an ~/.ssh/config alias, reached through a jump device."""
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host board\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.user_key}\n"
    )
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "gateway.toml").write_text(
        sshd.device_toml("gateway", tmp_path / "gw", role="gateway")
    )
    (devices / "board.toml").write_text(
        'transport = "ssh"\n[connection]\nssh_alias = "board"\n'
        f'ssh_config = "{config}"\nproxy_jump = "gateway"\n'
        f'known_hosts = "{sshd.known_hosts}"\nuse_agent = false\n'
        f'[placement]\nworkdir = "{tmp_path / "board-wd"}"\n'
    )
    inventory = load_inventory(devices)
    with open_transport(inventory["board"], inventory) as transport:
        assert transport.run_check(["echo", "through"], timeout_s=10).stdout == "through\n"
        assert transport.jump is not None  # type: ignore[attr-defined]
