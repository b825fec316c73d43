"""What the runner reads of its device: memory of its own process, thermal zones, CPU
clocks and governors, a Pi's throttling and a Jetson's power mode, the device's identity
and its facts for `harness devices check`; and the reversible preparation (affinity,
governor) a device file allows. Standard library only, Python 3.8+."""

from __future__ import annotations

import glob
import os
import platform
import shutil
import sys
from typing import Any

try:  # imported as harness.runner.contract (the controller, the tests)
    from .contract import (
        FACTS_SCHEMA,
        DeviceStateDoc,
        IdentityDoc,
        MemoryKb,
        PreparedDoc,
        PrepareSpec,
    )
except ImportError:  # run on the device, where this file's folder is on sys.path
    from contract import (  # type: ignore[no-redef]
        FACTS_SCHEMA,
        DeviceStateDoc,
        IdentityDoc,
        MemoryKb,
        PreparedDoc,
        PrepareSpec,
    )


def read_memory_kb() -> MemoryKb:
    """VmRSS, VmHWM, VmSwap and PSS (smaps_rollup: shared, memory-mapped weights counted
    once across processes) of this process in kB (Linux); HWM from getrusage elsewhere."""
    status: dict[str, int] = {}
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "VmSwap"):
                    status[name] = int(value.split()[0])
    except OSError:
        try:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            status["VmHWM"] = peak // 1024 if sys.platform == "darwin" else peak
        except (ImportError, OSError):
            pass
    memory: MemoryKb = {"rss_kb": status.get("VmRSS"), "hwm_kb": status.get("VmHWM"),
                        "swap_kb": status.get("VmSwap"), "pss_kb": None}  # fmt: skip
    try:
        with open("/proc/self/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    memory["pss_kb"] = int(line.split()[1])
    except OSError:
        pass  # kernels before 4.14, or not Linux
    return memory


def read_thermal_c(sysfs: str = "/sys") -> dict[str, float]:
    """Every thermal zone's temperature in °C, keyed by zone type (empty where none)."""
    zones: dict[str, float] = {}
    root = os.path.join(sysfs, "class", "thermal")
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return zones
    for name in names:
        if not name.startswith("thermal_zone"):
            continue
        try:
            with open(os.path.join(root, name, "temp")) as handle:
                milli = int(handle.read().strip())
            with open(os.path.join(root, name, "type")) as handle:
                kind = handle.read().strip()
        except (OSError, ValueError):
            continue
        zones["%s:%s" % (name, kind)] = milli / 1000.0
    return zones


def read_cpufreq_khz(sysfs: str = "/sys") -> dict[str, list[int]]:
    """Each CPU's [current, maximum] frequency in kHz, where cpufreq exists."""
    freqs: dict[str, list[int]] = {}
    root = os.path.join(sysfs, "devices", "system", "cpu")
    try:
        names = sorted(n for n in os.listdir(root) if n[3:].isdigit() and n.startswith("cpu"))
    except OSError:
        return freqs
    for name in names:
        folder = os.path.join(root, name, "cpufreq")
        try:
            with open(os.path.join(folder, "scaling_cur_freq")) as handle:
                current = int(handle.read().strip())
            with open(os.path.join(folder, "cpuinfo_max_freq")) as handle:
                maximum = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        freqs[name] = [current, maximum]
    return freqs


def read_governors(sysfs: str = "/sys") -> dict[str, str]:
    """Each CPU's cpufreq governor, where cpufreq exists."""
    governors: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(sysfs, "devices/system/cpu/cpu*/cpufreq"))):
        try:
            with open(os.path.join(path, "scaling_governor")) as handle:
                governors[os.path.basename(os.path.dirname(path))] = handle.read().strip()
        except OSError:
            continue
    return governors


def command_text(argv: list[str]) -> str | None:
    """What a device tool prints (None where it is not installed or fails to start)."""
    if not shutil.which(argv[0]):
        return None
    import subprocess  # here: a job's runner starts faster without it (most devices)

    try:
        done = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode(errors="replace").strip()


def device_state(sysfs: str) -> DeviceStateDoc:
    """What says whether this job's numbers are comparable: temperatures, clocks and their
    governors, throttling (a Pi's get_throttled), a Jetson's power mode (nvpmodel -q)."""
    return {
        "thermal_c": read_thermal_c(sysfs),
        "cpufreq_khz": read_cpufreq_khz(sysfs),
        "governors": read_governors(sysfs),
        "throttled": command_text(["vcgencmd", "get_throttled"]),
        "nvpmodel": command_text(["nvpmodel", "-q"]),
    }


