"""A lab of "devices" in Linux network namespaces, each with a veth link to the root
namespace, an address in 10.200.0.0/16 and its own real OpenSSH sshd: for the fault tests
and the fleet benchmark. Faults are real: a link taken down, nftables drops, tbf, sshd
killed.

Safety first: before any namespace exists, `ip route add unreachable 10.200.0.0/16 metric
4000` goes into the root namespace (removed last), so that a link taken down can never
send test traffic out through the default gateway. Everything created is removed on exit.
Needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import getpass
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from sshd_server import SSHServer, _find_sshd

GUARD_ROUTE = ["unreachable", "10.200.0.0/16", "metric", "4000"]


def ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    argv = ["ip", *args] if namespace is None else ["ip", "-n", namespace, *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def can_make_namespaces() -> str | None:
    """Why this machine cannot run the lab (None when it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "tc"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            return f"`{tool}` is missing (iproute2 / nftables)"
    return None


@dataclass
class LabDevice:
    index: int
    namespace: str
    root_link: str  # the veth end in the root namespace
    address: str
    root: Path  # its sshd's folder
    sshd: subprocess.Popen[bytes] | None = None

    def device_toml(self, lab: NetLab, name: str, **extra: object) -> str:
        server = SSHServer(
            host=self.address,
            port=22,
            user=getpass.getuser(),
            user_key=lab.root / "user_key",
            host_public_key="",
            known_hosts=lab.root / "known_hosts",
            root=self.root,
        )
        return server.device_toml(name, self.root / "workdir", **extra)


@dataclass
class NetLab:
    root: Path
    token: str
    devices: list[LabDevice] = field(default_factory=list)

    # -- faults
    def link_down(self, device: LabDevice) -> None:
        ip("link", "set", device.root_link, "down")

    def link_up(self, device: LabDevice) -> None:
        ip("link", "set", device.root_link, "up")

    def drop_percent(self, device: LabDevice, percent: int) -> None:
        """Lose `percent` % of the packets both ways (nftables in the device's namespace)."""
        rules = (
            "table inet labfault {\n"
            + "".join(
                f"  chain {hook} {{\n    type filter hook {hook} priority 0;\n"
                f"    numgen random mod 100 < {percent} drop\n  }}\n"
                for hook in ("input", "output")
            )
            + "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", device.namespace, "nft", "-f", "-"],
            input=rules.encode(),
            check=True,
        )

    def limit_rate(self, device: LabDevice, kbit: int) -> None:
        """A token bucket on the device's outgoing link (tbf)."""
        subprocess.run(
            ["ip", "netns", "exec", device.namespace, "tc", "qdisc", "add", "dev",
             f"{device.root_link}d", "root", "tbf", "rate", f"{kbit}kbit", "burst", "16kb",
             "latency", "400ms"],
            check=True,
        )  # fmt: skip

    def kill_sshd(self, device: LabDevice) -> None:
        """Every sshd of the namespace: the listener and the sessions it forked."""
        for pid in ip("netns", "pids", device.namespace).split():
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith("sshd"):
                os.kill(int(pid), signal.SIGKILL)
        if device.sshd is not None:
            device.sshd.wait()
            device.sshd = None

    def kill_everything(self, device: LabDevice) -> None:
        """Every process left in the namespace (a namespace's deletion kills none)."""
        for pid in ip("netns", "pids", device.namespace, check=False).split():
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        if device.sshd is not None:
            device.sshd.wait()
            device.sshd = None

    def start_sshd(self, device: LabDevice) -> None:
        binary = _find_sshd()
        assert binary is not None, "sshd is not installed"
        log = open(device.root / "sshd.log", "ab")  # noqa: SIM115 -- lives with the server
        device.sshd = subprocess.Popen(
            ["ip", "netns", "exec", device.namespace, binary, "-f",
             str(device.root / "sshd_config"), "-D", "-e"],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 15
        while True:
            probe = subprocess.run(
                ["ip", "netns", "exec", device.namespace, sys.executable, "-c",
                 f"import socket; socket.create_connection(('{device.address}', 22), 0.5)"],
                capture_output=True,
            )  # fmt: skip
            if probe.returncode == 0:
                return
            if device.sshd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd in {device.namespace} did not start: "
                                   f"{(device.root / 'sshd.log').read_text()}")  # fmt: skip
            time.sleep(0.05)

    def processes_in(self, device: LabDevice, pattern: str) -> list[int]:
        """Processes of the device's namespace whose command line contains `pattern`."""
        found = []
        for pid in ip("netns", "pids", device.namespace).split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if pattern.encode() in cmdline:
                found.append(int(pid))
        return found


