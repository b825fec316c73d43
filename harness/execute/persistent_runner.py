"""The controller's side of a persistent runner (harness/runner/persistent.py): started on
the device with the session's first job, one JSON line per job each way over the command's
own stdin and stdout, ended with the session.

A job's timeout or an interrupt ends only that job's child (the runner answers, and stays);
a runner that dies or a channel that drops is the link's fault (DeviceUnreachable: the
worker retries the job and the next try starts a new runner); a runner of another version
is refused. A device whose shell gives commands no stdin cannot keep one: `Unavailable`,
and the session runs each job as a process of its own (exec-per-job) instead.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import cast

from harness.deploy import runner_hash
from harness.errors import (
    CommandInterrupted,
    CommandTimeout,
    DeviceUnreachable,
    HarnessError,
    RunnerFailed,
)
from harness.runner.contract import SESSION_SCHEMA
from harness.runner.persistent import ForkedResult, SessionHello
from harness.transport.base import Transport
from harness.transport.channel import Channel

HELLO_TIMEOUT_S = 60.0  # the runner's start: the interpreter, numpy and the runtime imported
CANCEL_GRACE_S = 10.0  # a cancelled child's group is TERMed, then KILLed after 2 s


class Unavailable(HarnessError):
    """This device cannot keep a persistent runner (why is the message): run exec-per-job."""


class PersistentRunner:
    """One runner process on the device for the session; a forked child per job."""

    def __init__(self, channel: Channel, hello: SessionHello) -> None:
        self.channel = channel
        self.hello = hello

    @classmethod
    def start(
        cls, transport: Transport, python: str, runner_path: str, runtimes: list[str]
    ) -> PersistentRunner:
        """Start it and check who answers: its protocol and its version (the sha256 of
        the runner's files there) must be this controller's."""
        device = transport.device_name
        channel = transport.start([python, runner_path, "--serve", *runtimes])
        try:
            channel.send(json.dumps({"hello": SESSION_SCHEMA}))
            line = json_line(channel, HELLO_TIMEOUT_S)
        except DeviceUnreachable as exc:
            channel.close()
            if not transport_alive(transport):
                raise
            raise Unavailable(
                f"device '{device}': the persistent runner did not start: {exc}"
            ) from None
        except CommandTimeout:
            channel.close()
            raise Unavailable(
                f"device '{device}': the persistent runner said nothing in {HELLO_TIMEOUT_S:g} s"
            ) from None
        try:
            hello = json.loads(line)
        except ValueError:
            hello = None
        if not isinstance(hello, dict) or hello.get("schema") != SESSION_SCHEMA:
            channel.close()
            raise Unavailable(f"device '{device}': the persistent runner answered {line[:200]!r}")
        if "error" in hello:
            channel.close()
            raise Unavailable(
                f"device '{device}': the persistent runner cannot stay: {hello['error']}"
            )
        if hello.get("runner") != runner_hash():
            channel.close()
            raise RunnerFailed(
                f"device '{device}': the runner at {runner_path} is version "
                f"{hello.get('runner')}, this controller's is {runner_hash()}: its files were "
                "changed on the device. Remove that folder; the next run installs it again"
            )
        return cls(channel, cast(SessionHello, hello))

    def run(self, spec_path: str, timeout_s: float) -> ForkedResult:
        """The job's child forked, run and answered for. CommandTimeout and
        CommandInterrupted end the child first; DeviceUnreachable leaves this runner dead."""
        try:
            self.channel.send(json.dumps({"run": spec_path}))
            line = json_line(self.channel, timeout_s, interruptible=True)
        except (CommandTimeout, CommandInterrupted):
            self._cancel()
            raise
        except DeviceUnreachable:
            self.close()
            raise
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "spec" not in answer:
            self.close()
            raise DeviceUnreachable(
                self.channel.device_name, f"the persistent runner answered {line[:200]!r}"
            )
        if answer.get("ended_by") == "stdin closed":  # its channel dropped mid-job
            self.close()
            raise DeviceUnreachable(
                self.channel.device_name,
                "the persistent runner's stdin closed mid-job; it ended the job",
            )
        return cast(ForkedResult, answer)

    def _cancel(self) -> None:
        """End the running child; the runner's answer for it is read and dropped. A runner
        that does not answer is ended too."""
        try:
            self.channel.send(json.dumps({"cancel": True}))
            json_line(self.channel, CANCEL_GRACE_S)
        except HarnessError:
            self.close()

    def close(self) -> None:
        with contextlib.suppress(HarnessError):
            self.channel.close()


def json_line(channel: Channel, timeout_s: float, interruptible: bool = False) -> str:
    """The next line that is a JSON object: a shell that merges stderr into stdout (legacy
    adb) puts its own lines between them."""
    deadline = time.monotonic() + timeout_s
    while True:
        line = channel.receive(max(0.0, deadline - time.monotonic()), interruptible)
        if line.lstrip().startswith("{"):
            return line


def transport_alive(transport: Transport) -> bool:
    """Whether the device still answers a command (a runner that could not start, on a live
    link, is the device's limit; on a dead one, the link's fault)."""
    started = time.monotonic()
    try:
        transport.run(["true"], timeout_s=30)
    except HarnessError:
        return False
    return time.monotonic() - started < 30
