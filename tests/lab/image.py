"""The aarch64 board of the test lab: Debian bookworm arm64 under qemu-system-aarch64 (TCG).

Built once: debootstrap's first stage, Debian's own arm64 kernel with a busybox initramfs
that loads virtio and ext4 (modules in that kernel), the runtimes' aarch64 wheels. Then the
second stage and docs/devices.md's preparation of a Pi (a venv, pip install), offline: in a
chroot on the host through qemu-user (`qemu-aarch64-static` registered with binfmt_misc for
the build alone: minutes), or, where the kernel allows no binfmt handler, inside the VM on
its first boot under full-system TCG (ten minutes idle, forty on a loaded machine). The
finished disk is cached as a compressed qcow2 under `.lab/aarch64-<key>/`, the key a hash of
everything that went into it, so a rebuild happens only when an input changes. Each step
is printed as it starts, and a long one says every minute that it still runs.

    python tests/lab/image.py          # build (or find) the image; `make test` runs it
    python tests/lab/image.py --no-chroot   # the same, the second stage in the VM (TCG)
    python tests/lab/image.py --background  # the same behind the suite (`make test`): the
                                            # ARM tests, run last, wait for it

A machine that cannot build it (no qemu-system-aarch64 or debootstrap, not root) gets
`.lab/unavailable.txt` with the reason, which the ARM tests skip with; a build that fails
(a mirror down, a first boot that breaks) leaves `.lab/failed.txt`, which they fail with.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = ROOT / ".lab"
UNAVAILABLE = LAB_DIR / "unavailable.txt"  # cannot be built here: the ARM tests skip
FAILED = LAB_DIR / "failed.txt"  # could be, and failed: the ARM tests fail with this
CURRENT = LAB_DIR / "current"  # the folder of the image the last build made or found
BUILDING = LAB_DIR / "building"  # the pid of a build under way (the ARM tests wait for it)
BUILD_OUTPUT = LAB_DIR / "build-output.txt"  # what a build in the background printed
RECIPE = 3  # bump when the build below changes in a way its inputs do not show
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# what a prepared Pi has: an init, sshd, Python with venv (docs/devices.md's preparation)
PACKAGES = (
    "systemd-sysv", "udev", "kmod", "ifupdown", "isc-dhcp-client", "openssh-server",
    "python3", "python3-venv", "busybox-static",
)  # fmt: skip
# the controller's pins (pyproject.toml), as the board's aarch64 wheels
WHEELS = ("numpy==2.4.6", "onnxruntime==1.32.0", "ai-edge-litert==2.3.0")
GUEST_PYTHON = "3.11"  # bookworm's python3
USER = "bench"
BOARD_MODEL = "QEMU virt lab board (Raspberry Pi 4-like, 2x Cortex-A72)"
BOARD_COMPATIBLE = ("edge-harness,lab-board", "linux,dummy-virt")
QEMU_MACHINE = ["-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "2048"]
# modules the initramfs loads, in order, before it can mount the root disk
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
TOOLS = {
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "dtc": "device-tree-compiler",
    "mkfs.ext4": "e2fsprogs",
    "cpio": "cpio",
    "apt-get": "apt",
}
SECOND_STAGE_TIMEOUT_S = 3600
HEARTBEAT_S = 60  # a long step says it still runs this often
# qemu-user for the second stage in a chroot (without it: the VM's first boot, TCG)
QEMU_USER = Path("/usr/bin/qemu-aarch64-static")  # Debian's qemu-user-static
QEMU_USER_BINFMT = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # its binfmt_misc entry
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_NAME = "harness-lab-aarch64"  # ours, registered for the build, removed after


class LabUnavailable(Exception):
    """This machine cannot build or boot the board (and why)."""


@dataclass(frozen=True)
class Image:
    """A built board: its disk (qcow2, never written: boots use an overlay), kernel,
    initramfs, device tree, the lab's login key and the host key to expect."""

    folder: Path

    @property
    def disk(self) -> Path:
        return self.folder / "board.qcow2"

    @property
    def kernel(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"

    @property
    def dtb(self) -> Path:
        return self.folder / "board.dtb"

    @property
    def client_key(self) -> Path:
        return self.folder / "client_ed25519"

    @property
    def host_key_pub(self) -> Path:
        return self.folder / "ssh_host_ed25519_key.pub"


def _run(argv: list[str], log: Path, cwd: Path | None = None) -> str:
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n")
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    with log.open("a") as handle:
        handle.write(done.stdout[-20000:] + done.stderr[-20000:])
    if done.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed (exit {done.returncode}): {done.stderr.strip()[-800:]} "
            f"(full log: {log})"
        )
    return done.stdout


