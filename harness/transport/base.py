"""The transport seam: how commands and files reach a device.

Each transport implements three raw primitives (`_run`, `_put`, `_get`) plus `open` and
`close`; the checked helpers, the work-directory confinement and content-addressed uploads
are written once here. A transport opens lazily on first use and is a context manager.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from harness.errors import CommandFailed, RemotePathError


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

    def run(self, argv: Sequence[str], *, timeout_s: float) -> CommandResult: ...

    def run_check(self, argv: Sequence[str], *, timeout_s: float) -> CommandResult: ...

    def remote_path(self, relative: str) -> str: ...

    def put(self, local: Path, remote: str) -> None: ...

    def put_bytes(self, data: bytes, remote: str) -> None: ...

    def get(self, remote: str, local: Path) -> None: ...

    def exists(self, remote: str) -> bool: ...

    def put_content_addressed(self, local: Path, folder: str, sha256: str) -> tuple[str, bool]: ...


class BaseTransport:
    """Shared behaviour over the raw primitives each transport implements."""

    device_name: str

    def __init__(self, device_name: str) -> None:
        self.device_name = device_name
        self._opened = False
        self._workdir: str | None = None

    # -- lifecycle
    def open(self) -> None:
        if not self._opened:
            self._workdir = self._open()
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
    def run(self, argv: Sequence[str], *, timeout_s: float) -> CommandResult:
        """Run argv (never a shell string) with a wall-clock timeout; kill it when it expires."""
        self.open()
        return self._run(list(argv), timeout_s)

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
        self._put(Path(local), self._checked(remote))

    def put_bytes(self, data: bytes, remote: str) -> None:
        self.open()
        self._put_bytes(data, self._checked(remote))

    def get(self, remote: str, local: Path) -> None:
        self.open()
        self._get(self._checked(remote), Path(local))

    def exists(self, remote: str) -> bool:
        self.open()
        return self._exists(self._checked(remote))

    def put_content_addressed(self, local: Path, folder: str, sha256: str) -> tuple[str, bool]:
        """Upload once per content: `<workdir>/<folder>/<sha256><suffix>`. Returns (path, sent)."""
        remote = self.remote_path(f"{folder}/{sha256}{Path(local).suffix}")
        if self.exists(remote):
            return remote, False
        self.put(local, remote)
        return remote, True

    def _checked(self, remote: str) -> str:
        relative = posixpath.relpath(remote, self.workdir) if posixpath.isabs(remote) else remote
        return confine(self.workdir, relative)

    # -- what each transport implements
    def _open(self) -> str:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _run(self, argv: list[str], timeout_s: float) -> CommandResult:
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
