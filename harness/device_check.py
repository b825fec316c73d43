"""Checking a device over its transport: its Python, the runner installed and asked for its
facts (`run.py --facts`), or a phone's properties, battery, disk and binaries. The readings
are parsed by harness/probes/facts.py."""

from __future__ import annotations

import dataclasses

from harness.config import Device
from harness.deploy import install_runner
from harness.errors import HarnessError
from harness.probes.facts import (
    PHONE_PROPS,
    DeviceFacts,
    PhoneFacts,
    parse_facts,
    parse_phone_facts,
    parse_python_version,
)
from harness.transport.base import Transport

MIN_PYTHON = (3, 8)
CHECK_TIMEOUT_S = 60.0
_VERSION_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
# getprop per property, the battery from sysfs, free space by statfs, and each binary's
# presence: one round trip. Arguments: the `ro.*` properties, then the workdir (the one
# directory), then the binaries' device paths.
_PHONE_PROBE = (
    'for p in "$@"; do case "$p" in ro.*) echo "prop:$p=$(getprop "$p")";; esac; done; '
    'b=/sys/class/power_supply/battery; echo "battery.capacity=$(cat $b/capacity 2>/dev/null)"; '
    'echo "battery.status=$(cat $b/status 2>/dev/null)"; '
    'for p in "$@"; do case "$p" in /*) if [ -d "$p" ]; then '
    'echo "disk.free=$(stat -f -c "%a %S" "$p" 2>/dev/null)"; elif [ -x "$p" ]; then '
    'echo "binary:$p=present"; else echo "binary:$p=missing"; fi;; esac; done'
)


def check_device(device: Device, transport: Transport) -> DeviceFacts:
    """Connect, check the interpreter, install the runner and ask it for the facts (which say
    where the runner now is: a device start installs it once).

    Raises a HarnessError subclass that says exactly why the device cannot be used."""
    transport.open()
    result = transport.run(
        [device.placement.python, "-c", _VERSION_PROBE], timeout_s=CHECK_TIMEOUT_S
    )
    if result.exit_code == 127 or "not found" in result.stderr:
        raise HarnessError(
            f"device '{device.name}': Python interpreter '{device.placement.python}' not found "
            "there; install python3 or set `python` under [placement] in the device file"
        )
    if result.exit_code != 0:
        raise HarnessError(
            f"device '{device.name}': '{device.placement.python}' failed to report its version "
            f"(exit {result.exit_code}): {result.stderr.strip()[:200]}"
        )
    try:
        version = parse_python_version(result.stdout)
    except ValueError as exc:
        raise HarnessError(f"device '{device.name}': {exc}") from None
    if version < MIN_PYTHON:
        raise HarnessError(
            f"device '{device.name}': Python {'.'.join(map(str, version))} is too old; the "
            f"runner needs {'.'.join(map(str, MIN_PYTHON))}+ (set `python` under [placement] "
            "in the device file to a newer interpreter)"
        )
    runner = install_runner(transport)
    facts = transport.run_check(
        [device.placement.python, runner, "--facts", transport.workdir], timeout_s=CHECK_TIMEOUT_S
    )
    parsed = parse_facts(facts.stdout, device.name, transport.workdir)
    return dataclasses.replace(parsed, runner_path=runner)


def check_phone(device: Device, transport: Transport) -> PhoneFacts:
    """What `devices check` says of a phone: model, Android, ABI, SoC, battery, free
    space, and whether each configured benchmark binary is there."""
    transport.open()
    binaries: dict[str, str] = {
        tool: b.device or "" for tool, b in device.placement.binaries.items()
    }
    argv = ["sh", "-c", _PHONE_PROBE, "harness-facts", *PHONE_PROPS, transport.workdir]
    result = transport.run_check(
        [*argv, *(p for p in binaries.values() if p)], timeout_s=CHECK_TIMEOUT_S
    )
    return parse_phone_facts(result.stdout, device.name, transport.workdir, binaries)
