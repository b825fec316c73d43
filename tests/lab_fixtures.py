"""The shared store's real servers as fixtures (a pytest plugin, named in conftest.py):
PostgreSQL and SeaweedFS for a test module, a fresh run index and queue for each test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HARNESS
from servers import PostgresServer, SeaweedServer, postgres_server, seaweedfs_server


def cli(*args: str | Path, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `harness` command, in `cwd`, with `env` over the test's environment."""
    return subprocess.run(
        [str(HARNESS), *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd,
        env={**os.environ, **env},
    )  # fmt: skip


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PostgresServer, SeaweedServer]]:
    with postgres_server() as pg, seaweedfs_server() as s3:
        yield pg, s3


@pytest.fixture
def lab(
    servers: tuple[PostgresServer, SeaweedServer],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> tuple[PostgresServer, SeaweedServer, str]:
    """A fresh run index and queue (a database of their own), migrated, its object store
    named; the environment of every harness this test starts points at it."""
    pg, s3 = servers
    url = pg.new_database(request.node.name[:40])
    for key, value in {**s3.credentials(), "HARNESS_STORE": url}.items():
        monkeypatch.setenv(key, value)
    assert cli("store", "migrate").returncode == 0
    done = cli("store", "init", "--objects", s3.objects_url)
    assert done.returncode == 0, done.stdout + done.stderr
    return pg, s3, url
