"""Sampler: a process of its own beside the runner (never inside the process that times
inferences), recording a power source's raw readings — or the runner's memory — each
stamped with time.monotonic_ns(), the clock the runner stamps its idle and timed windows
with.

    python3 sampler.py SPEC_JSON OUT_PATH

SPEC: {"source": ..., "root": "/sys", "interval_s": 0.05, "command": [...]}, or
{"source": "memory", "pid": N, "interval_s": 0.1}. One JSON line per reading is appended
to OUT_PATH ({"t_ns": ..., "raw": ...}); on SIGTERM a polled source takes one last reading
at once (the one after the runner's window) and stops. Power readings are parsed
on the controller (harness/probes/power.py), so this file only reads. Standard library
only, Python 3.8+. Never imports harness.
"""

from __future__ import annotations

import glob
import json
import os
import re
import select
import signal
import sys
import time
from typing import IO, TYPE_CHECKING, Callable

if TYPE_CHECKING:  # a process of its own on the device, without its package
    from .contract import SamplerSpec

STOP: list[int] = []  # the signal that asked it to stop
PARENT: list[int] = []  # the runner's pid
WAKE: list[int] = []  # a pipe's read end that the stop signal writes to (set_wakeup_fd)


def read_text(path: str) -> str:
    with open(path) as handle:
        return handle.read().strip()


def rapl(spec: SamplerSpec) -> dict[str, dict[str, int]]:
    """Every RAPL zone (intel-rapl:N and its sub-zones intel-rapl:N:M), keyed
    `<zone>:<name>`: energy counters in µJ. Which of them add up without counting twice is
    the controller's decision (harness/probes/power.py)."""
    base = os.path.join(spec["root"], "class", "powercap")
    energy: dict[str, int] = {}
    maximum: dict[str, int] = {}
    zones = glob.glob(os.path.join(base, "intel-rapl:*"))
    zones += glob.glob(os.path.join(base, "intel-rapl:*", "intel-rapl:*"))
    for zone in sorted(set(zones)):
        zone_id = os.path.basename(zone)
        if not re.match(r"intel-rapl:\d+(:\d+)?$", zone_id):
            continue
        name_file = os.path.join(zone, "name")
        name = read_text(name_file) if os.path.exists(name_file) else zone_id
        key = "%s:%s" % (zone_id, name)
        if key in energy:
            continue  # a sub-zone is listed both under its package and at the top
        energy[key] = int(read_text(os.path.join(zone, "energy_uj")))
        maximum[key] = int(read_text(os.path.join(zone, "max_energy_range_uj")))
    if not energy:
        raise RuntimeError("no RAPL domains under %s" % base)
    return {"energy_uj": energy, "max_energy_range_uj": maximum}


_INA_FILES = re.compile(
    r"^(in\d+_input|curr\d+_input|in\d+_label|in_power\d+_input|rail_name_\d+)$"
)


def ina3221(spec: SamplerSpec) -> dict[str, str]:
    """Every INA3221 channel file of the first hwmon device named ina3221/ina3221x (or
    of `root` itself when it holds them), as text; files whose read fails are named under
    `unreadable`, never fatal to the others."""
    candidates = [spec["root"]] + sorted(
        glob.glob(os.path.join(spec["root"], "class", "hwmon", "hwmon*"))
    )
    for folder in candidates:
        name_file = os.path.join(folder, "name")
        named = os.path.exists(name_file) and read_text(name_file) in ("ina3221", "ina3221x")
        files = (
            [f for f in os.listdir(folder) if _INA_FILES.match(f)] if os.path.isdir(folder) else []
        )
        if files and (named or folder == spec["root"]):
            values: dict[str, str] = {}
            unreadable = []
            for name in sorted(files):  # an unconnected channel's read fails with EIO
                try:
                    values[name] = read_text(os.path.join(folder, name))
                except OSError as exc:
                    unreadable.append("%s (%s)" % (name, exc.strerror or exc))
            if unreadable:
                values["unreadable"] = "; ".join(unreadable)
            return values
    raise RuntimeError("no INA3221 hwmon device under %s" % spec["root"])


def android_battery(spec: SamplerSpec) -> dict[str, str]:
    folder = os.path.join(spec["root"], "class", "power_supply", "battery")
    return {f: read_text(os.path.join(folder, f)) for f in ("current_now", "voltage_now", "status")}