def missing_tools() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [f"{t} (apt: {p})" for t, p in TOOLS.items() if not shutil.which(t, path=path)]


class _Apt:
    """apt with a private state folder for arm64: resolves and downloads Debian's own
    packages (signatures checked against the host's Debian keyring), host untouched."""

    def __init__(self, folder: Path, log: Path) -> None:
        self.folder, self.log = folder, log
        for sub in ("state/lists/partial", "cache/archives/partial", "etc"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "etc/sources.list").write_text(f"deb {MIRROR} {SUITE} main\n")
        (folder / "state/status").touch()
        self.options = [
            f"-oDir::Etc::SourceList={folder}/etc/sources.list",
            "-oDir::Etc::SourceParts=/nonexistent",
            f"-oDir::State={folder}/state",
            f"-oDir::State::status={folder}/state/status",
            f"-oDir::Cache={folder}/cache",
            "-oAPT::Architecture=arm64",
            "-oAPT::Architectures::=arm64",
            "-oAPT::Sandbox::User=root",
        ]

    def update(self) -> None:
        _run(["apt-get", *self.options, "-qq", "update"], self.log)

    def kernel_package(self) -> tuple[str, str]:
        """The package that Debian's linux-image-arm64 points at, and its version."""
        text = _run(["apt-cache", *self.options, "depends", "linux-image-arm64"], self.log)
        found = re.search(r"Depends: (linux-image-[0-9][^\s]*-arm64)", text)
        if not found:
            raise RuntimeError(f"cannot resolve linux-image-arm64 from: {text[:300]!r}")
        name = found.group(1)
        shown = _run(["apt-cache", *self.options, "show", "--no-all-versions", name], self.log)
        version = re.search(r"^Version: (\S+)", shown, re.M)
        return name, version.group(1) if version else "?"

    def download(self, package: str, into: Path) -> Path:
        into.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", *self.options, "-qq", "download", package], self.log, cwd=into)
        return next(into.glob(f"{package}_*.deb"))


def _download_wheels(into: Path, log: Path) -> dict[str, str]:
    """The runtimes' aarch64 wheels for the guest's Python, fetched here (no arm64 code
    runs): file name -> sha256."""
    into.mkdir(parents=True, exist_ok=True)
    platforms = [f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)]
    platforms += ["manylinux2014_aarch64", "linux_aarch64"]
    _run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(into),
         "--only-binary=:all:", "--implementation", "cp", "--python-version", GUEST_PYTHON,
         *[a for p in platforms for a in ("--platform", p)], *WHEELS],
        log,
    )  # fmt: skip
    return {
        wheel.name: hashlib.sha256(wheel.read_bytes()).hexdigest()
        for wheel in sorted(into.glob("*.whl"))
    }


def _module_depends(ko: Path) -> list[str]:
    """A kernel module's `depends=` (read from its .modinfo: no depmod for arm64 here)."""
    found = re.search(rb"depends=([^\x00]*)\x00", ko.read_bytes())
    return [d for d in (found.group(1).decode() if found else "").split(",") if d]


