"""Transports: `local` (this machine), `ssh` (paramiko) and `adb` (phones)."""

from __future__ import annotations

from collections.abc import Mapping

from harness.config import Device
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
    """The transport for a device; it connects lazily, on first use."""
    return _transport(device, inventory)


def _transport(device: Device, inventory: Mapping[str, Device] | None) -> BaseTransport:
    transport: BaseTransport
    if device.transport == "local":
        from harness.transport.local import LocalTransport

        transport = LocalTransport(device.name, device.workdir)
    elif device.transport == "adb":
        from harness.transport.adb import AdbTransport

        assert device.serial is not None
        transport = AdbTransport(
            device.name,
            device.serial,
            device.device_workdir,
            adb=device.adb,
            host=device.adb_host,
            port=device.adb_port,
        )
    else:
        return _ssh_transport(device, inventory or {}, seen=())
    transport.io_timeout_s = device.io_timeout_s
    return transport


def _ssh_transport(
    device: Device, inventory: Mapping[str, Device], seen: tuple[str, ...]
) -> BaseTransport:
    from harness.transport.ssh import SSHTransport
    from harness.transport.ssh_target import resolve_target

    target, config_jump = resolve_target(
        host=device.host,
        port=device.port,
        user=device.user,
        identity_file=device.identity_file,
        use_agent=device.use_agent,
        ssh_alias=device.ssh_alias,
        ssh_config=device.ssh_config,
        known_hosts=device.known_hosts,
        trust_on_first_use=device.trust_on_first_use,
        connect_timeout_s=device.connect_timeout_s,
        password_env=device.password_env,
    )
    jump_ref = device.proxy_jump or config_jump
    jump = None
    if jump_ref and jump_ref.lower() != "none":
        if device.name in seen:
            raise ConfigError(device.source, f"proxy_jump loops through {seen}", "proxy_jump")
        jump_device = inventory.get(jump_ref) or _adhoc_jump(device, jump_ref)
        jump = _ssh_transport(jump_device, inventory, (*seen, device.name))
    transport = SSHTransport(device.name, target, device.workdir, jump=jump)
    transport.io_timeout_s = device.io_timeout_s  # each hop its own device's watchdog
    return transport


def _adhoc_jump(device: Device, spec: str) -> Device:
    """A ProxyJump given as `[user@]host[:port]` rather than as a device name."""
    if "," in spec:
        raise ConfigError(
            device.source,
            f"'{spec}' chains several jump hosts; register each as a device and chain their "
            "proxy_jump keys",
            "proxy_jump",
        )
    user, _, hostport = spec.rpartition("@")
    host, _, port = hostport.partition(":")
    return Device(
        name=f"{device.name}-jump",
        transport="ssh",
        host=host,
        port=int(port) if port else None,
        user=user or None,
        ssh_config=device.ssh_config,
        known_hosts=device.known_hosts,
        trust_on_first_use=device.trust_on_first_use,
        connect_timeout_s=device.connect_timeout_s,
        io_timeout_s=device.io_timeout_s,
        role="gateway",
    )
