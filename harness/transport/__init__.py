"""Transports: `local` (this machine), `ssh` (paramiko) and `adb` (phones)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from harness.config import Connection, Device
from harness.errors import ConfigError
from harness.transport.base import BaseTransport, CommandResult, Transport, confine, sha256_of

__all__ = [
    "BaseTransport",
    "CommandResult",
    "Transport",
    "confine",
    "open_transport",
    "sha256_of",
]


def open_transport(device: Device, inventory: Mapping[str, Device] | None = None) -> BaseTransport:
    """The transport for a device; it connects lazily, on first use. What can be checked
    on the controller (key files, jump hosts) is checked now: a `ConfigError`."""
    return _transport(device, inventory)


def check_transport(device: Device, inventory: Mapping[str, Device]) -> None:
    """Raise `ConfigError` for what in the device's connection settings is wrong on the
    controller (a key file that does not exist, a jump host loop), before any job runs."""
    _transport(device, inventory)


def _transport(device: Device, inventory: Mapping[str, Device] | None) -> BaseTransport:
    transport: BaseTransport
    if device.transport == "local":
        from harness.transport.local import LocalTransport

        transport = LocalTransport(device.name, device.placement.workdir)
    elif device.transport == "adb":
        from harness.transport.adb import AdbTransport

        assert device.connection.serial is not None
        transport = AdbTransport(
            device.name,
            device.connection.serial,
            device.device_workdir,
            adb=device.connection.adb,
            host=device.connection.adb_host,
            port=device.connection.adb_port,
        )
    else:
        return _ssh_transport(device, inventory or {}, seen=())
    transport.io_timeout_s = device.connection.io_timeout_s
    return transport


def _ssh_transport(
    device: Device,
    inventory: Mapping[str, Device],
    seen: tuple[str, ...],
    via: BaseTransport | None = None,
) -> BaseTransport:
    """`via`: the jump host a ProxyJump chain puts before this one (else its own)."""
    from harness.transport.ssh import SSHTransport
    from harness.transport.ssh_target import resolve_target

    link = device.connection
    target, config_jump = resolve_target(
        host=link.host,
        port=link.port,
        user=link.user,
        identity_file=link.identity_file,
        use_agent=link.use_agent,
        ssh_alias=link.ssh_alias,
        ssh_config=link.ssh_config,
        known_hosts=link.known_hosts,
        trust_on_first_use=link.trust_on_first_use,
        connect_timeout_s=link.connect_timeout_s,
        password_env=link.password_env,
    )
    missing = [key for key in target.identity_files if not os.path.isfile(key)]
    if missing:
        raise ConfigError(
            device.source,
            f"the key file {missing[0]} does not exist: fix `identity_file` under [connection]"
            " (or IdentityFile in the ssh config it names)",
            "connection.identity_file",
        )
    jump_ref = link.proxy_jump or config_jump
    jump = via
    if via is None and jump_ref and jump_ref.lower() != "none":
        if device.name in seen:
            raise ConfigError(
                device.source, f"proxy_jump loops through {seen}", "connection.proxy_jump"
            )
        # `a,b`: a first, then b through a, then this device through b (as ssh -J does)
        for hop in jump_ref.split(","):
            hop_device = inventory.get(hop) or _adhoc_jump(device, hop)
            jump = _ssh_transport(hop_device, inventory, (*seen, device.name), via=jump)
    transport = SSHTransport(device.name, target, device.placement.workdir, jump=jump)
    transport.io_timeout_s = link.io_timeout_s  # each hop its own device's watchdog
    return transport


def _adhoc_jump(device: Device, spec: str) -> Device:
    """A jump host given as `[user@]host[:port]` or an ssh config alias rather than as a
    device name: looked up in the ssh config like any host ssh dials."""
    user, _, hostport = spec.strip().rpartition("@")
    host, _, port = hostport.partition(":")
    link = device.connection
    return Device(
        name=f"{device.name}-jump-{host}",
        transport="ssh",
        connection=Connection(
            ssh_alias=host,
            port=int(port) if port else None,
            user=user or None,
            ssh_config=link.ssh_config,
            known_hosts=link.known_hosts,
            trust_on_first_use=link.trust_on_first_use,
            connect_timeout_s=link.connect_timeout_s,
            io_timeout_s=link.io_timeout_s,
        ),
        role="gateway",
    )