def _modules_in_order(modules_root: Path, wanted: tuple[str, ...]) -> list[Path]:
    by_name = {ko.stem.replace("-", "_"): ko for ko in modules_root.rglob("*.ko")}
    ordered: list[Path] = []

    def add(name: str) -> None:
        ko = by_name.get(name.replace("-", "_"))
        if ko is None or ko in ordered:  # None: built into the kernel
            return
        for dependency in _module_depends(ko):
            add(dependency)
        ordered.append(ko)

    for name in wanted:
        add(name)
    return ordered


INITRAMFS_INIT = """#!/bin/busybox sh
# The lab board's initramfs: load virtio and ext4 (modules in Debian's kernel), mount the
# root disk, hand over to its init (harness.init= on the command line, else /sbin/init).
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod "/modules/$m" || echo "initramfs: insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
init=$(sed -n 's/.*harness\\.init=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
[ -n "$init" ] || init=/sbin/init
mount -o rw /dev/vda /newroot || { echo "initramfs: cannot mount /dev/vda"; poweroff -f; }
mount --move /dev /newroot/dev
umount /proc
exec switch_root /newroot "$init"
"""

PREPARE = """#!/bin/sh
# The lab board's preparation, offline, as root on the board's own root filesystem (a
# chroot on the host through qemu-user, or the VM's first boot): debootstrap's second
# stage, then docs/devices.md's preparation of a Pi.
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
step() { echo "lab-step: $*"; }
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
# no fsync per unpacked file: the disk image is written whole afterwards (mmdebstrap does so)
echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/lab-unsafe-io
step "debootstrap second stage (unpack and configure $(ls /var/cache/apt/archives/*.deb | wc -l) packages)"
/debootstrap/debootstrap --second-stage
mount -t proc proc /proc 2>/dev/null || true  # the second stage unmounts what it used
rm -f /usr/sbin/policy-rc.d /etc/dpkg/dpkg.cfg.d/lab-unsafe-io
step "kernel modules, host name, network, the user __USER__"
depmod -a "$(cat /lab/kernel-release)"
echo lab-board > /etc/hostname
echo '/dev/vda / ext4 defaults 0 1' > /etc/fstab
printf 'auto lo\\niface lo inet loopback\\nauto eth0\\niface eth0 inet dhcp\\n' \\
  > /etc/network/interfaces.d/lab
useradd --create-home --shell /bin/bash __USER__
install -d -m 700 -o __USER__ -g __USER__ /home/__USER__/.ssh
install -m 600 -o __USER__ -g __USER__ /lab/authorized_keys /home/__USER__/.ssh/authorized_keys
# docs/devices.md, "Preparing a Raspberry Pi": python3-venv (above), then a venv with the runtimes
step "preparing a Pi as docs/devices.md does: a venv and pip install numpy onnxruntime ai-edge-litert"
su __USER__ -c 'python3 -m venv ~/harness-venv && ~/harness-venv/bin/pip install --no-index \\
  --find-links /lab/wheels --no-compile --quiet numpy onnxruntime ai-edge-litert'
step "checking the runtimes import"
su __USER__ -c '~/harness-venv/bin/python -c "import onnxruntime, ai_edge_litert.interpreter"'
echo lab-prepared
"""

FIRST_BOOT = """#!/bin/sh
# The lab board's first boot (PID 1), where no chroot could be used: the preparation
# above, then power off; the host checks for the marker.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
trap 'echo "lab-firstboot-FAILED"; sync; echo o > /proc/sysrq-trigger' EXIT
mount -t proc proc /proc 2>/dev/null || true
mount -t sysfs sysfs /sys 2>/dev/null || true
/lab/prepare.sh || exit 1
mount -t proc proc /proc 2>/dev/null || true
rm -rf /lab
trap - EXIT
echo lab-firstboot-done
sync
mount -o remount,ro / || true
echo o > /proc/sysrq-trigger
sleep 60  # the power-off is asynchronous; PID 1 must not exit before it
"""


def say(message: str) -> None:
    """A line on the build's output as it happens (make shows it; the log has the rest)."""
    print(f"lab: {message}", flush=True)


