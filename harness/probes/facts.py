"""Device facts for `harness devices check`: what the device is and what it can run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness.config import Device
from harness.deploy import install_runner
from harness.errors import HarnessError, RunnerFailed
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

    @property
    def usable_runtimes(self) -> list[str]:
        return [name for name, info in self.runtimes.items() if "error" not in info]


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
    if data.get("schema") != "harness.facts/1":
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
    )


def check_device(device: Device, transport: Transport) -> DeviceFacts:
    """Connect, check the interpreter, install the runner and ask it for the facts.

    Raises a HarnessError subclass that says exactly why the device cannot be used."""
    transport.open()
    result = transport.run([device.python, "-c", _VERSION_PROBE], timeout_s=CHECK_TIMEOUT_S)
    if result.exit_code == 127 or "not found" in result.stderr:
        raise HarnessError(
            f"device '{device.name}': Python interpreter '{device.python}' not found there; "
            "install python3 or set 'python' in the device file"
        )
    if result.exit_code != 0:
        raise HarnessError(
            f"device '{device.name}': '{device.python}' failed to report its version "
            f"(exit {result.exit_code}): {result.stderr.strip()[:200]}"
        )
    try:
        version = parse_python_version(result.stdout)
    except ValueError as exc:
        raise HarnessError(f"device '{device.name}': {exc}") from None
    if version < MIN_PYTHON:
        raise HarnessError(
            f"device '{device.name}': Python {'.'.join(map(str, version))} is too old; the "
            f"runner needs {'.'.join(map(str, MIN_PYTHON))}+ (set 'python' in the device file "
            "to a newer interpreter)"
        )
    runner = install_runner(transport)
    facts = transport.run_check(
        [device.python, runner, "--facts", transport.workdir], timeout_s=CHECK_TIMEOUT_S
    )
    return parse_facts(facts.stdout, device.name, transport.workdir)
