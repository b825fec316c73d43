"""What the controller places on a device: the runner (once per content hash) and models."""

from __future__ import annotations

import hashlib
from importlib import resources

from harness.runner.persistent import RUNNER_FILES
from harness.transport.base import Transport

RUNNER_FILE = "run.py"


def runner_source(name: str = RUNNER_FILE) -> bytes:
    return resources.files("harness.runner").joinpath(name).read_bytes()


def runner_hash() -> str:
    digest = hashlib.sha256()
    for name in RUNNER_FILES:
        digest.update(runner_source(name))
    return digest.hexdigest()[:16]


def install_runner(transport: Transport) -> str:
    """`<workdir>/runner/<hash>/run.py` (and the files beside it), copied only when this
    version is not there yet. Returns run.py's path."""
    folder = f"runner/{runner_hash()}"
    remote = transport.remote_path(f"{folder}/{RUNNER_FILE}")
    if not transport.exists(remote):
        for name in reversed(RUNNER_FILES):  # run.py last: its presence means all are there
            transport.put_bytes(runner_source(name), transport.remote_path(f"{folder}/{name}"))
    return remote
