"""The inventory: list, check, lock, unlock, who."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.common import (
    DevicesDir,
    command,
    device_transport,
    devices_app,
    inventory_for,
    known_device,
    make_console,
    styled,
)
from harness.cli.display import cpu_text, print_phone
from harness.cli.output import Format, FormatOption, print_records
from harness.errors import Outcome

# `devices check --format json|csv`: DeviceFacts (harness/probes/facts.py) and PhoneFacts
FACTS_FIELDS = ("device", "arch", "os", "kernel", "python", "numpy", "cpu_count", "disk_free_bytes",
                "workdir", "runtimes", "usable_runtimes", "identity")  # fmt: skip
PHONE_FIELDS = ("device", "props", "battery_percent", "battery_status", "disk_free_bytes",
                "workdir", "binaries")  # fmt: skip


@command(devices_app, "list")
def devices_list(
    devices_dir: DevicesDir = Path("devices"), output: FormatOption = Format.table
) -> None:
    """Show the inventory."""
    from harness.cli.fit import Column, print_fitted

    inventory = inventory_for(devices_dir, [])
    headers = ("name", "transport", "address", "role", "labels", "runner", "source")
    if output != Format.table:
        records = [
            {"name": d.name, "transport": d.transport, "address": str(d.address), "role": d.role,
             "labels": dict(d.labels), "runner": str(d.placement.python)
             if d.runner_kind == "python" else "native", "source": str(d.source)}
            for d in inventory.values()
        ]  # fmt: skip
        print_records(records, headers, output)
        return
    rows = [
        [
            device.name,
            device.transport,
            str(device.address),
            device.role,
            ", ".join(f"{k}={v}" for k, v in device.labels.items()),
            str(device.placement.python) if device.runner_kind == "python" else "native",
            str(device.source),
        ]
        for device in inventory.values()
    ]
    print_fitted(
        make_console(),
        [Column(h, prose=h in ("labels", "source", "runner")) for h in headers],
        rows,
        drop_first=("source", "runner", "role"),
    )


@command(devices_app, "check")
def devices_check(
    name: Annotated[str, typer.Argument(help="Device name (file stem in devices/).")],
    devices_dir: DevicesDir = Path("devices"),
    resolved: Annotated[
        bool,
        typer.Option(
            "--resolved",
            help="First say where it connects: the address, keys and jump hosts "
            "from the device file and the ssh config, and what resolved them.",
        ),
    ] = False,
    output: FormatOption = Format.table,
) -> None:
    """Connect and report what the device is and which runtimes it can run."""
    from harness.device_check import check_device, check_phone
    from harness.transport import open_transport

    console = make_console()
    inventory = inventory_for(devices_dir, [name])
    device = known_device(inventory, name)
    with open_transport(device, inventory) as transport:
        if resolved:
            print_resolution(console, transport)
        if device.transport == "adb":
            phone = check_phone(device, transport)
            if output != Format.table:
                print_records([dataclasses.asdict(phone)], PHONE_FIELDS, output)
                raise typer.Exit(1 if "missing" in phone.binaries.values() else 0)
            print_phone(console, phone)
            if "missing" in phone.binaries.values():
                raise Outcome(
                    "a configured binary is not on the phone: `adb push` it to that path, or "
                    'set `local = "path/on/this/machine"` under [binaries.<tool>] to have it '
                    "pushed"
                )
            return
        facts = check_device(device, transport)
    if output != Format.table:
        record = {**dataclasses.asdict(facts), "usable_runtimes": facts.usable_runtimes}
        print_records([record], FACTS_FIELDS, output)
        if not facts.usable_runtimes:
            raise typer.Exit(1)
        return
    free = f"{facts.disk_free_bytes / 2**30:.1f} GiB" if facts.disk_free_bytes else "unknown"
    console.print(styled((name, "bold"), ": reachable"))
    for label, value in [
        ("arch", facts.arch),
        ("os", f"{facts.os} (kernel {facts.kernel})"),
        ("python", facts.python),
        ("numpy", facts.numpy or "missing"),
        ("cpus", facts.cpu_count),
        ("cpu", cpu_text(facts.identity)),
        ("ram", f"{facts.identity['ram_mb']} MB" if facts.identity.get("ram_mb") else "?"),
        ("board", facts.identity.get("board") or facts.identity.get("l4t") or "-"),
        ("virtual", facts.identity.get("virtual") or "-"),
        ("workdir", f"{facts.workdir} ({free} free)"),
    ]:
        console.print(f"  {label:8} {value}")
    for runtime, info in facts.runtimes.items():
        if "error" in info:
            console.print(styled(f"  {runtime:16} ", (f"not usable: {info['error']}", "dim")))
        else:
            extras = info.get("providers") or info.get("delegates") or []
            version = (info["version"], "green")
            console.print(styled(f"  {runtime:16} ", version, f" {', '.join(extras)}"))
    if not facts.usable_runtimes:
        raise Outcome("no inference runtime imports there: install onnxruntime or ai-edge-litert")


def print_resolution(console: Any, transport: Any) -> None:
    """The SSH hops from the controller to the device, first hop first, each with the
    address, the keys, the known_hosts file and where the values came from."""
    hops = []
    while transport is not None:
        hops.append(transport)
        transport = getattr(transport, "jump", None)
    for index, hop in enumerate(reversed(hops)):
        target = getattr(hop, "target", None)
        if target is None:
            console.print(f"{hop.device_name}: {type(hop).__name__} (no address to resolve)")
            continue
        role = "jump host" if index < len(hops) - 1 else "device"
        console.print(styled((hop.device_name, "bold"), f" ({role}): {target}"))
        entry = target.config
        if entry is not None:
            console.print(f"  ssh config: alias '{entry.alias}' in {entry.config}")
            console.print(f"  resolved by: {entry.resolved_by}")
        keys = [f"{k}{'' if os.path.isfile(k) else ' (missing)'}" for k in target.identity_files]
        console.print(f"  identity files: {', '.join(keys) or 'agent / default keys'}")
        console.print(f"  known_hosts: {target.known_hosts}")


@command(devices_app, "lock")
def devices_lock(
    name: Annotated[str, typer.Argument(help="Device name.")],
    hours: Annotated[float, typer.Option(help="How long the reservation lasts.")] = 8.0,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a current holder.")] = 0.0,
    devices_dir: DevicesDir = Path("devices"),
) -> None:
    """Reserve a device by hand (benchmark runs wait for it, or skip it)."""
    from harness.lease import acquire, new_lease

    with device_transport(name, devices_dir) as transport:
        lease = acquire(transport, new_lease("manual", hours * 3600), wait)
    make_console().print(f"{name}: reserved by {lease.describe()}")


@command(devices_app, "unlock")
def devices_unlock(
    name: Annotated[str, typer.Argument(help="Device name.")],
    force: Annotated[
        bool, typer.Option("--force", help="Remove another holder's lease too.")
    ] = False,
    devices_dir: DevicesDir = Path("devices"),
) -> None:
    """Release a reservation taken with `devices lock` (by you on this host)."""
    from harness.lease import read_lease, release

    with device_transport(name, devices_dir) as transport:
        held = read_lease(transport)
        mine = held is not None and held.taken_by_hand_by_me()
        removed = release(transport, held, force=True) if (mine or force) else None
    if held is None:
        make_console().print(f"{name}: not reserved")
    elif removed is None:
        raise Outcome(f"{name} is reserved by {held.describe()}; use --force to remove it")
    else:
        make_console().print(f"{name}: released (was {removed.describe()})")


@command(devices_app, "who")
def devices_who(
    name: Annotated[str, typer.Argument(help="Device name.")],
    devices_dir: DevicesDir = Path("devices"),
) -> None:
    """Who holds the device's reservation, and until when."""
    from harness.lease import read_lease

    with device_transport(name, devices_dir) as transport:
        held = read_lease(transport)
    make_console().print(f"{name}: " + (held.describe() if held else "not reserved"))
