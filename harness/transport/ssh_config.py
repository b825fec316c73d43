"""An ssh_config alias resolved as OpenSSH resolves it. Where the OpenSSH client is
installed the client itself answers (`ssh -G`: first match wins, `Match`, `Include`,
negated patterns, `%` tokens, ProxyJump chains); otherwise paramiko's parser, with the
`Include` lines it lacks spliced in and the tokens expanded here.

`ssh -G` prints IdentityFile unexpanded, but expands the files of UserKnownHostsFile: a
second call that passes the identity files as known-hosts files gets them back expanded
by the same client (its own `%C` hash, its own `~`)."""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError

# what OpenSSH lists when no IdentityFile is configured (ssh -G, OpenSSH 9)
DEFAULT_IDENTITIES = ("id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk",
                      "id_xmss", "id_dsa")  # fmt: skip
RESOLVER_ENV = "HARNESS_SSH_CONFIG"  # "paramiko" forces the fallback (tests, odd clients)
SSH_G_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ResolvedHost:
    """One alias as the ssh client would dial it. Unset: None / empty."""

    alias: str
    hostname: str
    port: int
    user: str | None  # as ssh: the local account where the config sets none
    identity_files: tuple[str, ...]  # configured ones, expanded; () when none configured
    known_hosts: str | None  # a configured UserKnownHostsFile (the first), expanded
    proxy_jump: str | None  # as written: "a,b" or "user@host:port"
    resolved_by: str  # "ssh -G (OpenSSH_9.2p1 ...)" or "paramiko ..."
    config: str  # the file read, or "default"


def resolve_host(alias: str, config_file: str | None) -> ResolvedHost:
    """How `ssh alias` would connect, reading `config_file` (else the user's own)."""
    config = _config_path(config_file)
    if os.environ.get(RESOLVER_ENV) != "paramiko" and shutil.which("ssh"):
        return _with_openssh(alias, config)
    return _with_paramiko(alias, config)


def parse_ssh_g(text: str) -> dict[str, list[str]]:
    """`ssh -G` output: `key value` lines; a key may repeat (identityfile)."""
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            entries.setdefault(key.lower(), []).append(value.strip())
    return entries


def _config_path(config_file: str | None) -> Path | None:
    """The file to read: the device's; else ~/.ssh/config of $HOME where that is not the
    account's home (the client reads the account's); None: the client's own choice."""
    if config_file:
        return Path(config_file).expanduser()
    home = Path(os.path.expanduser("~"))
    if home != Path(pwd.getpwuid(os.getuid()).pw_dir):
        return home / ".ssh" / "config"
    return None


def _ssh_g(alias: str, config: Path | None, *options: str) -> dict[str, list[str]]:
    argv = ["ssh", "-G"]
    if config is not None:
        argv += ["-F", str(config) if config.is_file() else os.devnull]
    argv += [*options, "--", alias]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=SSH_G_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(
            str(config or "~/.ssh/config"), f"`ssh -G {alias}` failed: {exc}"
        ) from None
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
        raise ConfigError(
            str(config or "~/.ssh/config"), f"OpenSSH cannot read it for '{alias}': {message}"
        )
    return parse_ssh_g(done.stdout)


def _with_openssh(alias: str, config: Path | None) -> ResolvedHost:
    entry = _ssh_g(alias, config)
    home = pwd.getpwuid(os.getuid()).pw_dir
    written = entry.get("identityfile", [])
    defaults = [f"~/.ssh/{name}" for name in DEFAULT_IDENTITIES]
    identities: tuple[str, ...] = ()
    if written and written != defaults:  # expanded by the client itself (see the docstring)
        expanded = _ssh_g(alias, config, "-o", "UserKnownHostsFile=" + " ".join(written))
        identities = tuple(expanded.get("userknownhostsfile", [""])[0].split())
    known = entry.get("userknownhostsfile", [""])[0].split()
    default_known = [f"{home}/.ssh/known_hosts", f"{home}/.ssh/known_hosts2"]
    jump = entry.get("proxyjump", [None])[0]
    return ResolvedHost(
        alias=alias,
        hostname=entry.get("hostname", [alias])[0],
        port=int(entry.get("port", ["22"])[0]),
        user=entry.get("user", [None])[0],
        identity_files=identities,
        known_hosts=known[0] if known and known != default_known else None,
        proxy_jump=None if jump in (None, "none") else jump,
        resolved_by=f"ssh -G ({_openssh_version()})",
        config=str(config)
        if config is not None
        else "default (~/.ssh/config, /etc/ssh/ssh_config)",
    )


