"""The lab's aarch64 board: Debian bookworm arm64 under qemu-system-aarch64 (TCG), reached
over SSH like a Raspberry Pi (tests/lab/). What these tests prove is correctness on the
boards' architecture — the aarch64 wheels of onnxruntime and LiteRT, a Debian arm64
Python, an ARM /proc/cpuinfo, a real device tree. Its latencies mean nothing: TCG runs
the guest's code many times slower than a board would, so no test reads them as speed.

The image is built by `make test` (python tests/lab/image.py --background, behind the
rest of the suite: these tests run last and wait for it) or found in .lab/; without it
these tests skip with the reason, and only they do.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    RUNNER_MODE,
    SSHServer,
    free_port,
    harness,
    make_workspace,
    run_plan_ok,
    skip_where_int8_holds,
    wait_until,
)
from lab.board import Board, booted_board
from lab.image import (
    BOARD_MODEL,
    BUILD_OUTPUT,
    FAILED,
    UNAVAILABLE,
    USER,
    build_under_way,
    current_image,
    wait_for_build,
)

from harness.config import load_inventory
from harness.device_check import check_device
from harness.transport import open_transport

pytestmark = pytest.mark.integration

VENV_PYTHON = f"/home/{USER}/harness-venv/bin/python"  # as docs/devices.md prepares a Pi
BUILD_WAIT_S = 5400  # a bound for a broken build: a loaded machine's TCG first boot took 40 min


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    wait_for_build(BUILD_WAIT_S)  # `make test` builds it behind the rest of the suite
    if build_under_way() is not None:
        pytest.fail(f"the lab board's build still runs after {BUILD_WAIT_S} s: {BUILD_OUTPUT}")
    if FAILED.exists():
        pytest.fail(f"the lab board image failed to build: {FAILED.read_text().strip()}")
    image = current_image()
    if image is None:
        reason = "no image in .lab/: build it with `python tests/lab/image.py` (make test does)"
        if UNAVAILABLE.exists():
            reason = UNAVAILABLE.read_text().strip()
        pytest.skip(f"aarch64 lab board: {reason}")
    with booted_board(image, tmp_path_factory.mktemp("board"), free_port()) as booted:
        print(f"lab board: sshd answered {booted.boot_s} s after qemu started")
        yield booted


@pytest.fixture(scope="module")
def lab(board: Board, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the board registered the way docs/devices.md says: its host key
    scanned (and checked against the fingerprint the board's console would show), our key
    in its authorized_keys (done when the image was made), a device file."""
    workspace = make_workspace(tmp_path_factory.mktemp("arm-lab"))
    answers: list[str] = []

    def scanned_key() -> bool:
        """ssh-keyscan waits 5 s by default; an emulated board under load can take longer
        to answer the key exchange: it is given a minute a try, and tried again."""
        done = subprocess.run(
            ["ssh-keyscan", "-T", "60", "-t", "ed25519", "-p", str(board.port), "127.0.0.1"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        answers.append(done.stdout)
        return bool(done.stdout.strip())

    wait_until(scanned_key, 600, "the board's host key scanned")
    scanned = answers[-1]
    expected = board.image.host_key_pub.read_text().split()[:2]
    assert scanned.split()[1:3] == expected, "ssh-keyscan found another host key"
    known_hosts = workspace / "known_hosts"
    known_hosts.write_text(scanned)
    (workspace / "devices" / "board.toml").write_text(
        f"""transport = "ssh"
description = "Debian bookworm arm64 under qemu-system-aarch64 (TCG): not a speed reference"

[labels]
class = "arm64-lab"

[connection]
host = "127.0.0.1"
port = {board.port}
user = "{USER}"
identity_file = "{board.image.client_key}"
known_hosts = "{known_hosts}"
connect_timeout_s = 60
io_timeout_s = 600

[placement]
python = "{VENV_PYTHON}"
workdir = "edge-harness"
"""
    )
    return workspace


def test_devices_check_reports_the_board(lab: Path) -> None:
    done = harness("devices", "check", "board", "--devices-dir", lab / "devices", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = " ".join(done.stdout.split())
    for text in ("board: reachable", "arch aarch64", "Debian GNU/Linux 12 (bookworm)",
                 "onnxruntime 1.32.0", "ai_edge_litert 2.3.0", f"board {BOARD_MODEL}",
                 "cpu ARM Cortex-A72", "cpus 2"):  # fmt: skip
        assert text in shown, done.stdout
    inventory = load_inventory(lab / "devices")
    with open_transport(inventory["board"], inventory) as transport:
        facts = check_device(inventory["board"], transport)
    assert facts.python.startswith("3.11.") and facts.numpy == "2.4.6"
    # the board is named by its device tree (/sys/firmware/devicetree/base/model), the CPU
    # by its part number: an ARM /proc/cpuinfo has no "model name"
    assert facts.identity["board"] == BOARD_MODEL
    assert facts.identity["cpu_parts"] == ["0xd08"]
    assert facts.identity["cpu_model"] == "ARM Cortex-A72"


def test_a_plan_runs_on_the_board(lab: Path, board: Board) -> None:
    """ONNX variants and a TFLite model through XNNPACK on the device's own aarch64 kernels:
    accuracy from the device's outputs, memory, and a thermal state that is absent (the
    virt machine has no thermal zones), never zero."""
    plan = lab / "plans" / "arm.toml"
    plan.write_text(
        """name = "arm"
devices = ["board"]
models = ["digits_cnn", "iris_landmark"]
variants = ["fp32", "fp16", "int8-dynamic"]
[measure]
warmup = 2
iterations = 10
timeout_s = 600
[runtime]
threads = [1]
tflite_delegates = ["xnnpack"]
[inputs]
dims = { batch = 1 }
"""
    )
    prepared, records = run_plan_ok(plan)
    results = pd.read_parquet(prepared.store.run_dir / "results.parquet")
    assert set(results["arch"]) == {"aarch64"} and set(results["board"]) == {BOARD_MODEL}
    assert set(zip(results["model"], results["variant"], strict=True)) >= {
        ("digits_cnn", "fp32"), ("digits_cnn", "fp16"), ("digits_cnn", "int8-dynamic"),
        ("iris_landmark", "fp32"),
    }  # fmt: skip
    digits = results[results["model"] == "digits_cnn"].set_index("variant")
    # the fp32 model classifies the held-out digits on ARM as it does on x86 (349/360)
    assert digits.loc["fp32", "accuracy"] == pytest.approx(0.9694, abs=0.006)
    assert (digits["accuracy"] > 0.9).all()
    assert (results["peak_rss_mb"] > 0).all() and (results["model_mem_mb"] > 0).all()
    assert results["temp_start_c"].isna().all() and results["temp_end_c"].isna().all()
    iris = results[results["model"] == "iris_landmark"].iloc[0]
    assert iris["runtime"] == "tflite" and iris["provider"] == "xnnpack"
    # each process forked by the persistent runner there (onnxruntime and LiteRT imported
    # once, on aarch64), or exec'd, as the suite's HARNESS_RUNNER_MODE says
    assert set(results["runner_process"]) == {"forked" if RUNNER_MODE == "persistent" else "exec"}


def test_a_persistent_runner_killed_on_the_board_is_replaced_and_the_job_retried(
    lab: Path, board: Board
) -> None:
    board_file = (lab / "devices" / "board.toml").read_text()
    (lab / "devices" / "board-stays.toml").write_text(
        board_file.replace(
            'workdir = "edge-harness"', 'workdir = "edge-harness"\nrunner_mode = "persistent"'
        )
        + "\n[retry]\ntimes = 2\nbackoff_s = 0.5\n"
    )
    plan = lab / "plans" / "arm-stays.toml"
    plan.write_text(
        'name = "arm-stays"\ndevices = ["board-stays"]\nmodels = ["digits_cnn"]\n'
        'variants = ["fp32"]\n[measure]\nwarmup = 1\niterations = 3000\ntimeout_s = 900\n'
        "[runtime]\nthreads = [1]\n[inputs]\ndims = { batch = 1 }\n"
    )
    inventory = load_inventory(lab / "devices")
    # the job's child names itself in its .running file; its parent is the persistent runner
    kill_its_runner = (
        'for f in "$HOME"/edge-harness/jobs/*/*.running; do [ -f "$f" ] || continue; '
        'read -r pid rest < "$f"; parent=$(cut -d" " -f4 "/proc/$pid/stat") && '
        'kill -KILL "$parent" && echo "killed $parent"; done'
    )
    killed: list[str] = []

    def kill_when_running() -> bool:
        with open_transport(inventory["board-stays"], inventory) as transport:
            said = transport.run(["sh", "-c", kill_its_runner], timeout_s=120).stdout
        killed.extend(line for line in said.splitlines() if line.startswith("killed"))
        return bool(killed)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_plan_ok, plan)
        wait_until(kill_when_running, 600, "the job's child on the board")
        prepared, [record] = running.result(timeout=1800)
    assert record.status == "ok" and record.controller["attempts"] == 2, record.error
    assert record.runner["process"] == "forked" and len(record.latencies_ns) == 3000


def test_compare_refuses_an_arm_run_against_an_x86_run(
    lab: Path, board: Board, sshd: SSHServer, tmp_path: Path
) -> None:
    """The same device name, first this x86 machine, then the ARM board: the runs'
    device facts differ, so `harness compare` says not comparable and why."""
    body = """devices = ["board"]
models = ["digits_cnn"]
variants = ["fp32"]
[measure]
warmup = 2
iterations = 10
timeout_s = 600
[inputs]
dims = { batch = 1 }
"""
    x86 = make_workspace(tmp_path / "x86")
    (x86 / "devices" / "board.toml").write_text(sshd.device_toml("board", tmp_path / "wd"))
    runs: list[str] = []
    for workspace in (x86, lab):
        plan = workspace / "plans" / "same.toml"
        plan.write_text('name = "same"\n' + body)
        prepared, _ = run_plan_ok(plan)
        runs.append(str(prepared.store.run_dir))
    done = harness("compare", *runs, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not comparable" in done.stdout
    assert "arch x86_64 -> aarch64" in " ".join(done.stdout.split()), done.stdout


def test_tune_proves_its_recipe_on_the_boards_arm_kernels(lab: Path, board: Board) -> None:
    """`harness tune` on the board: quality judged on the controller, then fp32's profile
    and the candidate measured on the board's aarch64 kernels, paired with fp32, its
    quality judged again there by the board's own fidelity pass. The layers of the
    profile are found by name on ARM too (no NCHWc there), and the answer says the
    timings are an emulator's."""
    plan = lab / "plans" / "arm-tune.toml"
    plan.write_text(
        """name = "arm-tune"
devices = ["board"]
models = ["ppocr_cls_v2"]
[inputs]
dims = { batch = 1, width = 192 }
[measure]
warmup = 2
iterations = 10
timeout_s = 900
paired_budget_s = 5.0
[runtime]
threads = [1]
[tune]
objective = "smallest"
quality = { min_top1_agreement = 0.995 }
strategies = ["int8-static"]
per_channel = [true]
calibrate_methods = ["MinMax"]
calibration_samples = 16
max_trials = 8
"""
    )
    done = harness("tune", "--plan", plan, timeout=3600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "note: board is a QEMU virt machine" in out, done.stdout
    folder = lab / "reports" / "tune" / "ppocr_cls_v2-board"
    answer = json.loads((folder / "tune.json").read_text())
    assert answer["chosen"]["setting"]["device_quality"] == "ok"
    assert answer["device_virtual"].startswith("QEMU virt machine")
    trials = [json.loads(p.read_text()) for p in (folder / "trials").glob("*.json")]
    plain = next(t for t in trials if t["recipe"]["origin"].startswith("whole model"))
    skip_where_int8_holds(
        plain["quality"] == "ok",
        f"whole-model int8 top1_agreement {plain['outputs'][0]['value']:.3f}, judged on the "
        "controller's CPU",
    )
    found = re.search(r"layer time shares: (\d+) of 54 weighted layers found", out)
    assert found and int(found[1]) >= 50, done.stdout
    assert answer["chosen"]["recipe"]["params"]["nodes_to_exclude"]