@contextlib.contextmanager
def _heartbeat(what: str, source: Path) -> Iterator[None]:
    """Every HEARTBEAT_S while the block runs: that `what` still runs, for how long, and
    the last step or line `source` (a log or console file) shows."""
    done = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not done.wait(HEARTBEAT_S):
            text = source.read_text(errors="replace") if source.exists() else ""
            steps = re.findall(r"lab-step: (.*)$", text, re.M)
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            line = lines[-1][-100:] if lines else "no output yet"
            now = f"{steps[-1]}; last: {line}" if steps else line
            say(f"  still {what} ({time.monotonic() - started:.0f} s): {now}")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _device_tree(folder: Path, log: Path) -> None:
    """The virt machine's own device tree, with a Pi-like `model` and `compatible`, so the
    board is identified from a real /sys/firmware/devicetree/base/model."""
    raw = folder / "virt.dtb"
    _run(["qemu-system-aarch64", *QEMU_MACHINE, "-machine", f"dumpdtb={raw}", "-nographic"], log)
    source = _run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(raw)], log)
    compatible = ", ".join(f'"{c}"' for c in BOARD_COMPATIBLE)
    for line, value in (("model", f'"{BOARD_MODEL}"'), ("compatible", compatible)):
        source, replaced = re.subn(
            rf'^\t{line} = "linux,dummy-virt";$',
            f"\t{line} = {value};",
            source,
            count=1,
            flags=re.M,
        )
        if not replaced:
            raise RuntimeError(f"virt device tree without a root {line} (see {raw})")
    (folder / "board.dts").write_text(source)
    _run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(folder / "board.dtb"),
          str(folder / "board.dts")], log)  # fmt: skip
    raw.unlink()


def _initramfs(work: Path, modules_root: Path, busybox_deb: Path, out: Path, log: Path) -> None:
    tree = work / "initramfs"
    (tree / "bin").mkdir(parents=True)
    (tree / "modules").mkdir()
    unpacked = work / "busybox"
    _run(["dpkg-deb", "-x", str(busybox_deb), str(unpacked)], log)
    shutil.copy2(unpacked / "bin/busybox", tree / "bin/busybox")
    names = []
    for ko in _modules_in_order(modules_root, INITRAMFS_MODULES):
        shutil.copy2(ko, tree / "modules" / ko.name)
        names.append(ko.name)
    (tree / "modules.order").write_text("\n".join(names) + "\n")
    (tree / "init").write_text(INITRAMFS_INIT)
    (tree / "init").chmod(0o755)
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    with out.open("wb") as handle:
        subprocess.run(
            ["cpio", "--quiet", "-o", "-H", "newc"], input="\n".join(files).encode(),
            stdout=handle, cwd=tree, check=True,
        )  # fmt: skip


class NoChroot(Exception):
    """The host cannot run arm64 programs through qemu-user (and why): the VM prepares."""


def _aarch64_magic() -> str:
    """Debian's binfmt_misc line for qemu-user-static's aarch64, as its package ships it."""
    if not QEMU_USER.exists() or not QEMU_USER_BINFMT.exists():
        raise NoChroot(f"no {QEMU_USER} (apt: qemu-user-static)")
    return QEMU_USER_BINFMT.read_text().strip()