class Preparation:
    """What the device file allows the runner to change for a job, undone afterwards: CPU
    affinity (this process only) and the `performance` cpufreq governor (restored in
    `undo`). Each change is recorded with whether it took, so a result says how it ran."""

    def __init__(self, spec: PrepareSpec | None, sysfs: str) -> None:
        self.spec = spec or {}
        self.sysfs = sysfs
        self.previous_governors: dict[str, str] = {}

    def apply(self) -> dict[str, PreparedDoc]:
        done: dict[str, PreparedDoc] = {}
        cores = self.spec.get("cores")
        if cores:
            try:
                os.sched_setaffinity(0, set(cores))
                done["cpu_affinity"] = {"applied": True, "cpus": sorted(os.sched_getaffinity(0))}
            except (AttributeError, OSError, ValueError) as exc:
                done["cpu_affinity"] = {"applied": False, "cpus": cores, "error": str(exc)}
        governor = self.spec.get("governor")
        if governor:
            done["governor"] = self._set_governor(governor)
        return done

    def _set_governor(self, governor: str) -> PreparedDoc:
        current = read_governors(self.sysfs)
        if not current:
            return {"applied": False, "governor": governor, "error": "no cpufreq governors"}
        errors: list[str] = []
        for cpu, old in current.items():
            if old == governor:
                continue
            path = os.path.join(self.sysfs, "devices/system/cpu", cpu, "cpufreq/scaling_governor")
            try:
                with open(path, "w") as handle:
                    handle.write(governor)
                self.previous_governors[path] = old
            except OSError as exc:
                errors.append("%s: %s" % (cpu, exc.strerror or exc))
        record: PreparedDoc = {"applied": not errors, "governor": governor, "previous": current}
        if errors:
            record["error"] = "; ".join(errors[:4])
        return record

    def undo(self) -> None:
        for path, old in self.previous_governors.items():
            try:
                with open(path, "w") as handle:
                    handle.write(old)
            except OSError:
                sys.stderr.write("could not restore the governor %s in %s\n" % (old, path))


def device_facts(workdir: str) -> dict[str, Any]:
    """What `harness devices check` reports: platform, Python, runtimes, disk, CPUs."""
    facts: dict[str, Any] = {
        "schema": FACTS_SCHEMA,
        "arch": platform.machine(),
        "os": os_pretty_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "identity": device_identity(),
        "runtimes": {},
    }
    try:
        facts["disk_free_bytes"] = shutil.disk_usage(workdir).free
    except OSError as exc:
        facts["disk_free_bytes"] = None
        facts["disk_error"] = str(exc)
    try:
        import onnxruntime as ort

        facts["runtimes"]["onnxruntime"] = {
            "version": ort.__version__,
            "providers": ort.get_available_providers(),
        }
    except Exception as exc:  # any import failure is a fact to report
        facts["runtimes"]["onnxruntime"] = {"error": "%s: %s" % (type(exc).__name__, exc)}
    for module in ("ai_edge_litert", "tflite_runtime"):
        try:
            imported = __import__(module + ".interpreter")
            facts["runtimes"][module] = {
                "version": getattr(imported, "__version__", "unknown"),
                "delegates": ["xnnpack", "builtin"],
            }
        except Exception as exc:
            facts["runtimes"][module] = {"error": "%s: %s" % (type(exc).__name__, exc)}
    try:
        import numpy

        facts["numpy"] = numpy.__version__
    except Exception as exc:
        facts["numpy"] = None
        facts["numpy_error"] = str(exc)
    return facts


def read_first_line(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None
    return text.splitlines()[0].strip() if text else None


# Arm Ltd. (implementer 0x41) core part numbers, as the kernel's arch/arm64/include/asm/
# cputype.h names them: an ARM /proc/cpuinfo has no "model name" line, only these
ARM_CORES = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2", "0xd4b": "Cortex-A78C", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3",
    "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520", "0xd81": "Cortex-A720", "0xd82": "Cortex-X4",
}  # fmt: skip


def arm_cores_name(implementer: str | None, parts: set[str]) -> str | None:
    """'ARM Cortex-A76 + Cortex-A55' from the cpuinfo of an Arm-designed CPU, else None."""
    if implementer != "0x41" or not parts:
        return None
    names = sorted({ARM_CORES.get(part, f"part {part}") for part in parts}, reverse=True)
    return "ARM " + " + ".join(names)


def device_identity() -> IdentityDoc:
    """The comparability keys every result carries: what CPU (and which core types), how
    much RAM, which OS and kernel, which board (device tree model; Jetson's L4T release)."""
    cpuinfo = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpuinfo = handle.read()
    except OSError:
        pass
    fields: dict[str, str] = {}
    parts: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        fields.setdefault(key, value)
        if key == "CPU part":
            parts.add(value)
    ram_mb = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    ram_mb = int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "virtual": virtual_machine(fields.get("flags", "").split()),
        "cpu_model": fields.get("model name")
        or fields.get("Model")
        or fields.get("Hardware")
        or arm_cores_name(fields.get("CPU implementer"), parts)
        or platform.processor()
        or None,
        "cpu_parts": sorted(parts),
        "cpu_count": os.cpu_count(),
        "ram_mb": ram_mb,
        "os": os_pretty_name(),
        "kernel": platform.release(),
        "board": read_first_line("/proc/device-tree/model"),
        "l4t": read_first_line("/etc/nv_tegra_release"),
    }


# DMI system vendors of hypervisors (/sys/class/dmi/id/sys_vendor, as systemd-detect-virt
# reads it)
VM_VENDORS = ("QEMU", "KVM", "VMware, Inc.", "innotek GmbH", "Xen", "Parallels", "Bochs")


def virtual_machine(cpu_flags: list[str], root: str = "/") -> str | None:
    """What says the device is a virtual machine (its timings are a hypervisor's or an
    emulator's, not the hardware's), else None: QEMU's virt board in the device tree (an
    emulated ARM board), a hypervisor's DMI vendor, the CPU's `hypervisor` flag."""
    compatible = read_first_line(os.path.join(root, "proc/device-tree/compatible")) or ""
    if "linux,dummy-virt" in compatible:
        return "QEMU virt machine (device tree: linux,dummy-virt)"
    vendor = read_first_line(os.path.join(root, "sys/class/dmi/id/sys_vendor"))
    if vendor in VM_VENDORS:
        return f"virtual machine (DMI vendor: {vendor})"
    if "hypervisor" in cpu_flags:
        return "virtual machine (the CPU's hypervisor flag)"
    return None


def os_pretty_name() -> str:
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()
