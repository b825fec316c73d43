"""The transport contract: every transport (local; ssh against a real sshd on 127.0.0.1;
adb against the stand-in adb client, with and without shell protocol v2) passes the same
tests — argv arrives unchanged, exit status and stderr come back, a timeout kills the whole
process group on the device, a command that stays is spoken to in lines and ended by its
stdin's close, files go and come back by content, and nothing leaves the work directory."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SSHServer, StandinPhones, pids_matching, wait_until

from harness.config import load_device, load_inventory
from harness.errors import CommandInterrupted, CommandTimeout, DeviceUnreachable, RemotePathError
from harness.transport import Transport, open_transport
from harness.transport.adb import AdbTransport
from harness.transport.local import LocalTransport


@pytest.fixture(params=["local", "ssh", "adb", "adb-legacy"])
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Transport]:
    if request.param == "local":
        opened: Transport = LocalTransport("local", str(tmp_path / "wd"))
    elif request.param.startswith("adb"):
        phones: StandinPhones = request.getfixturevalue("phones")
        if request.param == "adb-legacy":  # an old adbd: no shell protocol v2
            request.getfixturevalue("monkeypatch").setenv("STANDIN_ADB_LEGACY", "1")
        opened = AdbTransport("phone", phones.serials[0], str(phones.root / "wd"))
    else:
        sshd: SSHServer = request.getfixturevalue("sshd")
        devices = tmp_path / "devices"
        devices.mkdir()
        (devices / "loop.toml").write_text(sshd.device_toml("loop", tmp_path / "wd"))
        opened = open_transport(load_device(devices / "loop.toml"), load_inventory(devices))
    opened.open()
    try:
        yield opened
    finally:
        opened.close()


def test_it_is_a_transport(transport: Transport) -> None:
    assert isinstance(transport, Transport)
    assert Path(transport.workdir).is_absolute() and transport.workdir.endswith("/wd")


def test_argv_reaches_the_device_unchanged(transport: Transport) -> None:
    tricky = ["a b", "it's", '"q"', "$(touch pwned)", "; rm -rf /", "*", "", "ü\tx", "$x"]
    result = transport.run_check(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *tricky],
        timeout_s=30,
    )
    assert json.loads(result.stdout) == tricky
    assert not Path("pwned").exists()


def test_exit_status_and_stderr_come_back(transport: Transport) -> None:
    result = transport.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout_s=30)
    if getattr(transport, "shell_v2", True):
        assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")
    else:  # old adbd: one stream; the exit status still comes back, through the marker
        assert (result.exit_code, result.stdout) == (7, "out\nerr\n")
    assert transport.run(["/no/such/binary"], timeout_s=10).exit_code == 127


def test_timeout_kills_the_process_group(transport: Transport) -> None:
    marker = f"300.{time.monotonic_ns()}"  # a unique sleep duration marks the processes
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="timed out after 1 s"):
        # a child in the background and a foreground one: both must die
        transport.run(["sh", "-c", f"sleep {marker} & exec sleep {marker}"], timeout_s=1)
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while pids_matching(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_matching(marker) == []


ECHO = """
import sys
for line in sys.stdin:
    print(line.strip()[::-1], flush=True)
print("stdin closed", file=sys.stderr, flush=True)
"""


def test_a_command_that_stays_is_spoken_to_in_lines(transport: Transport) -> None:
    marker = f"stays-{time.monotonic_ns()}"
    channel = transport.start([sys.executable, "-c", ECHO, marker])
    try:
        if not getattr(transport, "shell_v2", True):  # an old adbd gives commands no stdin
            with pytest.raises(DeviceUnreachable, match="channel closed"):
                channel.send("abc")
                while True:  # its stderr comes merged into stdout, then the end
                    assert channel.receive(30) != "cba"
            return
        for text in ("abc", "héllo wörld", "x" * 100_000):
            channel.send(text)
            assert channel.receive(30) == text[::-1]
        with pytest.raises(CommandTimeout):
            channel.receive(0.3)  # nothing was asked
        transport.interrupt()
        with pytest.raises(CommandInterrupted):
            channel.receive(30, interruptible=True)
    finally:
        channel.close()
    wait_until(lambda: not pids_matching(marker), 10, "the command's end")


def test_files_go_and_come_back_inside_the_workdir(transport: Transport, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00model" * 1000)
    remote, sent = transport.put_content_addressed(source, "models", "abc123")
    assert sent and remote == f"{transport.workdir}/models/abc123.bin"
    assert transport.put_content_addressed(source, "models", "abc123") == (remote, False)
    transport.put_bytes(b"spec", "jobs/run/one.json")
    back = tmp_path / "back.bin"
    transport.get(remote, back)
    assert back.read_bytes() == source.read_bytes()
    assert transport.exists("jobs/run/one.json") and not transport.exists("jobs/none.json")
    for escape in ("../outside", "/etc/passwd", "models/../../x", str(tmp_path / "elsewhere")):
        with pytest.raises(RemotePathError, match="leaves the device workdir"):
            transport.put_bytes(b"x", escape)
    with pytest.raises(RemotePathError):
        transport.put(source, str(tmp_path / "elsewhere"))
    assert not (tmp_path / "outside").exists() and not (tmp_path / "elsewhere").exists()


def test_nothing_is_written_through_a_symlink_inside_the_workdir(
    transport: Transport, tmp_path: Path
) -> None:
    """A link inside the workdir (planted, or left by a user) could lead anywhere: no
    write goes through it, on any transport (its own look, or `test -L` on the device)."""
    assert transport.make_folder("made/here") == f"{transport.workdir}/made/here"
    assert Path(transport.workdir, "made", "here").is_dir()
    outside = tmp_path / "outside"
    outside.mkdir()
    Path(transport.workdir, "planted").symlink_to(outside, target_is_directory=True)
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00model")
    writes = [
        lambda: transport.put_bytes(b"spec", "planted/run/one.json"),
        lambda: transport.put(source, f"{transport.workdir}/planted/model.bin"),
        lambda: transport.put_content_addressed(source, "planted", "abc123"),
        lambda: transport.make_folder("planted/sub"),
    ]
    for write in writes:
        with pytest.raises(RemotePathError, match="planted is a symbolic link inside the workdir"):
            write()
    assert list(outside.iterdir()) == []