@contextlib.contextmanager
def _binfmt_aarch64(log: Path) -> Iterator[None]:
    """arm64 ELF files run through qemu-aarch64-static for the block, then the host as it
    was: binfmt_misc mounted only if it was not, our entry (flag F: the interpreter is
    opened now, so the chroot needs no copy of it) registered and removed after. An entry
    for aarch64 that the host already has enabled with flag F is used as it is."""
    line = _aarch64_magic()
    mounted = False
    if not (BINFMT / "register").exists():
        done = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise NoChroot(f"binfmt_misc cannot be mounted here: {done.stderr.strip()}")
        mounted = True
    ours = BINFMT / BINFMT_NAME
    try:
        magic = line.split(":")[4]
        usable = [
            entry for entry in BINFMT.iterdir()
            if entry.name not in ("register", "status", BINFMT_NAME)
            and (text := entry.read_text(errors="replace")).startswith("enabled")
            and re.search(r"^flags: .*F", text, re.M)
            and magic.replace("\\x", "").lower() in text.replace(" ", "")
        ]  # fmt: skip
        if not usable:
            if ours.exists():  # left by a build that was killed
                ours.write_text("-1")
            try:
                (BINFMT / "register").write_text(":" + BINFMT_NAME + line[line.index(":", 1) :])
            except OSError as exc:
                raise NoChroot(f"cannot register a binfmt_misc handler: {exc}") from None
        with log.open("a") as handle:
            used = usable[0].name if usable else BINFMT_NAME
            handle.write(f"binfmt_misc: arm64 programs run through {used}\n")
        yield
    finally:
        if ours.exists():
            ours.write_text("-1")
        if mounted:
            subprocess.run(["umount", str(BINFMT)], capture_output=True, check=False)


def _mounts_under(folder: Path) -> list[Path]:
    """Mount points at or below `folder`, deepest first (/proc/self/mounts)."""
    root = str(folder.resolve())
    points = [
        Path(line.split()[1].encode().decode("unicode_escape"))
        for line in Path("/proc/self/mounts").read_text().splitlines()
    ]
    inside = [p for p in points if str(p) == root or str(p).startswith(root + "/")]
    return sorted(set(inside), key=lambda p: len(p.parts), reverse=True)


def _unmount_under(folder: Path) -> None:
    """Unmount everything below `folder` (a chroot's /proc, /sys, /dev bind) and check:
    deleting a folder that still has the host's /dev bound inside would delete the host's
    device nodes."""
    for point in _mounts_under(folder):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
    left = _mounts_under(folder)
    if left:
        raise RuntimeError(f"cannot unmount {', '.join(map(str, left))}: unmount them by hand")


