"""Where and as whom to reach an SSH device: the device file merged over ~/.ssh/config, and
the host-key policy (verified against known_hosts; trust-on-first-use only when the device
file says so)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko


@dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to connect, after ~/.ssh/config and the device file are merged."""

    host: str
    port: int
    user: str | None
    identity_files: tuple[str, ...]
    use_agent: bool
    known_hosts: str
    trust_on_first_use: bool
    connect_timeout_s: float
    password_env: str | None = None

    def __str__(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def resolve_target(
    *,
    host: str | None,
    port: int | None,
    user: str | None,
    identity_file: str | None,
    use_agent: bool,
    ssh_alias: str | None,
    ssh_config: str | None,
    known_hosts: str | None,
    trust_on_first_use: bool,
    connect_timeout_s: float,
    password_env: str | None,
) -> tuple[SSHTarget, str | None]:
    """Merge device-file values over ~/.ssh/config; returns the target and its ProxyJump."""
    config_path = Path(ssh_config or "~/.ssh/config").expanduser()
    entry: dict[str, Any] = {}
    if config_path.is_file():
        entry = paramiko.SSHConfig.from_path(str(config_path)).lookup(ssh_alias or host or "")
    identity = (identity_file,) if identity_file else tuple(entry.get("identityfile", ()))
    target = SSHTarget(
        host=host or entry.get("hostname") or ssh_alias or "",
        port=int(port or entry.get("port", 22)),
        user=user or entry.get("user"),
        identity_files=tuple(str(Path(p).expanduser()) for p in identity),
        use_agent=use_agent,
        known_hosts=str(
            Path(
                known_hosts or entry.get("userknownhostsfile", "~/.ssh/known_hosts").split()[0]
            ).expanduser()
        ),
        trust_on_first_use=trust_on_first_use,
        connect_timeout_s=connect_timeout_s,
        password_env=password_env,
    )
    return target, entry.get("proxyjump")


class _SaveNewKey(paramiko.MissingHostKeyPolicy):
    """Trust on first use: accept an unknown key and record it in the device's known_hosts."""

    def __init__(self, known_hosts: str) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        Path(self.known_hosts).parent.mkdir(parents=True, exist_ok=True)
        entries = paramiko.HostKeys()
        if os.path.exists(self.known_hosts):
            entries.load(self.known_hosts)
        entries.add(hostname, key.get_name(), key)
        entries.save(self.known_hosts)


def _known_hosts_name(target: SSHTarget) -> str:
    return target.host if target.port == 22 else f"[{target.host}]:{target.port}"