def process_memory(spec: SamplerSpec) -> dict[str, int]:
    """The process's VmRSS, VmHWM and VmSwap (status) and PSS (smaps_rollup), in kB: the
    peak of PSS and swap is only seen by sampling (the kernel keeps a peak of RSS only)."""
    memory: dict[str, int] = {}
    folder = "/proc/%d" % int(spec["pid"])
    with open(os.path.join(folder, "status")) as handle:
        for line in handle:
            name = line.split(":", 1)[0]
            if name in ("VmRSS", "VmHWM", "VmSwap"):
                memory[name] = int(line.split()[1])
    try:
        with open(os.path.join(folder, "smaps_rollup")) as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    memory["Pss"] = int(line.split()[1])
    except OSError:
        pass
    return memory


NVIDIA_SMI = ["nvidia-smi", "--query-gpu=index,power.draw,memory.used", "--format=csv"]


def command_output(argv: list[str]) -> str:
    import subprocess  # here: the runner that forks this sampler starts faster without it

    return subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10, check=False
    ).stdout.decode(errors="replace")


POLLED: dict[str, Callable[[SamplerSpec], object]] = {
    "rapl": rapl,
    "ina3221": ina3221,
    "android-battery": android_battery,
    "pi5-pmic": lambda spec: command_output(["vcgencmd", "pmic_read_adc"]),
    "command": lambda spec: command_output(spec.get("command") or []),
    "nvidia-smi": lambda spec: command_output(spec.get("command") or NVIDIA_SMI),
    "memory": process_memory,
}


def poll(spec: SamplerSpec, out: IO[str]) -> None:
    """A reading each interval; the stop signal cuts the wait short for one last reading."""
    read = POLLED[spec["source"]]
    interval_ns = int(float(spec["interval_s"]) * 1e9)
    next_tick = time.monotonic_ns()
    while not orphaned():
        stopping = bool(STOP)
        stamp = time.monotonic_ns()  # taken just before the read: nothing runs in between
        raw = read(spec)
        out.write(json.dumps({"t_ns": stamp, "raw": raw}) + "\n")
        out.flush()
        if stopping:
            return
        next_tick += interval_ns
        delay = next_tick - time.monotonic_ns()
        if delay > 0 and not STOP:
            select.select(WAKE, [], [], delay / 1e9)  # returns early on the stop signal
        elif delay <= 0:
            next_tick = time.monotonic_ns()


def stream_tegrastats(spec: SamplerSpec, out: IO[str]) -> None:
    """tegrastats prints a line per interval; each is stamped as it arrives."""
    interval_ms = str(max(1, int(float(spec["interval_s"]) * 1000)))
    argv = (spec.get("command") or ["tegrastats"]) + ["--interval", interval_ms]
    import subprocess

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            if STOP or orphaned():
                break
            out.write(
                json.dumps(
                    {"t_ns": time.monotonic_ns(), "raw": line.decode(errors="replace").strip()}
                )
                + "\n"
            )
            out.flush()
    finally:
        proc.terminate()
        proc.wait()


def orphaned() -> bool:
    """The runner that started this sampler is gone: nobody will read or stop it."""
    return os.getppid() != PARENT[0]


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    PARENT.append(os.getppid())
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    WAKE.append(wake_read)
    signal.signal(signal.SIGTERM, lambda signum, frame: STOP.append(signum))
    with open(argv[2], "a") as out:
        if spec["source"] == "tegrastats":
            stream_tegrastats(spec, out)
        else:
            poll(spec, out)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except Exception as exc:  # the runner reports it; nothing else may stop a run
        sys.stderr.write("sampler: %s: %s\n" % (type(exc).__name__, exc))
        sys.exit(3)


class ForkedSampler:
    """A sampler forked from a runner that already runs Python (a persistent runner's job):
    no interpreter to start. The part of `subprocess.Popen` that measure.Sampler uses
    (`wait` raises TimeoutError)."""

    def __init__(self, spec_json: str, out_path: str, log_fd: int) -> None:
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid:
            return
        code = 3
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.dup2(log_fd, 2)
            os.closerange(3, 4096)  # the runner's pipes (its watchdog's) are not ours to hold
            main(["sampler.py", spec_json, out_path])
            code = 0
        except BaseException as exc:  # noqa: BLE001 -- as the exec'd sampler says it
            os.write(2, ("sampler: %s: %s\n" % (type(exc).__name__, exc)).encode())
        finally:
            os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.returncode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the sampler did not end in %s s" % timeout)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode

    def terminate(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
