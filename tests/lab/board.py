"""One boot of the lab's aarch64 board: the cached image behind a throwaway qcow2 overlay
(so a test never dirties the cache), its sshd forwarded to a port on 127.0.0.1.

The guest's network is QEMU's user-mode network with `restrict=on`: it reaches nothing,
not even the host; only the forwarded port reaches it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sshd_server import stop

from lab.image import QEMU_MACHINE, Image

BOOT_TIMEOUT_S = 600  # ≈ 40 s on an idle 2-core host; a loaded one is many times slower


class BoardDidNotBoot(RuntimeError):
    pass


@dataclass(frozen=True)
class Board:
    image: Image
    port: int
    console: Path
    boot_s: float


def _banner(port: int) -> bytes:
    """The first bytes the forwarded port answers with (QEMU accepts before the guest's
    sshd listens, then closes: b'' until it does)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.settimeout(5)
            return conn.recv(64)
    except OSError:
        return b""


@contextmanager
def booted_board(image: Image, folder: Path, port: int) -> Iterator[Board]:
    folder.mkdir(parents=True, exist_ok=True)
    overlay, console = folder / "overlay.qcow2", folder / "console.log"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.disk),
         str(overlay)],
        check=True,
    )  # fmt: skip
    argv = [
        "qemu-system-aarch64", *QEMU_MACHINE, "-no-reboot", "-display", "none",
        "-monitor", "none", "-serial", f"file:{console}",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-dtb", str(image.dtb),
        "-append", "console=ttyAMA0 panic=-1 net.ifnames=0",
        "-drive", f"file={overlay},format=qcow2,if=none,id=root",
        "-device", "virtio-blk-pci,drive=root",
        "-netdev", f"user,id=lab,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=lab",
    ]  # fmt: skip
    started = time.monotonic()
    with (folder / "qemu.stderr").open("wb") as stderr:  # the child keeps its own copy
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr)  # fmt: skip
    try:
        while not _banner(port).startswith(b"SSH-"):
            if qemu.poll() is not None or time.monotonic() - started > BOOT_TIMEOUT_S:
                said = [p for p in (console, folder / "qemu.stderr") if p.exists()]
                tail = [ln for p in said for ln in p.read_text(errors="replace").splitlines()]
                raise BoardDidNotBoot(
                    f"the lab board's sshd did not answer (qemu exit {qemu.poll()}); console "
                    "and qemu's stderr end:\n" + "\n".join(tail[-20:])
                )
            time.sleep(0.5)  # polling a condition: the banner
        yield Board(image, port, console, round(time.monotonic() - started, 1))
    finally:
        stop(qemu, timeout_s=30)
        overlay.unlink(missing_ok=True)
