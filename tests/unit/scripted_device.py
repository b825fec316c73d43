"""A device made of a script, for the worker's fast unit tests: `ScriptedTransport` is a
real `BaseTransport` (watchdog, workdir confinement, symlink checks, content-addressed
uploads all run) whose commands are answered by a function of their argv, and whose files
live in a dict; `FakeClock` moves only when the code under test waits. The integration
tests over sshd stay the proof that the real parts behave so."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import TransportError
from harness.runner.contract import FACTS_SCHEMA, RESULT_SCHEMA
from harness.transport.base import BaseTransport, CommandResult

WORKDIR = "/home/pi/harness"

# what a script returns for an argv: the command's stdout, a whole result, an exception
# to raise (DeviceUnreachable: the link drops), or None for the built-ins below
Reply = str | CommandResult | BaseException | None
Script = Callable[[list[str]], Reply]


class ScriptedTransport(BaseTransport):
    def __init__(self, device_name: str, script: Script) -> None:
        super().__init__(device_name)
        self.script = script
        self.files: dict[str, bytes] = {}
        self.folders: set[str] = set()
        self.commands: list[list[str]] = []  # every argv, in the order it ran

    def runner_calls(self) -> list[str]:
        """The job ids the runner was started for, in order."""
        return [Path(argv[2]).stem for argv in self.commands if is_runner_job(argv)]

    def _open(self) -> str:
        return WORKDIR

    def _close(self) -> None:
        pass

    def _run(
        self, argv: list[str], timeout_s: float, cancel: threading.Event | None = None
    ) -> CommandResult:
        self.commands.append(argv)
        reply = self.script(argv)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, CommandResult):
            return reply
        if isinstance(reply, str):
            return CommandResult(tuple(argv), reply, "", 0, 0.01)
        return self._builtin(argv)

    def _builtin(self, argv: list[str]) -> CommandResult:
        """mkdir (fails when the folder is there: the lease's lock), rm -rf, mv; any other
        command (sh -c scripts: leftovers, symlink checks, kills) prints nothing."""
        exit_code = 0
        if argv[0] == "mkdir":
            exit_code = 1 if self._exists(argv[-1]) else 0
            self.folders.add(argv[-1])
        elif argv[:2] == ["rm", "-rf"]:
            self._move(argv[2], None)
        elif argv[0] == "mv":
            exit_code = 0 if self._exists(argv[1]) else 1
            self._move(argv[1], argv[2])
        return CommandResult(tuple(argv), "", "", exit_code, 0.01)

    def _move(self, source: str, target: str | None) -> None:
        for table in (self.files, dict.fromkeys(self.folders)):
            for path in [p for p in table if p == source or p.startswith(source + "/")]:
                value = table.pop(path)
                if table is self.files and target is not None:
                    self.files[target + path[len(source) :]] = value
                elif target is not None:
                    self.folders.add(target + path[len(source) :])
                self.folders.discard(path)

    def _put(self, local: Path, remote: str) -> None:
        self.files[remote] = local.read_bytes()

    def _put_bytes(self, data: bytes, remote: str) -> None:
        self.files[remote] = data

    def _get(self, remote: str, local: Path) -> None:
        if remote not in self.files:
            raise TransportError(self.device_name, f"{remote}: no such file")
        local.write_bytes(self.files[remote])

    def _exists(self, remote: str) -> bool:
        return (
            remote in self.files
            or remote in self.folders
            or any(p.startswith(remote + "/") for p in self.files)
        )


class FakeClock:
    """Seconds that pass only when waited for (or `advance`d): what was waited is kept."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return stop is not None and stop.is_set()

    def advance(self, seconds: float) -> None:
        self.now += seconds


def is_runner_job(argv: list[str]) -> bool:
    """`python3 <workdir>/runner/<hash>/run.py <workdir>/jobs/<run>/<job>.json`."""
    return len(argv) == 3 and argv[1].endswith("/run.py") and argv[2].endswith(".json")


def healthy_device(argv: list[str]) -> Reply:
    """What a board with Python 3.11 and onnxruntime answers to the health check."""
    if argv[0] == "python3" and argv[1] == "-c":  # the version probe
        return "3.11.2\n"
    if "--facts" in argv:
        return json.dumps(
            {"schema": FACTS_SCHEMA, "arch": "aarch64", "os": "Debian 12", "kernel": "6.1",
             "python": "3.11.2", "cpu_count": 4, "disk_free_bytes": 2**34,
             "runtimes": {"onnxruntime": {"version": "1.20.0"}}, "identity": {}}
        )  # fmt: skip
    return None


def result_document(latencies_ns: list[int], throttled: str = "throttled=0x0") -> str:
    """A runner's `harness.result/1` document: the latencies and the states around them
    (`throttled=0x40000`: the Pi's firmware says it throttled)."""
    state: dict[str, Any] = {"thermal_c": {}, "cpufreq_khz": {}}
    return json.dumps(
        {"schema": RESULT_SCHEMA, "status": "ok", "arch": "aarch64", "load_ms": 5.0,
         "latencies_ns": latencies_ns, "runtime": {"version": "1.20.0"},
         "state": {"before": {**state, "throttled": "throttled=0x0"},
                   "after": {**state, "throttled": throttled}}}
    )  # fmt: skip
