"""The transport seam: how commands and files reach a device.

Each transport implements the raw primitives (`_open`, `_close`, `_run`, `_put`,
`_put_bytes`, `_get`, `_exists`, and `_first_symlink` where it can look faster than a
shell); the checked helpers, the work-directory confinement, the refusal to write through
a symbolic link and content-addressed uploads are written once here. A transport opens
lazily on first use and is a context manager.

Every operation runs under a wall-clock watchdog: paramiko's own timeouts do not bound a
slow SFTP transfer, and keep-alives take minutes to notice a dead link. When an operation
outlives its budget the watchdog aborts the connection (`_abort`), the operation fails,
and DeviceUnreachable says so; the next operation reconnects.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from harness.errors import (
    CommandFailed,
    CommandInterrupted,
    ControllerFileMissing,
    DeviceDiskFull,
    DeviceUnreachable,
    RemotePathError,
    TransportError,
)
from harness.transport.channel import Channel

T = TypeVar("T")


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    stdout: str
    stderr: str
    exit_code: int
    duration_s: float


@runtime_checkable
class Transport(Protocol):
    """What the scheduler, the deployer and `devices check` need from a device connection.
    Every transport passes tests/integration/test_transport_contract.py."""

    device_name: str

    @property
    def workdir(self) -> str: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def run(
        self, argv: Sequence[str], *, timeout_s: float, interruptible: bool = False
    ) -> CommandResult: ...

    def interrupt(self) -> None: ...

    def start(self, argv: Sequence[str]) -> Channel: ...

    def run_check(self, argv: Sequence[str], *, timeout_s: float) -> CommandResult: ...

    def remote_path(self, relative: str) -> str: ...

    def put(self, local: Path, remote: str) -> None: ...

    def put_bytes(self, data: bytes, remote: str) -> None: ...

    def get(self, remote: str, local: Path) -> None: ...

    def exists(self, remote: str) -> bool: ...

    def put_content_addressed(self, local: Path, folder: str, sha256: str) -> tuple[str, bool]: ...

    def make_folder(self, remote: str) -> str: ...


class BaseTransport:
    """Shared behaviour over the raw primitives each transport implements."""

    device_name: str
    # the watchdog's budgets: any operation gets io_timeout_s (a command: its own timeout
    # on top); a transfer also gets its size at min_transfer_bytes_per_s
    io_timeout_s: float = 60.0
    min_transfer_bytes_per_s: float = 64 * 1024

    def __init__(self, device_name: str) -> None:
        self.device_name = device_name
        self._opened = False
        self._workdir: str | None = None
        self._interrupted = threading.Event()
        self._no_links: set[str] = set()  # workdir paths seen to hold no symbolic link

    # -- lifecycle
    def open(self) -> None:
        if not self._opened:
            self._workdir = self._watched("connecting", self.io_timeout_s, self._open)
            self._opened = True

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._close()

    def __enter__(self) -> BaseTransport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def workdir(self) -> str:
        """Absolute work directory on the device; every remote path stays under it."""
        self.open()
        assert self._workdir is not None
        return self._workdir

    # -- commands
    def run(
        self, argv: Sequence[str], *, timeout_s: float, interruptible: bool = False
    ) -> CommandResult:
        """Run argv (never a shell string) with a wall-clock timeout; kill it when it expires.
        An `interruptible` command (a job's runner or tool) is also killed, and raises
        CommandInterrupted, once `interrupt()` is called, even before it starts."""
        self.open()
        budget = timeout_s + self.io_timeout_s
        cancel = self._interrupted if interruptible else None
        if cancel is not None and cancel.is_set():
            raise CommandInterrupted(self.device_name, argv)
        return self._watched(
            f"running {argv[0] if argv else 'a command'}",
            budget,
            lambda: self._run(list(argv), timeout_s, cancel),
        )

    def start(self, argv: Sequence[str]) -> Channel:
        """Start argv to stay, spoken to in lines (harness/transport/channel.py)."""
        self.open()
        channel = self._watched(
            f"starting {argv[0]}", self.io_timeout_s, lambda: self._start(list(argv))
        )
        channel.interrupted = self._interrupted
        return channel

    def interrupt(self) -> None:
        """Stop the interruptible command running now (from another thread), and refuse
        later ones; other commands (the lease's release, clean-up) still run."""
        self._interrupted.set()

    def run_check(self, argv: Sequence[str], *, timeout_s: float) -> CommandResult:
        result = self.run(argv, timeout_s=timeout_s)
        if result.exit_code != 0:
            raise CommandFailed(
                self.device_name, argv, result.exit_code, result.stdout, result.stderr
            )
        return result

    # -- files
    def remote_path(self, relative: str) -> str:
        """`relative` joined to the workdir; refuses anything that would leave it."""
        return confine(self.workdir, relative)

    def put(self, local: Path, remote: str) -> None:
        self.open()
        size = Path(local).stat().st_size
        checked = self._checked_for_write(remote)
        with self._explained_put(checked, size):
            self._watched(
                f"copying {Path(local).name} ({size} bytes)",
                self._transfer_budget(size),
                lambda: self._put(Path(local), checked),
            )

    def put_bytes(self, data: bytes, remote: str) -> None:
        self.open()
        checked = self._checked_for_write(remote)
        with self._explained_put(checked, len(data)):
            self._watched(
                f"writing {posixpath.basename(checked)}",
                self._transfer_budget(len(data)),
                lambda: self._put_bytes(data, checked),
            )

    def get(self, remote: str, local: Path) -> None:
        self.open()
        checked = self._checked(remote)
        self._watched(
            f"fetching {posixpath.basename(checked)}",
            2 * self.io_timeout_s,
            lambda: self._get(checked, Path(local)),
        )

    def exists(self, remote: str) -> bool:
        self.open()
        checked = self._checked(remote)
        return self._watched("looking up a file", self.io_timeout_s, lambda: self._exists(checked))

    def put_content_addressed(self, local: Path, folder: str, sha256: str) -> tuple[str, bool]:
        """Upload once per content: `<workdir>/<folder>/<sha256><suffix>`. Returns (path, sent)."""
        remote = self.remote_path(f"{folder}/{sha256}{Path(local).suffix}")
        if self.exists(remote):
            return remote, False
        if not Path(local).is_file():  # moved or deleted since its hash was taken
            raise ControllerFileMissing(local)
        self.put(local, remote)
        return remote, True

    def make_folder(self, remote: str) -> str:
        """`mkdir -p` inside the workdir, through no symbolic link; the folder's path."""
        self.open()
        checked = self._checked_for_write(remote)
        self.run_check(["mkdir", "-p", checked], timeout_s=self.io_timeout_s)
        return checked

    # -- the watchdog
    def _transfer_budget(self, size: int) -> float:
        return self.io_timeout_s + size / self.min_transfer_bytes_per_s

    def _watched(self, what: str, budget_s: float, operation: Callable[[], T]) -> T:
        """`operation()`, aborted (connection closed) if it outlives `budget_s`."""
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            with contextlib.suppress(Exception):
                self._abort()

        timer = threading.Timer(budget_s, expire)
        timer.daemon = True
        timer.start()
        try:
            return operation()
        except Exception:
            if not fired.is_set():
                raise
            with contextlib.suppress(Exception):
                self.close()
            raise DeviceUnreachable(
                self.device_name,
                f"{what} did not finish within {budget_s:.0f} s (a dead link or a stalled "
                "transfer); the connection was closed",
            ) from None
        finally:
            timer.cancel()

    @contextlib.contextmanager
    def _explained_put(self, remote: str, size: int) -> Iterator[None]:
        """A failed upload on a live connection: say so when the device's disk is full."""
        try:
            yield
        except DeviceUnreachable:
            raise
        except (TransportError, OSError) as exc:
            folder = posixpath.dirname(remote)
            free_kb = None
            with contextlib.suppress(Exception):
                df = self.run(["df", "-Pk", folder], timeout_s=30)
                free_kb = parse_df_available_kb(df.stdout)
            if free_kb is not None and free_kb * 1024 < size + 64 * 1024:
                raise DeviceDiskFull(
                    self.device_name,
                    f"no space left in {folder}: {free_kb} KiB free, {size // 1024 + 1} KiB "
                    "needed. Free space on the device, or point `workdir` at a larger disk",
                ) from None
            if isinstance(exc, TransportError):
                raise
            raise TransportError(self.device_name, f"writing {remote} failed: {exc}") from None

    def _checked(self, remote: str) -> str:
        relative = posixpath.relpath(remote, self.workdir) if posixpath.isabs(remote) else remote
        return confine(self.workdir, relative)

    def _checked_for_write(self, remote: str) -> str:
        """`_checked`, and no symbolic link on the way from the workdir to it: a link
        planted inside the workdir would have the write land outside it. Each folder is
        looked at once a session (its path and every one above it)."""
        checked = self._checked(remote)
        if checked in self._no_links or posixpath.dirname(checked) in self._no_links:
            return checked
        root = posixpath.normpath(self.workdir)
        parts = posixpath.relpath(checked, root).split("/")
        paths = [posixpath.join(root, *parts[: i + 1]) for i in range(len(parts))]
        link = self._first_symlink([p for p in paths if p != root])
        if link is not None:
            raise RemotePathError(
                f"device '{self.device_name}': {link} is a symbolic link inside the workdir "
                f"{root}; nothing is written through it (it could lead outside the workdir). "
                "Remove it on the device"
            )
        self._no_links.update(paths[:-1])
        return checked

    def _first_symlink(self, paths: list[str]) -> str | None:
        """The first of `paths` that is a symbolic link (they are in order, each inside the
        one before); a shell's `test -L` on the device, which a transport may do better."""
        script = 'for p; do if [ -L "$p" ]; then printf %s "$p"; break; fi; done'
        result = self.run(["sh", "-c", script, "links", *paths], timeout_s=self.io_timeout_s)
        return result.stdout or None

    # -- what each transport implements
    def _open(self) -> str:
        raise NotImplementedError

    def _abort(self) -> None:
        """Called by the watchdog from another thread: make the blocked operation fail
        (close the connection). Local operations cannot hang on a link: nothing to do."""

    def _close(self) -> None:
        raise NotImplementedError

    def _run(
        self, argv: list[str], timeout_s: float, cancel: threading.Event | None = None
    ) -> CommandResult:
        """Run argv; on timeout kill it on the device and raise CommandTimeout; once
        `cancel` is set kill it likewise and raise CommandInterrupted."""
        raise NotImplementedError

    def _start(self, argv: list[str]) -> Channel:
        raise NotImplementedError

    def _put(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    def _put_bytes(self, data: bytes, remote: str) -> None:
        raise NotImplementedError

    def _get(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def _exists(self, remote: str) -> bool:
        raise NotImplementedError


def confine(workdir: str, relative: str) -> str:
    """Join and normalise; raise RemotePathError if the result is not inside workdir."""
    root = posixpath.normpath(workdir)
    joined = posixpath.normpath(posixpath.join(root, relative))
    if joined != root and not joined.startswith(root.rstrip("/") + "/"):
        raise RemotePathError(f"remote path '{relative}' leaves the device workdir '{root}'")
    return joined


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_df_available_kb(text: str) -> int | None:
    """`df -Pk PATH`: the Available column (KiB) of its one data line."""
    lines = [line.split() for line in text.strip().splitlines()[1:] if line.strip()]
    try:
        return int(lines[-1][3])
    except (IndexError, ValueError):
        return None
