"""The SSH transport against a real OpenSSH sshd on 127.0.0.1."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import SSHServer, free_port, pids_matching

from harness.config import load_device, load_inventory
from harness.errors import (
    AuthFailed,
    CommandTimeout,
    DeviceUnreachable,
    HostKeyRejected,
    RemotePathError,
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


def test_argv_reaches_the_device_unchanged(tmp_path: Path, sshd: SSHServer) -> None:
    tricky = ["a b", "it's", '"q"', "$(touch pwned)", "; rm -rf /", "*", "", "ü\tx"]
    with ssh_transport(tmp_path, sshd) as transport:
        result = transport.run_check(
            [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *tricky],
            timeout_s=30,
        )
    import json

    assert json.loads(result.stdout) == tricky
    assert not Path("pwned").exists()


def test_exit_status_and_stderr_come_back(tmp_path: Path, sshd: SSHServer) -> None:
    with ssh_transport(tmp_path, sshd) as transport:
        result = transport.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout_s=30)
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")


def test_timeout_kills_the_remote_process_group(tmp_path: Path, sshd: SSHServer) -> None:
    marker = f"300.{time.monotonic_ns()}"  # a unique sleep duration marks the processes
    with ssh_transport(tmp_path, sshd) as transport:
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match="timed out after 1 s"):
            # a child in the background and a foreground one: both must die
            transport.run(["sh", "-c", f"sleep {marker} & exec sleep {marker}"], timeout_s=1)
        assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while pids_matching(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_matching(marker) == []


def test_files_go_and_come_back_inside_the_workdir(tmp_path: Path, sshd: SSHServer) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00model" * 1000)
    with ssh_transport(tmp_path, sshd) as transport:
        remote, sent = transport.put_content_addressed(source, "models", "abc123")
        assert sent and remote == f"{transport.workdir}/models/abc123.bin"
        assert transport.put_content_addressed(source, "models", "abc123") == (remote, False)
        transport.put_bytes(b"spec", "jobs/run/one.json")
        back = tmp_path / "back.bin"
        transport.get(remote, back)
        assert back.read_bytes() == source.read_bytes()
        assert transport.exists("jobs/run/one.json")
        for escape in ("../outside", "/etc/passwd", "models/../../x"):
            with pytest.raises(RemotePathError, match="leaves the device workdir"):
                transport.put_bytes(b"x", escape)
    assert not (tmp_path / "outside").exists()


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
        f'transport = "ssh"\nssh_alias = "board"\nssh_config = "{config}"\n'
        f'proxy_jump = "gateway"\nknown_hosts = "{sshd.known_hosts}"\nuse_agent = false\n'
        f'workdir = "{tmp_path / "board-wd"}"\n'
    )
    inventory = load_inventory(devices)
    with open_transport(inventory["board"], inventory) as transport:
        assert transport.run_check(["echo", "through"], timeout_s=10).stdout == "through\n"
        assert transport.jump is not None  # type: ignore[attr-defined]
