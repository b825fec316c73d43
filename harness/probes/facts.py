"""Device facts for `harness devices check`: what the device is and what it can run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness.config import Device
from harness.deploy import install_runner
from harness.errors import HarnessError, RunnerFailed
from harness.runner.contract import FACTS_SCHEMA
from harness.transport.base import Transport

MIN_PYTHON = (3, 8)
CHECK_TIMEOUT_S = 60.0
_VERSION_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


@dataclass(frozen=True)
class DeviceFacts:
    device: str
    arch: str
    os: str
    kernel: str
    python: str
    cpu_count: int | None
    disk_free_bytes: int | None
    workdir: str
    runtimes: dict[str, dict[str, Any]] = field(default_factory=dict)
    numpy: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)  # the comparability keys

    @property
    def usable_runtimes(self) -> list[str]:
        return [name for name, info in self.runtimes.items() if "error" not in info]


# the runner's runtime names, and the modules (any one of them) that provide each
RUNTIME_MODULES = {"onnxruntime": ("onnxruntime",), "tflite": ("ai_edge_litert", "tflite_runtime")}


def unusable_runtimes(runtimes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """runtime -> why the device cannot run it (no module of it imports there)."""
    unusable = {}
    for runtime, modules in RUNTIME_MODULES.items():
        if not any("error" not in runtimes.get(m, {"error": ""}) for m in modules):
            errors = "; ".join(
                f"{m}: {runtimes.get(m, {}).get('error', 'absent')}" for m in modules
            )
            unusable[runtime] = f"{runtime} does not import there ({errors})"
    return unusable


def parse_python_version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        raise ValueError(f"not a Python version: {text.strip()[:80]!r}") from None


def parse_facts(stdout: str, device: str, workdir: str) -> DeviceFacts:
    try:
        data = json.loads(stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise RunnerFailed(
            f"device '{device}': the facts probe printed no JSON: {stdout.strip()[:200]!r}"
        ) from None
    if data.get("schema") != FACTS_SCHEMA:
        raise RunnerFailed(f"device '{device}': unexpected facts schema {data.get('schema')!r}")
    return DeviceFacts(
        device=device,
        arch=data.get("arch", ""),
        os=data.get("os", ""),
        kernel=data.get("kernel", ""),
        python=data.get("python", ""),
        cpu_count=data.get("cpu_count"),
        disk_free_bytes=data.get("disk_free_bytes"),
        workdir=workdir,
        runtimes=data.get("runtimes", {}),
        numpy=data.get("numpy"),
        identity=data.get("identity") or {},
    )


def check_device(device: Device, transport: Transport) -> DeviceFacts:
    """Connect, check the interpreter, install the runner and ask it for the facts.

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
    return parse_facts(facts.stdout, device.name, transport.workdir)


# --------------------------------------------------------------------------- phones

PHONE_PROPS = {
    "ro.product.manufacturer": "manufacturer",
    "ro.product.model": "model",
    "ro.build.version.release": "android",
    "ro.build.version.sdk": "sdk",
    "ro.product.cpu.abi": "abi",
    "ro.soc.model": "soc",
    "ro.board.platform": "platform",
}
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


@dataclass(frozen=True)
class PhoneFacts:
    device: str
    props: dict[str, str]
    battery_percent: int | None
    battery_status: str | None
    disk_free_bytes: int | None
    workdir: str
    binaries: dict[str, str]  # tool -> "present" | "missing" | "pushed on first use"


def parse_phone_facts(
    stdout: str, device: str, workdir: str, binaries: dict[str, str]
) -> PhoneFacts:
    """The probe's `key=value` lines; `binaries` maps a tool to its device path (or '')."""
    props: dict[str, str] = {}
    present: dict[str, str] = {}
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key.startswith("prop:"):
            prop = key.removeprefix("prop:")
            if prop in PHONE_PROPS and value.strip():
                props[PHONE_PROPS[prop]] = value.strip()
        elif key.startswith("binary:"):
            present[key.removeprefix("binary:")] = value.strip()
        else:
            values[key] = value.strip()
    capacity = values.get("battery.capacity", "")
    free = values.get("disk.free", "").split()
    return PhoneFacts(
        device=device,
        props=props,
        battery_percent=int(capacity) if capacity.isdigit() else None,
        battery_status=values.get("battery.status") or None,
        disk_free_bytes=int(free[0]) * int(free[1])
        if len(free) == 2 and all(part.isdigit() for part in free)
        else None,
        workdir=workdir,
        binaries={
            tool: present.get(path, "missing") if path else "pushed on first use"
            for tool, path in binaries.items()
        },
    )


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
