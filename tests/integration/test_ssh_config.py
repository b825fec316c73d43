"""ssh config files read as OpenSSH reads them: the harness against OpenSSH's own `ssh -G`
on config files written here (Include, Match host, wildcards and negation, tokens, several
IdentityFile lines, ProxyJump to an alias), both through the client and through the
paramiko fallback; then a two-hop ProxyJump chain over the real sshd."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SSHServer, harness

from harness.config import load_inventory
from harness.transport import open_transport
from harness.transport.ssh_config import RESOLVER_ENV, parse_ssh_g, resolve_host


def write_configs(folder: Path) -> Path:
    (folder / "conf.d").mkdir()
    (folder / "conf.d" / "lab.conf").write_text(
        "Host pi-inc\n  HostName 10.200.9.9\n  ProxyJump jump1,jump2\n"
    )
    config = folder / "config"
    config.write_text(
        f"Include {folder}/conf.d/*.conf\n"
        "Host pi-*\n  User pi\n"
        f"  IdentityFile {folder}/%n_%p_key\n  IdentityFile {folder}/%h-%r.key\n"
        "Host !pi-bad pi-*\n  Port 2201\n"
        "Match host pi-9\n  User nine\n  Port 2209\n"
        "Host jump1\n  HostName 10.200.1.1\n  User gw\n"
        "Host jump2\n  HostName 10.200.1.2\n  ProxyJump jump1\n"
        "Host *.lab.example\n  User bench\n  Port 2222\n"
    )
    return config


def ssh_g(alias: str, config: Path, *options: str) -> dict[str, list[str]]:
    done = subprocess.run(["ssh", "-G", "-F", str(config), *options, alias], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=True, timeout=30)  # fmt: skip
    return parse_ssh_g(done.stdout)


@pytest.fixture(params=["openssh", "paramiko"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each resolver in turn: the OpenSSH client, and the paramiko fallback."""
    if request.param == "paramiko":
        monkeypatch.setenv(RESOLVER_ENV, "paramiko")
    return str(request.param)


def test_the_harness_resolves_as_ssh_G_does(resolver: str, tmp_path: Path) -> None:
    config = write_configs(tmp_path)
    for alias in ("pi-inc", "pi-bad", "pi-9", "jump2", "bench1.lab.example", "plain-host"):
        truth = ssh_g(alias, config)
        ours = resolve_host(alias, str(config))
        assert ours.hostname == truth["hostname"][0], (resolver, alias)
        assert ours.port == int(truth["port"][0]), (resolver, alias)
        assert ours.user == truth["user"][0], (resolver, alias)
        assert ours.proxy_jump == truth.get("proxyjump", [None])[0], (resolver, alias)
    # the tokens of IdentityFile, expanded as the client expands them
    inc = resolve_host("pi-inc", str(config))
    assert inc.identity_files == (f"{tmp_path}/pi-inc_2201_key", f"{tmp_path}/10.200.9.9-pi.key")
    assert resolve_host("pi-9", str(config)).user == "pi"  # the first match wins, not Match


def test_the_C_token_is_the_clients_own_hash(resolver: str, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        f"Host board\n  HostName 10.200.3.3\n  User u\n  IdentityFile {tmp_path}/%C\n"
    )
    (expected,) = ssh_g("board", config, "-o", f"ControlPath={tmp_path}/%C")["controlpath"]
    assert resolve_host("board", str(config)).identity_files == (expected,)


def test_a_two_hop_proxy_jump_chain_over_real_sshd(tmp_path: Path, sshd: SSHServer) -> None:
    """board: ProxyJump j1,j2, each an alias to the loopback sshd: j1 is dialled first, j2
    through j1, the board through j2; `devices check --resolved` shows each hop."""
    hop = (f"  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
           f"  IdentityFile {sshd.user_key}\n")  # fmt: skip
    config = tmp_path / "ssh_config"
    config.write_text(f"Host j1\n{hop}Host j2\n{hop}Host board\n{hop}  ProxyJump j1,j2\n")
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "board.toml").write_text(
        'transport = "ssh"\n[connection]\nssh_alias = "board"\n'
        f'ssh_config = "{config}"\nknown_hosts = "{sshd.known_hosts}"\nuse_agent = false\n'
        f'[placement]\nworkdir = "{tmp_path / "board-wd"}"\npython = "{sys.executable}"\n'
    )
    inventory = load_inventory(devices)
    with open_transport(inventory["board"], inventory) as transport:
        assert transport.run_check(["echo", "two hops"], timeout_s=20).stdout == "two hops\n"
        chain = [transport.jump, transport.jump.jump]  # type: ignore[attr-defined]
        assert [t.target.config.alias for t in chain] == ["j2", "j1"]
        assert chain[1].jump is None
    shown = harness("devices", "check", "board", "--devices-dir", devices, "--resolved")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines if "): " in line][:3] == [
        "board-jump-j1", "board-jump-j2", "board"]  # fmt: skip
    assert f"  ssh config: alias 'board' in {config}" in lines
    assert any(line.startswith("  resolved by: ssh -G (OpenSSH_") for line in lines)
