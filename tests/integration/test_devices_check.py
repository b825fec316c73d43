"""`harness devices check` against the local device and the real sshd."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest
from conftest import SSHServer, StandinPhones
from device_files import local_device_file

from harness.config import load_inventory
from harness.device_check import check_device
from harness.errors import HarnessError
from harness.transport import open_transport

BIN = Path(sys.executable).parent


def write_device(devices: Path, name: str, text: str) -> None:
    devices.mkdir(exist_ok=True)
    (devices / f"{name}.toml").write_text(text)


def test_ssh_device_facts(tmp_path: Path, sshd: SSHServer) -> None:
    write_device(tmp_path / "devices", "loop", sshd.device_toml("loop", tmp_path / "wd"))
    inventory = load_inventory(tmp_path / "devices")
    with open_transport(inventory["loop"], inventory) as transport:
        facts = check_device(inventory["loop"], transport)
    assert facts.arch == platform.machine()
    assert facts.python == platform.python_version()
    assert facts.runtimes["onnxruntime"]["version"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in facts.runtimes["onnxruntime"]["providers"]
    assert "version" in facts.runtimes["ai_edge_litert"]
    assert facts.disk_free_bytes and facts.disk_free_bytes > 0
    assert facts.cpu_count and facts.cpu_count >= 1
    assert facts.workdir == str(tmp_path / "wd")
    assert facts.identity["kernel"] == platform.release() and facts.identity["ram_mb"] > 0
    assert facts.identity["cpu_model"]


def test_cli_check_prints_the_facts(tmp_path: Path, sshd: SSHServer) -> None:
    write_device(tmp_path / "devices", "loop", sshd.device_toml("loop", tmp_path / "wd"))
    done = subprocess.run(
        [BIN / "harness", "devices", "check", "loop", "--devices-dir", str(tmp_path / "devices")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reachable" in done.stdout and onnxruntime.__version__ in done.stdout
    listed = subprocess.run(
        [BIN / "harness", "devices", "list", "--devices-dir", str(tmp_path / "devices")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "loop" in listed.stdout and "local" in listed.stdout


@pytest.mark.parametrize(
    ("python", "expected"),
    [
        ("/nonexistent/python3", "not found there"),
        ("OLD_PYTHON", "Python 3.6.15 is too old"),
    ],
)
def test_unusable_interpreter_is_explained(tmp_path: Path, python: str, expected: str) -> None:
    """An interpreter that is missing, or one that reports 3.6 (a stand-in script)."""
    if python == "OLD_PYTHON":
        old = tmp_path / "python3.6"
        old.write_text("#!/bin/sh\necho 3.6.15\n")
        old.chmod(0o755)
        python = str(old)
    write_device(
        tmp_path / "devices",
        "board",
        local_device_file(tmp_path / "wd", python=python),
    )
    inventory = load_inventory(tmp_path / "devices")
    with open_transport(inventory["board"], inventory) as transport:
        with pytest.raises(HarnessError, match=expected):
            check_device(inventory["board"], transport)


def test_cli_check_of_an_unreachable_device(tmp_path: Path, sshd: SSHServer) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    write_device(
        tmp_path / "devices",
        "loop",
        sshd.device_toml("loop", tmp_path / "wd", known_hosts=str(empty)),
    )
    done = subprocess.run(
        [BIN / "harness", "devices", "check", "loop", "--devices-dir", str(tmp_path / "devices")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "device 'loop'" in done.stdout and "ssh-keyscan" in done.stdout


def test_phone_check_through_adb(
    tmp_path: Path, phones: StandinPhones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in phone's shell is this machine's, so `getprop` is a script the test
    provides; what is checked is that each fact reaches the report through adb."""
    tools = tmp_path / "phone-bin"
    tools.mkdir()
    getprop = tools / "getprop"
    getprop.write_text(
        '#!/bin/sh\ncase "$1" in ro.product.model) echo "Pixel 8";; '
        "ro.build.version.release) echo 15;; ro.product.cpu.abi) echo arm64-v8a;; "
        "ro.soc.model) echo GS301;; esac\n"
    )
    getprop.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    present = phones.root / "data/local/tmp/benchmark_model"
    present.write_text("#!/bin/sh\n")
    present.chmod(0o755)
    write_device(
        tmp_path / "devices",
        "pixel",
        phones.device_toml("pixel", phones.serials[1])
        + f'[placement.binaries.benchmark_model]\ndevice = "{present}"\n'
        + f'[placement.binaries.onnxruntime_perf_test]\ndevice = "{phones.root}/nowhere/perf_test"\n',
    )
    done = subprocess.run(
        [BIN / "harness", "devices", "check", "pixel", "--devices-dir", tmp_path / "devices"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # a configured binary is missing
    for expected in ("reachable over adb", "Pixel 8", "15", "arm64-v8a", "GS301", "GiB free"):
        assert expected in done.stdout, done.stdout
    assert "benchmark_model" in done.stdout and "present" in done.stdout
    assert "onnxruntime_perf_test  missing" in done.stdout


def test_an_unplugged_phone_is_reported_with_a_hint(tmp_path: Path, phones: StandinPhones) -> None:
    write_device(tmp_path / "devices", "gone", phones.device_toml("gone", "NOT-PLUGGED"))
    inventory = load_inventory(tmp_path / "devices")
    with pytest.raises(HarnessError, match=r"NOT-PLUGGED.*not found.*adb devices"):
        with open_transport(inventory["gone"], inventory) as transport:
            transport.open()