def _end_processes_in(root: Path) -> None:
    """Kill what a maintainer script left running inside the chroot (none should)."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if entry.name.isdigit() and Path(os.readlink(entry / "root")) == root:
                os.kill(int(entry.name), 9)


def _trim_package_index(rootfs: Path) -> int:
    """Keep in the first stage's copy of the archive's Packages index (50 MB) only the
    packages being installed: the second stage looks each one up there with a perl script
    that reads the whole index every time, minutes under emulation. Its count of entries."""
    names = set()
    for listed in ("required", "base"):
        names |= set((rootfs / "debootstrap" / listed).read_text().split())
    kept = 0
    for index in (rootfs / "var/lib/apt/lists").glob("*_Packages"):
        entries = index.read_text(errors="replace").split("\n\n")
        chosen = [entry for entry in entries if _package_of(entry) in names]
        index.write_text("\n\n".join(chosen) + "\n\n")
        kept += len(chosen)
    return kept


def _package_of(entry: str) -> str | None:
    found = re.match(r"Package: (\S+)", entry)
    return found.group(1) if found else None


def _logged_with_times(argv: list[str], log: Path) -> int:
    """Run argv, each line of its output appended to `log` behind the seconds since it
    started (where the minutes of a build go); its exit status. Killed past
    SECOND_STAGE_TIMEOUT_S."""
    started = time.monotonic()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n")
        handle.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, text=True, errors="replace")  # fmt: skip
        timer = threading.Timer(SECOND_STAGE_TIMEOUT_S, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                handle.write(f"[{time.monotonic() - started:6.1f} s] {line}")
                handle.flush()
            return proc.wait()
        finally:
            timer.cancel()


def _prepare_in_chroot(rootfs: Path, log: Path) -> None:
    """The preparation (PREPARE) in a chroot on the host, arm64 programs run by qemu-user:
    minutes instead of the VM's many. NoChroot when the host cannot; RuntimeError when
    the preparation itself fails (that would fail in the VM as well)."""
    with _binfmt_aarch64(log):
        probe = subprocess.run(["chroot", str(rootfs), "/bin/true"], capture_output=True,
                               text=True, check=False)  # fmt: skip
        if probe.returncode != 0:
            raise NoChroot(f"arm64 programs do not run in a chroot here: {probe.stderr.strip()}")
        mounts = [("proc", "proc", rootfs / "proc", []), ("sysfs", "sysfs", rootfs / "sys", []),
                  ("/dev", None, rootfs / "dev", ["--bind"])]  # fmt: skip
        try:
            for source, kind, target, options in mounts:
                target.mkdir(exist_ok=True)
                argv = ["mount", *options, *(["-t", kind] if kind else []), source, str(target)]
                _run(argv, log)
            with _heartbeat("preparing the board in a chroot", log):
                exit_code = _logged_with_times(["chroot", str(rootfs), "/lab/prepare.sh"], log)
        finally:
            _end_processes_in(rootfs)
            _unmount_under(rootfs)  # the second stage may have unmounted some itself
    text = log.read_text(errors="replace")
    if exit_code != 0 or "lab-prepared" not in text:
        tail = "\n".join(text.splitlines()[-25:])
        raise RuntimeError(f"preparing the board in a chroot failed (exit {exit_code}); "
                           f"log ({log}) ends:\n{tail}")  # fmt: skip


def _second_stage(folder: Path, raw: Path, log: Path) -> None:
    """Boot the new disk once with the first-boot script as init; it powers off when done."""
    console = folder / "firstboot-console.log"
    argv = [
        "qemu-system-aarch64", *QEMU_MACHINE, "-nographic", "-no-reboot", "-nic", "none",
        "-kernel", str(folder / "vmlinuz"), "-initrd", str(folder / "initrd.img"),
        "-append", "console=ttyAMA0 panic=-1 net.ifnames=0 harness.init=/lab/firstboot.sh",
        "-drive", f"file={raw},format=raw,if=none,id=root",
        "-device", "virtio-blk-pci,drive=root",
        "-serial", f"file:{console}", "-monitor", "none", "-display", "none",
    ]  # fmt: skip
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n")
    with (
        contextlib.suppress(subprocess.TimeoutExpired),  # the console says how far it got
        _heartbeat("preparing the board on its first boot (TCG)", console),
    ):
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=SECOND_STAGE_TIMEOUT_S, check=False)  # fmt: skip
    text = console.read_text(errors="replace") if console.exists() else ""
    if "lab-firstboot-done" not in text:
        tail = "\n".join(text.splitlines()[-25:])
        raise RuntimeError(f"the board's first boot did not finish; console ({console}):\n{tail}")


def resolve_inputs(work: Path, log: Path) -> dict[str, object]:
    """Everything that goes into the image, resolved now: the key of its cache folder."""
    apt = _Apt(work / "apt", log)
    apt.update()
    kernel_package, kernel_version = apt.kernel_package()
    wheels = _download_wheels(work / "wheels", log)
    scripts = hashlib.sha256((INITRAMFS_INIT + PREPARE + FIRST_BOOT).encode()).hexdigest()
    return {
        "recipe": RECIPE,
        "scripts_sha256": scripts,
        "suite": SUITE,
        "packages": list(PACKAGES),
        "kernel_package": kernel_package,
        "kernel_version": kernel_version,
        "wheels": wheels,
        "machine": QEMU_MACHINE,
        "initramfs_modules": list(INITRAMFS_MODULES),
        "board": [BOARD_MODEL, *BOARD_COMPATIBLE],
        "user": USER,
    }


def key_of(inputs: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def build(inputs: dict[str, object], work: Path, out: Path, log: Path, chroot: bool = True) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    rootfs = work / "rootfs"
    say("debootstrap, first stage (arm64 packages unpacked on the host)")
    _run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
          f"--include={','.join(PACKAGES)}", SUITE, str(rootfs), MIRROR], log)  # fmt: skip
    say(f"Debian's arm64 kernel ({inputs['kernel_package']}), initramfs, device tree, keys")
    apt = _Apt(work / "apt", log)
    kernel_deb = apt.download(str(inputs["kernel_package"]), work / "debs")
    kernel = work / "kernel"
    _run(["dpkg-deb", "-x", str(kernel_deb), str(kernel)], log)
    release = str(inputs["kernel_package"]).removeprefix("linux-image-")
    shutil.copy2(kernel / "boot" / f"vmlinuz-{release}", out / "vmlinuz")
    modules = kernel / "lib/modules" / release
    shutil.copytree(modules, rootfs / "lib/modules" / release, symlinks=True)
    busybox = next((rootfs / "var/cache/apt/archives").glob("busybox-static_*.deb"))
    _initramfs(work, modules, busybox, out / "initrd.img", log)
    _device_tree(out, log)
    # keys made here: the host key is known before the first boot (as read off a board's
    # console), and the guest spends no emulated time making them
    for kind in ("ed25519", "ecdsa", "rsa"):
        key = rootfs / f"etc/ssh/ssh_host_{kind}_key"
        key.parent.mkdir(parents=True, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "lab-board", "-f", str(key)], log)
    shutil.copy2(rootfs / "etc/ssh/ssh_host_ed25519_key.pub", out / "ssh_host_ed25519_key.pub")
    client = out / "client_ed25519"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab", "-f", str(client)], log)
    lab = rootfs / "lab"
    shutil.copytree(work / "wheels", lab / "wheels")
    shutil.copy2(client.with_suffix(".pub"), lab / "authorized_keys")
    (lab / "kernel-release").write_text(release + "\n")
    for name, script in (("prepare.sh", PREPARE), ("firstboot.sh", FIRST_BOOT)):
        (lab / name).write_text(script.replace("__USER__", USER))
        (lab / name).chmod(0o755)
    with log.open("a") as handle:
        handle.write(f"package index trimmed to {_trim_package_index(rootfs)} entries\n")
    timings["host_stage_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    prepared_in = "vm"
    if chroot:
        try:
            say("second stage and the Pi's preparation in a chroot through qemu-user")
            _prepare_in_chroot(rootfs, log)
            shutil.rmtree(lab)
            prepared_in = "chroot"
        except NoChroot as exc:
            say(f"no chroot here ({exc}); the board prepares itself on its first boot")
    raw = work / "board.raw"
    with raw.open("wb") as handle:
        handle.truncate(4 * 1024**3)
    _run(["mkfs.ext4", "-q", "-L", "lab-board", "-d", str(rootfs), str(raw)], log)
    shutil.rmtree(rootfs)
    if prepared_in == "vm":
        say("second stage and the Pi's preparation on the board's first boot (TCG: 10-40 min)")
        _second_stage(out, raw, log)
    timings["second_stage_s"] = round(time.monotonic() - started, 1)
    timings["second_stage_in"] = prepared_in  # type: ignore[assignment]
    started = time.monotonic()
    say("compressing the disk to qcow2")
    _run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw),
          str(out / "board.qcow2")], log)  # fmt: skip
    timings["compress_s"] = round(time.monotonic() - started, 1)
    timings["qcow2_mb"] = round((out / "board.qcow2").stat().st_size / 1e6)
    (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    (out / "inputs.json").write_text(json.dumps(inputs, indent=1, sort_keys=True) + "\n")
    say(f"built: {json.dumps(timings)}")


def ensure_image(chroot: bool = True) -> Image:
    """The board for today's inputs: found in the cache or built (minutes through a
    chroot; ten to forty in the VM when `chroot` is off or impossible)."""
    missing = missing_tools()
    if missing:
        raise LabUnavailable(f"qemu/debootstrap tools missing: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise LabUnavailable("building the board image needs root (debootstrap, file owners)")
    LAB_DIR.mkdir(exist_ok=True)
    work = LAB_DIR / "work"
    log = LAB_DIR / "build.log"
    log.write_text("")
    if work.exists():  # a build that was killed: its chroot's mounts first
        _unmount_under(work)
        shutil.rmtree(work)
    work.mkdir()
    try:
        inputs = resolve_inputs(work, log)
    except (RuntimeError, OSError) as exc:
        cached = sorted(LAB_DIR.glob("aarch64-*/board.qcow2"), key=lambda p: p.stat().st_mtime)
        if cached:  # offline: the newest image still boots
            print(f"lab: cannot resolve today's inputs ({exc}); using {cached[-1].parent}")
            return Image(cached[-1].parent)
        raise
    out = LAB_DIR / f"aarch64-{key_of(inputs)}"
    if (out / "board.qcow2").exists():
        shutil.rmtree(work)
        return Image(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    say(f"building the board image {out.name} (log: {log})")
    build(inputs, work, partial, log, chroot=chroot)
    for old in LAB_DIR.glob("aarch64-*"):  # one image kept: the inputs moved on
        if old != partial:
            shutil.rmtree(old)
    partial.rename(out)
    shutil.rmtree(work)
    return Image(out)


def current_image() -> Image | None:
    """The image the last build made or found, if it is still there."""
    folder = LAB_DIR / CURRENT.read_text().strip() if CURRENT.exists() else None
    return Image(folder) if folder and (folder / "board.qcow2").exists() else None


def build_under_way() -> int | None:
    """The pid of a build still running (BUILDING names a live process), else None."""
    try:
        pid = int(BUILDING.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def wait_for_build(timeout_s: float) -> None:
    """Until no build is under way (a condition, polled), at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while build_under_way() is not None and time.monotonic() < deadline:
        time.sleep(1)


