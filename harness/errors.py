"""Error types of the harness.

Every error carries a message a user can act on: what is wrong, where (file and key,
device, job), and how to fix it. Library code and commands raise these; the CLI's one
boundary (`cli.common.command`) prints the message and exits with `exit_status`: 2 for bad
input to fix, 1 for a device, a job or a decision that failed.
"""

from __future__ import annotations

from collections.abc import Sequence


class HarnessError(Exception):
    """Base of every error the harness reports to a user."""

    exit_status = 1


class UsageError(HarnessError):
    """A command line that cannot be carried out as given (an unknown device, an option
    out of range)."""

    exit_status = 2


class Outcome(HarnessError):
    """Not a fault: a command that ran to its end and must not exit 0 — jobs that did not
    succeed, a gate that did not pass, a variant that got slower, a run stopped by a
    signal (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class ConfigError(HarnessError):
    """A TOML file (device, model manifest, plan) is missing, malformed or invalid."""

    exit_status = 2

    def __init__(self, path: object, message: str, key: str | None = None) -> None:
        self.path = str(path)
        self.key = key
        where = f"{self.path}" + (f", key '{key}'" if key else "")
        super().__init__(f"{where}: {message}")


class TransportError(HarnessError):
    """Bytes or commands could not reach a device."""

    def __init__(self, device: str, message: str) -> None:
        self.device = device
        super().__init__(f"device '{device}': {message}")


class DeviceUnreachable(TransportError):
    """The device did not answer: connection refused, timed out, or name not resolved."""


class HostKeyRejected(TransportError):
    """The device's SSH host key is unknown or does not match known_hosts."""


class AuthFailed(TransportError):
    """The device refused our credentials."""


class DeviceDiskFull(TransportError):
    """The device's disk is full: a condition of the device, not the job's failure; the
    job is recorded `skipped` and `--resume` runs it once there is room."""


class LeaseHeld(TransportError):
    """Another controller holds the device's lease (harness/lease.py)."""


class CommandTimeout(TransportError):
    """A command ran past its timeout; it was killed on the device."""

    def __init__(
        self, device: str, argv: Sequence[str], timeout_s: float, stderr: str = ""
    ) -> None:
        self.argv = list(argv)
        self.timeout_s = timeout_s
        self.stderr = stderr
        super().__init__(
            device, f"command timed out after {timeout_s:g} s and was killed: {_argv_str(argv)}"
        )


class CommandInterrupted(TransportError):
    """The controller was told to stop (Ctrl-C, SIGTERM) while the command ran; the
    command was killed on the device."""

    def __init__(self, device: str, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        super().__init__(device, f"interrupted, and killed on the device: {_argv_str(argv)}")


class CommandFailed(TransportError):
    """A command ended with a non-zero exit status."""

    def __init__(
        self, device: str, argv: Sequence[str], exit_code: int, stdout: str, stderr: str
    ) -> None:
        self.argv = list(argv)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-3:] if stderr.strip() else []
        detail = (": " + " | ".join(tail)) if tail else ""
        super().__init__(
            device, f"command exited with status {exit_code}: {_argv_str(argv)}{detail}"
        )


class ControllerFileMissing(HarnessError):
    """A file on the controller that a job sends (a variant's model, an input or eval set)
    is gone since the run started (a cache cleared, a file moved): not the job's failure;
    the job is recorded `skipped` and `--resume` runs it once the file is back."""

    def __init__(self, path: object) -> None:
        self.path = str(path)
        super().__init__(f"{self.path} is gone from the controller")


class RemotePathError(HarnessError):
    """A remote path would leave the device's work directory."""


class RunnerFailed(HarnessError):
    """The on-device runner produced no valid result document."""


class ParseError(RunnerFailed):
    """A device tool's output or a reading that its parser cannot read: every parser
    (native tools, power sources, thermal state) raises this one, quoting what it could
    not read."""


class StoreError(HarnessError):
    """A run directory is missing, unreadable or from a newer schema."""

    exit_status = 2


class SharedStoreError(HarnessError):
    """The shared store (HARNESS_STORE: a PostgreSQL run index and the S3 object store it
    names) is unusable as configured: a wrong URL, refused credentials, a missing bucket, a
    schema older or newer than the harness. The message names the URL, never its secret."""

    exit_status = 2


class StoreFull(HarnessError):
    """The disk of the reports folder is full: every job finished before is on disk, the
    job being written is not recorded (so `--resume` runs it), and the run stops."""


def _argv_str(argv: Sequence[str]) -> str:
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:197] + "..."