@contextmanager
def netlab(root: Path, count: int) -> Iterator[NetLab]:
    """`count` namespace devices 10.200.<i>.2, reached from the root namespace."""
    lab = NetLab(root, secrets.token_hex(2))
    for key_name in ("host_key", "user_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key_name)],
            check=True,
        )
    (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
    host_key = " ".join((root / "host_key.pub").read_text().split()[:2])
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with ExitStack() as cleanup:
        ip("route", "add", *GUARD_ROUTE)
        cleanup.callback(ip, "route", "del", *GUARD_ROUTE, check=False)
        known = []
        for index in range(1, count + 1):
            device = LabDevice(
                index=index,
                namespace=f"hlab{lab.token}-{index}",
                root_link=f"hl{lab.token}{index}",
                address=f"10.200.{index}.2",
                root=root / f"device{index}",
            )
            device.root.mkdir()
            ip("netns", "add", device.namespace)
            cleanup.callback(ip, "netns", "del", device.namespace, check=False)
            ip("link", "add", device.root_link, "type", "veth", "peer", "name",
               f"{device.root_link}d", "netns", device.namespace)  # fmt: skip
            cleanup.callback(ip, "link", "del", device.root_link, check=False)
            ip("addr", "add", f"10.200.{index}.1/24", "dev", device.root_link)
            ip("link", "set", device.root_link, "up")
            for args in (
                ("addr", "add", f"{device.address}/24", "dev", f"{device.root_link}d"),
                ("link", "set", f"{device.root_link}d", "up"),
                ("link", "set", "lo", "up"),
            ):
                ip(*args, namespace=device.namespace)
            (device.root / "sshd_config").write_text(
                f"ListenAddress {device.address}\nPort 22\nHostKey {root / 'host_key'}\n"
                f"PidFile {device.root / 'sshd.pid'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "PermitRootLogin prohibit-password\nStrictModes no\nSubsystem sftp internal-sftp\n"
                "MaxSessions 50\nMaxStartups 50:30:100\nLogLevel ERROR\n"
            )
            lab.start_sshd(device)
            cleanup.callback(lab.kill_everything, device)
            known.append(f"{device.address} {host_key}")
            lab.devices.append(device)
        (root / "known_hosts").write_text("\n".join(known) + "\n")
        yield lab


@contextmanager
def delaying_proxy(target: tuple[str, int], delay_s: float) -> Iterator[int]:
    """A TCP proxy on 127.0.0.1 that holds every chunk `delay_s` before passing it on, each
    way (this kernel has no netem): yields its port."""
    import queue
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()
    connections: list[socket.socket] = []  # closed at the end, not left to the GC

    def pump(source: socket.socket, sink: socket.socket) -> None:
        held: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def send() -> None:
            while True:
                due, data = held.get()
                time.sleep(max(0.0, due - time.monotonic()))
                if not data:
                    with suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    return
                with suppress(OSError):
                    sink.sendall(data)

        threading.Thread(target=send, daemon=True).start()
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            held.put((time.monotonic() + delay_s, data))
            if not data:
                return

    def serve() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(target)
            connections.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        listener.close()
        for connection in connections:
            with suppress(OSError):
                connection.close()
