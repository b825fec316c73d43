"""The local transport: subprocess and the file system, with the same contract as SSH."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import pids_matching

from harness.errors import CommandTimeout, RemotePathError
from harness.transport.local import LocalTransport


def test_run_put_get_and_confinement(tmp_path: Path) -> None:
    with LocalTransport("local", str(tmp_path / "wd")) as transport:
        result = transport.run(
            ["sh", "-c", 'printf "%s|" "$@"; exit 3', "sh", "a b", "$x"], timeout_s=10
        )
        assert (result.stdout, result.exit_code) == ("a b|$x|", 3)
        assert transport.run(["/no/such/binary"], timeout_s=5).exit_code == 127
        source = tmp_path / "m.onnx"
        source.write_bytes(b"abc")
        remote, sent = transport.put_content_addressed(source, "models", "f00")
        assert sent and Path(remote).read_bytes() == b"abc"
        assert transport.put_content_addressed(source, "models", "f00")[1] is False
        transport.get(remote, tmp_path / "back")
        assert (tmp_path / "back").read_bytes() == b"abc"
        with pytest.raises(RemotePathError):
            transport.put(source, str(tmp_path / "elsewhere"))


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    marker = f"200.{time.monotonic_ns()}"
    with LocalTransport("local", str(tmp_path / "wd")) as transport:
        with pytest.raises(CommandTimeout, match="timed out after 0.5 s"):
            transport.run(["sh", "-c", f"sleep {marker} & exec sleep {marker}"], timeout_s=0.5)
    assert pids_matching(marker) == []