def _in_background(argv: list[str]) -> int:
    """The build in a process of its own, its output in BUILD_OUTPUT; returns at once, the
    state cleared and BUILDING written first, so that a test that starts now waits."""
    LAB_DIR.mkdir(exist_ok=True)
    for state in (UNAVAILABLE, FAILED, CURRENT):
        state.unlink(missing_ok=True)
    pid = os.fork()
    if pid:
        BUILDING.write_text(f"{pid}\n")
        print(f"lab: building the board image behind the suite (output: {BUILD_OUTPUT}); "
              "the ARM tests run last and wait for it", flush=True)  # fmt: skip
        return 0
    os.setsid()  # not make's: the recipe goes on
    output = os.open(BUILD_OUTPUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.closerange(3, 1024)  # no pipe of make's or CI's held open
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = sys.stdout
    try:
        main([a for a in argv if a != "--background"])
    except BaseException as exc:  # a bug of ours: the tests fail with it, never skip
        FAILED.write_text(f"the build stopped: {exc!r} (see {BUILD_OUTPUT})\n")
        traceback.print_exc()
    finally:
        os._exit(0)


def main(argv: list[str]) -> int:
    """Exit 0 whatever happens (the rest of the suite runs); the ARM tests read the state.
    `--no-chroot`: the second stage in the VM even where a chroot could do it;
    `--background`: return at once, the build going on behind."""
    if "--background" in argv:
        return _in_background(argv)
    started = time.monotonic()
    LAB_DIR.mkdir(exist_ok=True)
    for state in (UNAVAILABLE, FAILED, CURRENT):
        state.unlink(missing_ok=True)
    BUILDING.write_text(f"{os.getpid()}\n")
    try:
        return _build_and_say(argv, started)
    finally:
        BUILDING.unlink(missing_ok=True)


def _build_and_say(argv: list[str], started: float) -> int:
    try:
        image = ensure_image(chroot="--no-chroot" not in argv)
    except LabUnavailable as exc:
        UNAVAILABLE.write_text(f"{exc}\n")
        print(f"lab: the aarch64 board cannot be built here: {exc}; its tests will skip")
        return 0
    except (RuntimeError, OSError, subprocess.SubprocessError, StopIteration) as exc:
        FAILED.write_text(f"{exc}\n")
        print(f"lab: the aarch64 board image failed to build: {exc}", file=sys.stderr)
        return 0
    CURRENT.write_text(image.folder.name + "\n")
    print(f"lab: board image {image.folder} ready ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
