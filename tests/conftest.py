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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from device_files import device_file
from sshd_server import SSHDUnavailable, SSHServer, free_port, loopback_sshd

__all__ = ["SSHServer", "StandinPhones", "free_port"]

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
STANDIN_DIR = Path(__file__).resolve().parent / "standin"
HARNESS = Path(sys.executable).parent / "harness"
pytest_plugins = ("lab_fixtures",)  # the shared store's real servers


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
        if key.startswith("HARNESS_"):
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
