"""`harness init`: the three files a first run needs (a model manifest, a plan and, for a
board, a device file), as text. Pure: names and paths in, {relative path: text} out; the
CLI writes them and never overwrites one."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SshTarget:
    """`user@host[:port]` from the command line."""

    user: str
    host: str
    port: int = 22

    @classmethod
    def parse(cls, text: str) -> SshTarget:
        match = re.fullmatch(r"(?:(?P<user>[^@\s]+)@)?(?P<host>[^:@\s]+)(?::(?P<port>\d+))?", text)
        if not match or not match["user"]:
            raise ValueError(f"'{text}' is not user@host or user@host:port")
        return cls(match["user"], match["host"], int(match["port"] or 22))


def safe_name(text: str) -> str:
    """A manifest or device name from a file stem or host name: letters, digits, `._-`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "model"
    return name[:64]


def scaffold(
    model_name: str,
    model_file: str,
    dims: dict[str, int],
    device: str,
    ssh: SshTarget | None,
) -> dict[str, str]:
    """The files, by path relative to the project folder. `model_file` is relative to
    models/; `dims` gives every dynamic input axis a value (batch = 1)."""
    files = {
        f"models/{model_name}.toml": _manifest(model_name, model_file),
        "plans/first.toml": _plan(model_name, dims, device),
    }
    if ssh is not None:
        files[f"devices/{device}.toml"] = _device(device, ssh)
    return files


def _manifest(name: str, model_file: str) -> str:
    return f"""# {name}: made by `harness init`. The manifest names the model file (relative to
# this folder) and what the harness needs to know about it; see docs/models.md.
file = "{model_file}"
description = ""

# Quality is measured on representative inputs. Until you give some, fidelity is measured
# on seeded random inputs and marked unverified (it never passes a release budget):
# [data]
# images = "data/my_images/*.jpg"   # or: audio = ..., file = "samples.npz", text = ...

# The variants to build and compare against fp32 (every built-in strategy: docs/models.md).
[[variants]]
name = "fp16"
strategy = "fp16"

[[variants]]
name = "int8-dynamic"
strategy = "int8-dynamic"

[[variants]]
name = "int8-static"
strategy = "int8-static"
"""


def _plan(model: str, dims: dict[str, int], device: str) -> str:
    dims_text = ", ".join(f"{_key(k)} = {v}" for k, v in dims.items())
    inputs = f"\n[inputs]\ndims = {{ {dims_text} }}\n" if dims else ""
    return f"""# The first plan: {model} and its variants on {device}. Run it with
#   harness run plans/first.toml
# Paths are relative to this file.
name = "first"
devices = ["{device}"]
models = ["{model}"]

[measure]
processes = 3       # fresh runner processes per job
max_seconds = 2.0   # per process, after at least min_iterations
{inputs}"""


def _device(name: str, ssh: SshTarget) -> str:
    return f"""# {name}: made by `harness init`. The board needs Python 3.8+ and the runtimes:
#   python3 -m pip install --user onnxruntime ai-edge-litert numpy
# Record its host key once, after checking the fingerprint on the board's console:
#   ssh-keyscan -p {ssh.port} {ssh.host} >> ~/.ssh/known_hosts
# Then: harness devices check {name}
transport = "ssh"
description = ""

[connection]
host = "{ssh.host}"
port = {ssh.port}
user = "{ssh.user}"
use_agent = true                  # or identity_file = "~/.ssh/id_ed25519"
known_hosts = "~/.ssh/known_hosts"
"""


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else '"' + name.replace('"', '\\"') + '"'
