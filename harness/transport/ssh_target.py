"""Where and as whom to reach an SSH device: the device file merged over the ssh config as
OpenSSH reads it (harness/transport/ssh_config.py), and the host-key policy (verified
against known_hosts; trust-on-first-use only when the device file says so)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import paramiko

from harness.transport.ssh_config import ResolvedHost, resolve_host


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
    config: ResolvedHost | None = None  # what the ssh config said (devices check --resolved)

    def __str__(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    @property
    def described(self) -> str:
        """The address, and where it came from when an ssh config gave any of it."""
        entry = self.config
        if entry is None or (entry.hostname == entry.alias and not entry.user and entry.port == 22):
            return str(self)
        return (
            f"{self} (ssh config alias '{entry.alias}' in {entry.config}, by {entry.resolved_by})"
        )


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
    """Merge device-file values over the ssh config's answer for the alias (or the host);
    returns the target and the ProxyJump the config gives."""
    entry = resolve_host(ssh_alias or host or "", ssh_config)
    identity = (identity_file,) if identity_file else entry.identity_files
    target = SSHTarget(
        host=host or entry.hostname,
        port=int(port or entry.port),
        user=user or entry.user,
        identity_files=tuple(str(Path(p).expanduser()) for p in identity),
        use_agent=use_agent,
        known_hosts=str(
            Path(known_hosts or entry.known_hosts or "~/.ssh/known_hosts").expanduser()
        ),
        trust_on_first_use=trust_on_first_use,
        connect_timeout_s=connect_timeout_s,
        password_env=password_env,
        config=entry,
    )
    return target, entry.proxy_jump


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
