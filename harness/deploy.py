"""What the controller places on a device: the runner (once per content hash) and models."""

from __future__ import annotations

import hashlib
from importlib import resources

from harness.transport.base import Transport

RUNNER_FILE = "run.py"


def runner_source() -> bytes:
    return resources.files("harness.runner").joinpath(RUNNER_FILE).read_bytes()


def runner_hash() -> str:
    return hashlib.sha256(runner_source()).hexdigest()[:16]


def install_runner(transport: Transport) -> str:
    """`<workdir>/runner/<hash>/run.py`, copied only when this version is not there yet."""
    remote = transport.remote_path(f"runner/{runner_hash()}/{RUNNER_FILE}")
    if not transport.exists(remote):
        transport.put_bytes(runner_source(), remote)
    return remote