def _openssh_version() -> str:
    try:
        done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "OpenSSH"
    return (done.stderr or done.stdout).strip().split(",")[0] or "OpenSSH"


def _with_paramiko(alias: str, config: Path | None) -> ResolvedHost:
    import paramiko

    path = config if config is not None else Path("~/.ssh/config").expanduser()
    entry: dict[str, object] = {}
    if path.is_file():
        # `%` hidden from paramiko, whose own token expansion (its %C is not OpenSSH's)
        # would run first; the templates are then filled by _expand as the client does
        parsed = paramiko.SSHConfig.from_text(_spliced(path, set()).replace("%", _PERCENT))
        entry = {key: _unhidden(value) for key, value in parsed.lookup(alias).items()}
    hostname = str(entry.get("hostname") or alias)
    port = int(str(entry.get("port") or 22))
    # unset, ssh logs in as the local account, and says so
    user = str(entry["user"]) if entry.get("user") else pwd.getpwuid(os.getuid()).pw_name
    jump = str(entry["proxyjump"]) if entry.get("proxyjump") else None
    tokens = _tokens(alias, hostname, port, user, jump)
    files = entry.get("identityfile")
    identities = tuple(_expand(str(f), tokens) for f in files) if isinstance(files, list) else ()
    known = str(entry.get("userknownhostsfile") or "").split()
    return ResolvedHost(
        alias=alias,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=identities,
        known_hosts=_expand(known[0], tokens) if known else None,
        proxy_jump=None if jump in (None, "none") else jump,
        resolved_by=f"paramiko {paramiko.__version__} (no OpenSSH client; Include and tokens here)",
        config=str(path),
    )


_PERCENT = "\x01harness-percent\x01"


def _unhidden(value: object) -> object:
    if isinstance(value, str):
        return value.replace(_PERCENT, "%")
    if isinstance(value, list):
        return [_unhidden(v) for v in value]
    return value


def _spliced(path: Path, seen: set[Path]) -> str:
    """The config's text with each `Include` replaced by the files it names (relative
    paths are under ~/.ssh, as in ssh_config(5)); an Include inside a Host block applies
    to that block, as OpenSSH does, because the text is spliced in place."""
    if path in seen:
        return ""
    seen = seen | {path}
    lines = []
    for line in path.read_text().splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0].lower() == "include":
            for pattern in words[1].split():
                pattern = os.path.expanduser(pattern)
                if not os.path.isabs(pattern):
                    pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
                for name in sorted(glob.glob(pattern)):
                    lines.append(_spliced(Path(name), seen))
            continue
        lines.append(line)
    return "\n".join(lines)


def _tokens(alias: str, hostname: str, port: int, user: str, jump: str | None) -> dict[str, str]:
    local = socket.gethostname()
    connection = local + hostname + str(port) + user  # %C as OpenSSH 9.2 hashes it: %l%h%p%r
    return {
        "%": "%", "h": hostname, "p": str(port), "r": user, "n": alias,
        "u": pwd.getpwuid(os.getuid()).pw_name, "d": os.path.expanduser("~"),
        "l": local, "L": local.split(".")[0], "i": str(os.getuid()), "j": jump or "",
        "C": hashlib.sha1(connection.encode()).hexdigest(),
    }  # fmt: skip


def _expand(text: str, tokens: dict[str, str]) -> str:
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "%" and index + 1 < len(text) and text[index + 1] in tokens:
            out.append(tokens[text[index + 1]])
            index += 2
            continue
        out.append(char)
        index += 1
    return os.path.expanduser("".join(out))
