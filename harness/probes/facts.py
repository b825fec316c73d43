"""Device facts for `harness devices check` read from the probes' output: what the device is
and what it can run. Pure: the probes are run by harness/device_check.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness.errors import RunnerFailed
from harness.runner.contract import FACTS_SCHEMA


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
    runner_path: str = ""  # where the check installed the runner (harness/device_check.py)

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
