"""Shared fixtures: an isolated HOME, a real OpenSSH sshd on 127.0.0.1, device files.

The "device" behind the sshd is this machine running this interpreter, which has
onnxruntime and LiteRT installed.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from device_files import device_file
from sshd_server import SSHDUnavailable, SSHServer, free_port, loopback_sshd

from harness.execute.session import DEFAULT_RUNNER_MODE, RUNNER_MODE_VARIABLE

__all__ = ["SSHServer", "StandinPhones", "free_port"]

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
STANDIN_DIR = Path(__file__).resolve().parent / "standin"
HARNESS = Path(sys.executable).parent / "harness"
pytest_plugins = ("lab_fixtures",)  # the shared store's real servers
# this test run's runner mode (`HARNESS_RUNNER_MODE=exec make test` runs the other one)
RUNNER_MODE = os.environ.get(RUNNER_MODE_VARIABLE) or DEFAULT_RUNNER_MODE


def harness(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real `harness` command of this venv, its output captured."""
    return subprocess.run(
        [HARNESS, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def skip_where_int8_holds(holds: bool, measured: str) -> None:
    """The premise of a test that proves a repair of int8's quality loss: plain int8 loses
    quality on this machine. Some CPUs' int8 kernels (AMX, AVX512-VNNI) lose none on the
    bundled classifier where AVX2's do: there, nothing is left to repair, and the test says
    what it measured rather than pass on a premise that did not hold."""
    if holds:
        pytest.skip(f"plain int8 holds its quality on this CPU ({measured}): the loss this "
                    "test repairs does not happen here")  # fmt: skip


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> float:
    """Poll `condition` until it holds; the seconds it took. Fails with `what` after
    `timeout_s` (a bound for a broken build, not a measurement)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.05)
    return time.monotonic() - started


def run_plan_ok(plan: Path) -> tuple[Any, list[Any]]:
    """A plan run in this process (prepare_run, run_prepared), every job of it ok: the
    prepared run (its store) and the records."""
    from harness.scheduler import prepare_run, run_prepared

    prepared = prepare_run(plan)
    records = run_prepared(prepared)
    assert {r.status for r in records} == {"ok"}, [r.error for r in records if r.error]
    return prepared, records


def compared_on_local(
    workspace: Path, plan_text: str, log: Callable[[str], None] = lambda _: None
) -> tuple[Any, Any, Any]:
    """A plan (its TOML) run in this process on the built-in `local` device, whatever its
    jobs' status: the prepared run, its results and compare_variants' table, indexed by
    model and variant."""
    from device_files import local_device_file

    from harness.analysis import compare_variants
    from harness.scheduler import prepare_run, run_prepared

    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "wd"))
    plan = workspace / "plans" / "compared.toml"
    plan.write_text(plan_text)
    prepared = prepare_run(plan, log=log)
    run_prepared(prepared)
    results, samples = prepared.store.frames()
    return prepared, results, compare_variants(results, samples).set_index(["model", "variant"])


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep the user's ~/.ssh/config, known_hosts, agent and HARNESS_* out of every test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    for key in list(os.environ):
        if key.startswith("HARNESS_") and key != RUNNER_MODE_VARIABLE:  # the suite's mode
            monkeypatch.delenv(key)
    # GNU readline (loaded into this process) exports the terminal's size behind
    # os.environ's back; the harness run here would fit its piped tables to it
    for key in ("COLUMNS", "LINES"):
        os.environ.pop(key, None)
        os.unsetenv(key)
    return home


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    try:
        with loopback_sshd(tmp_path_factory.mktemp("sshd")) as server:
            yield server
    except SSHDUnavailable as exc:
        pytest.fail(str(exc))


@dataclass(frozen=True)
class StandinPhones:
    """The stand-in `adb` (tests/standin/adb) first on PATH, serving phones whose storage
    is `root` on this machine."""

    root: Path
    serials: tuple[str, ...]

    def device_toml(self, name: str, serial: str, **extra: object) -> str:
        fields = {
            "name": name,
            "transport": "adb",
            "serial": serial,
            "workdir": f"{self.root}/data/local/tmp/harness",
            **extra,
        }
        return device_file(fields)


@pytest.fixture
def phones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandinPhones:
    root = tmp_path / "phone"
    (root / "data/local/tmp").mkdir(parents=True)
    serials = ("R58M12ABCDE", "emulator-5554")
    monkeypatch.setenv("PATH", f"{STANDIN_DIR}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_ADB_ROOT", str(root))
    monkeypatch.setenv("STANDIN_ADB_SERIALS", ",".join(serials))
    monkeypatch.delenv("STANDIN_ADB_LEGACY", raising=False)
    return StandinPhones(root, serials)


def make_workspace(folder: Path) -> Path:
    """A project-like folder: devices/, models/ (manifests of the bundled models), plans/."""
    (folder / "devices").mkdir(parents=True)
    (folder / "plans").mkdir()
    models = folder / "models"
    models.mkdir()
    for manifest in MODELS_DIR.glob("*.toml"):
        text = manifest.read_text().replace('file = "cache/', f'file = "{MODELS_DIR}/cache/')
        text = text.replace('images = "cache/', f'images = "{MODELS_DIR}/cache/')
        text = text.replace('audio = "cache/', f'audio = "{MODELS_DIR}/cache/')
        (models / manifest.name).write_text(text)
    shutil.copytree(MODELS_DIR / "zoo", models / "zoo")
    return folder


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


def bundled_model(name: str) -> Path:
    path = MODELS_DIR / "cache" / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make models` (make test does it first)")
    return path


def pids_matching(pattern: str) -> list[int]:
    """Processes whose command line contains `pattern` (the device is this machine)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pattern in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def job_processes(workdir: Path) -> list[int]:
    """The processes running jobs under `workdir` (a device that is this machine), in
    either runner mode: each job's `<job>.running` file names its process while it runs,
    an exec'd runner or a child forked by the persistent runner (whose command line is the
    persistent runner's, not the job's)."""
    return [pid for pid, _ in running_jobs(workdir) if Path(f"/proc/{pid}").exists()]


def running_jobs(workdir: Path) -> list[tuple[int, int]]:
    """(pid, process group) of each `<job>.running` file under `workdir`."""
    found = []
    for running in workdir.glob("jobs/*/*.running"):
        try:
            pid, group = (int(word) for word in running.read_text().split()[:2])
        except (OSError, ValueError):
            continue
        found.append((pid, group))
    return found


@dataclass
class DeviceWatch:
    """What a watch of a device's work directory saw: the most job processes at once, and
    every persistent runner."""

    most_jobs: int = 0
    runners: set[int] = field(default_factory=set)


@contextmanager
def watching(workdir: Path) -> Iterator[DeviceWatch]:
    """Samples `workdir`'s job processes and persistent runners every 20 ms while the
    block runs (the device is this machine)."""
    seen = DeviceWatch()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.runners |= set(persistent_runners(workdir))
            seen.most_jobs = max(seen.most_jobs, len(job_processes(workdir)))
            stop.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.join()


def job_started(workdir: Path) -> bool:
    """A job runs under `workdir` and its memory sampler has taken a reading."""
    return bool(job_processes(workdir)) and any(
        path.stat().st_size > 0 for path in workdir.glob("jobs/*/*.memory.jsonl")
    )


def leftovers(workdir: Path) -> list[int]:
    """What runs for `workdir`'s jobs: job processes, anything in their process groups
    (samplers, watchdogs), and persistent runners."""
    groups = {group for _, group in running_jobs(workdir)}
    in_groups = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and process_group(int(entry.name)) in groups
    ]
    return sorted(set(job_processes(workdir) + in_groups + persistent_runners(workdir)))


def process_group(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


def persistent_runners(workdir: Path) -> list[int]:
    """The persistent runners of `workdir`'s device (`run.py --serve`), not what they
    forked (which shares their command line): a job's child, its watchdog and samplers
    read /dev/null on stdin (an orphaned one too), and a child just forked, not yet
    redirected, has a persistent runner for a parent."""
    serving = {
        pid: parent_pid(pid)
        for pid in pids_matching(f"{workdir}/runner/")
        if cmdline(pid).startswith(sys.executable)  # not the shell around it
        and "--serve" in cmdline(pid)
        and stdin_of(pid) not in ("", os.devnull)
    }
    return sorted(pid for pid, parent in serving.items() if parent not in serving)


def stdin_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/0")
    except OSError:
        return ""


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def parent_pid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def signal_thread(pid: int, signum: int, *, main_thread: bool) -> None:
    """Send `signum` to one chosen thread of process `pid`: its main thread or another
    one. The kernel hands a process-wide signal to whichever thread it likes; this makes
    both cases happen on purpose."""
    tids = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))
    others = [tid for tid in tids if tid != pid]
    if not main_thread and not others:
        pytest.fail(f"process {pid} has no thread besides its main one")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, pid if main_thread else others[0], signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}) failed")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ uses real parts: `-m "not integration"` skips it.
    The aarch64 board's tests run last: `make test` builds its image behind the others."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.path.name == "test_arm_board.py")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What a build of the lab board behind the suite said (its steps and timings)."""
    from lab.image import BUILD_OUTPUT

    if BUILD_OUTPUT.is_file() and BUILD_OUTPUT.stat().st_mtime >= SESSION_STARTED:
        lines = [ln for ln in BUILD_OUTPUT.read_text(errors="replace").splitlines() if ln]
        terminalreporter.write_sep("-", f"the lab board's build ({BUILD_OUTPUT})")
        for line in lines[-40:]:
            terminalreporter.write_line(line)


SESSION_STARTED = time.time()
