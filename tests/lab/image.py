"""The aarch64 board of the test lab: Debian bookworm arm64 under qemu-system-aarch64 (TCG).

Built once without running arm64 code on the host: debootstrap's first stage, Debian's
own arm64 kernel with a busybox initramfs that loads virtio and ext4 (modules in that
kernel), the runtimes' aarch64 wheels. The second stage and the README's preparation of
a Pi (a venv, pip install) run inside the VM on its first boot, offline. The finished disk
is cached as a compressed qcow2 under `.lab/aarch64-<key>/`, the key a hash of everything that
went into it, so a rebuild happens only when an input changes.

    python tests/lab/image.py          # build (or find) the image; `make test` runs it

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
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = ROOT / ".lab"
UNAVAILABLE = LAB_DIR / "unavailable.txt"  # cannot be built here: the ARM tests skip
FAILED = LAB_DIR / "failed.txt"  # could be, and failed: the ARM tests fail with this
CURRENT = LAB_DIR / "current"  # the folder of the image the last build made or found
RECIPE = 1  # bump when the build below changes in a way its inputs do not show
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# what a prepared Pi has: an init, sshd, Python with venv (the README's preparation)
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

FIRST_BOOT = """#!/bin/sh
# The lab board's first boot (PID 1): debootstrap's second stage, then the README's
# preparation of a Pi, offline. Powers off when done; the host checks for the marker.
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
trap 'echo "lab-firstboot-FAILED at line $LINENO"; sync; echo o > /proc/sysrq-trigger' EXIT
mount -t proc proc /proc 2>/dev/null || true
mount -t sysfs sysfs /sys 2>/dev/null || true
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
/debootstrap/debootstrap --second-stage
mount -t proc proc /proc 2>/dev/null || true  # the second stage unmounts what it used
mount -t sysfs sysfs /sys 2>/dev/null || true
rm -f /usr/sbin/policy-rc.d
depmod -a "$(cat /lab/kernel-release)"
echo lab-board > /etc/hostname
echo '/dev/vda / ext4 defaults 0 1' > /etc/fstab
printf 'auto lo\\niface lo inet loopback\\nauto eth0\\niface eth0 inet dhcp\\n' \\
  > /etc/network/interfaces.d/lab
useradd --create-home --shell /bin/bash __USER__
install -d -m 700 -o __USER__ -g __USER__ /home/__USER__/.ssh
install -m 600 -o __USER__ -g __USER__ /lab/authorized_keys /home/__USER__/.ssh/authorized_keys
# README, "Preparing a Raspberry Pi": python3-venv (above), then a venv with the runtimes
su __USER__ -c 'python3 -m venv ~/harness-venv && ~/harness-venv/bin/pip install --no-index \\
  --find-links /lab/wheels --no-compile --quiet numpy onnxruntime ai-edge-litert'
su __USER__ -c '~/harness-venv/bin/python -c "import onnxruntime, ai_edge_litert.interpreter"'
rm -rf /lab
trap - EXIT
echo lab-firstboot-done
sync
mount -o remount,ro / || true
echo o > /proc/sysrq-trigger
sleep 60  # the power-off is asynchronous; PID 1 must not exit before it
"""


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
    with contextlib.suppress(subprocess.TimeoutExpired):  # the console says how far it got
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
    scripts = hashlib.sha256((INITRAMFS_INIT + FIRST_BOOT).encode()).hexdigest()
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


def build(inputs: dict[str, object], work: Path, out: Path, log: Path) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    rootfs = work / "rootfs"
    _run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
          f"--include={','.join(PACKAGES)}", SUITE, str(rootfs), MIRROR], log)  # fmt: skip
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
    # console), and the guest spends no TCG time making them
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
    (lab / "firstboot.sh").write_text(FIRST_BOOT.replace("__USER__", USER))
    (lab / "firstboot.sh").chmod(0o755)
    raw = work / "board.raw"
    with raw.open("wb") as handle:
        handle.truncate(4 * 1024**3)
    _run(["mkfs.ext4", "-q", "-L", "lab-board", "-d", str(rootfs), str(raw)], log)
    shutil.rmtree(rootfs)
    timings["host_stage_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    _second_stage(out, raw, log)
    timings["second_stage_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    _run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw),
          str(out / "board.qcow2")], log)  # fmt: skip
    timings["compress_s"] = round(time.monotonic() - started, 1)
    timings["qcow2_mb"] = round((out / "board.qcow2").stat().st_size / 1e6)
    (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    (out / "inputs.json").write_text(json.dumps(inputs, indent=1, sort_keys=True) + "\n")


def ensure_image() -> Image:
    """The board for today's inputs: found in the cache or built (about ten minutes)."""
    missing = missing_tools()
    if missing:
        raise LabUnavailable(f"qemu/debootstrap tools missing: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise LabUnavailable("building the board image needs root (debootstrap, file owners)")
    LAB_DIR.mkdir(exist_ok=True)
    work = LAB_DIR / "work"
    log = LAB_DIR / "build.log"
    log.write_text("")
    if work.exists():
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
    build(inputs, work, partial, log)
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


def main() -> int:
    """Exit 0 whatever happens (the rest of the suite runs); the ARM tests read the state."""
    started = time.monotonic()
    LAB_DIR.mkdir(exist_ok=True)
    for state in (UNAVAILABLE, FAILED, CURRENT):
        state.unlink(missing_ok=True)
    try:
        image = ensure_image()
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
    sys.exit(main())
