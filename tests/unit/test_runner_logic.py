"""The runner's pure parts: shapes, inputs, the stop rule, Python 3.8 syntax."""

from __future__ import annotations

import ast
import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from harness import runner
from harness.deploy import RUNNER_FILES
from harness.runner.contract import JobError
from harness.runner.measure import timed_loop
from harness.runner.runtimes import make_inputs, resolve_shape

DEVICE_FILES = [Path(runner.__file__).with_name(name) for name in RUNNER_FILES]
SIBLINGS = {Path(name).stem for name in RUNNER_FILES}  # imported from the runner's own folder


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.name)
def test_device_side_files_parse_as_python_3_8(path: Path) -> None:
    ast.parse(path.read_text(), feature_version=(3, 8))


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.name)
def test_device_side_files_import_only_the_standard_library(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {
        (node.module or "").split(".")[0]
        if isinstance(node, ast.ImportFrom)
        else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    runtimes = {
        "onnxruntime",
        "ai_edge_litert",
        "tflite_runtime",
        "tensorflow",
        "numpy",
        "resource",
    }
    import sys

    assert imported - runtimes - SIBLINGS <= set(sys.stdlib_module_names) | {"__future__", ""}
    assert "harness" not in imported


def test_the_controllers_readers_in_the_runner_folder_import_only_the_standard_library() -> None:
    """result_document.py and result_views.py are not shipped, but they live beside the
    runner: stdlib and the contract only, so the folder never needs a controller package
    (the bit-packed masks are unpacked without numpy)."""
    import sys

    folder = Path(runner.__file__).parent
    for path in sorted(set(folder.glob("*.py")) - set(DEVICE_FILES) - {folder / "__init__.py"}):
        tree = ast.parse(path.read_text())
        imported = {
            node.module or "" if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and not node.level)
            for alias in node.names
        }  # a relative import is a sibling of the runner folder (.contract, .result_views)
        outside = {
            name for name in imported
            if name.split(".")[0] not in sys.stdlib_module_names and name != "__future__"
        }  # fmt: skip
        assert outside == set(), f"{path.name} imports {outside}"


def test_the_import_contract_forbids_the_runner_every_controller_module() -> None:
    """import-linter's `runner` contract names the controller's modules one by one: a
    module added to harness/ and not to the list would be open to the runner."""
    import tomllib

    root = Path(runner.__file__).parents[1]
    project = tomllib.loads((root.parent / "pyproject.toml").read_text())
    [contract] = [
        c for c in project["tool"]["importlinter"]["contracts"] if c.get("id") == "runner"
    ]
    modules = {
        f"harness.{path.stem if path.suffix == '.py' else path.name}"
        for path in root.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").is_file())
    }
    assert modules - {"harness.runner"} <= set(contract["forbidden_modules"])


def test_dynamic_dimensions_are_filled_by_name_or_axis() -> None:
    assert resolve_shape("x", ["batch", 3, None], {"batch": 2, "x:2": 7}) == [2, 3, 7]
    with pytest.raises(JobError, match=r"axis 0 is dynamic \('batch'\).*dims = \{ batch = N \}"):
        resolve_shape("x", ["batch", 3], {})
    with pytest.raises(JobError, match='axis 1 is dynamic \\(unnamed\\).*"x:1"'):
        resolve_shape("x", [1, None], {})


def test_generated_inputs_are_seeded_and_follow_specs() -> None:
    declared = [("img", "float32", ["n", 3]), ("ids", "int64", [1, 4])]
    specs = {"img": {"low": -1.0, "high": 1.0}, "ids": {"low": 0, "high": 10}}
    first = make_inputs(np, declared, specs, {"n": 2}, 7, None)
    again = make_inputs(np, declared, specs, {"n": 2}, 7, None)
    assert first["img"].shape == (2, 3) and first["img"].dtype == np.float32
    assert first["img"].min() >= -1 and first["img"].max() < 1
    assert first["ids"].dtype == np.int64 and first["ids"].max() < 10
    assert all(np.array_equal(first[k], again[k]) for k in first)
    other = make_inputs(np, declared, specs, {"n": 2}, 8, None)
    assert not np.array_equal(first["img"], other["img"])


def test_inputs_from_files(tmp_path: Path) -> None:
    declared = [("a", "float32", [2]), ("b", "int32", [1])]
    np.savez(tmp_path / "x.npz", a=np.array([1.0, 2.0]), b=np.array([5]))
    arrays = make_inputs(np, declared, {}, {}, 0, str(tmp_path / "x.npz"))
    assert arrays["a"].dtype == np.float32 and arrays["b"].tolist() == [5]
    np.savez(tmp_path / "y.npz", a=np.array([1.0]))
    with pytest.raises(JobError, match="has no array named 'b'"):
        make_inputs(np, declared, {}, {}, 0, str(tmp_path / "y.npz"))
    np.save(tmp_path / "z.npy", np.zeros(2))
    with pytest.raises(JobError, match="single-input model"):
        make_inputs(np, declared, {}, {}, 0, str(tmp_path / "z.npy"))


def test_fixed_stop_rule_counts_exactly() -> None:
    calls = itertools.count()
    latencies, reason = timed_loop(lambda: next(calls), {"iterations": 25})
    assert (len(latencies), reason, next(calls)) == (25, "fixed", 25)
    assert all(v >= 0 for v in latencies)


class ScriptedNs:
    """A nanosecond clock that moves only when the timed call runs: each call takes the
    next of `durations_ns`, cycled, so a stop rule is tested without real time."""

    def __init__(self, *durations_ns: int) -> None:
        self.now_ns, self.durations = 0, itertools.cycle(durations_ns)

    def __call__(self) -> int:
        return self.now_ns

    def infer(self) -> None:
        self.now_ns += next(self.durations)


def test_adaptive_stop_rule_reaches_the_ci_or_the_cap() -> None:
    steady = ScriptedNs(1_000_000)  # every call 1 ms: the CI is reached at the minimum
    quick = {"min_iterations": 20, "max_iterations": 10_000, "target_ci": 0.9, "max_seconds": 30}
    latencies, reason = timed_loop(steady.infer, quick, steady)
    assert reason == "ci" and latencies == [1_000_000] * 20
    noisy = ScriptedNs(1_000_000, 3_000_000, 500_000, 9_000_000)
    strict = {"min_iterations": 20, "max_iterations": 50, "target_ci": 1e-9, "max_seconds": 30}
    latencies, reason = timed_loop(noisy.infer, strict, noisy)
    assert reason == "max_iterations" and len(latencies) == 50
    timed = {"min_iterations": 5, "max_iterations": 10**9, "target_ci": 1e-9, "max_seconds": 0.05}
    noisy = ScriptedNs(1_000_000, 3_000_000, 500_000, 9_000_000)  # 13.5 ms per 4 calls
    latencies, reason = timed_loop(noisy.infer, timed, noisy)
    assert reason == "time" and len(latencies) == 16  # the 16th ends at 54 ms, past 50
    # the budget outranks min_iterations: a slow model stops at it, and says so
    slow = {"min_iterations": 1000, "max_iterations": 10**9, "target_ci": 1e-9, "max_seconds": 0.05}
    five_ms = ScriptedNs(5_000_000)
    latencies, reason = timed_loop(five_ms.infer, slow, five_ms)
    assert reason == "time-before-min" and len(latencies) == 10
    # and on the real clock the loop times real calls
    latencies, reason = timed_loop(lambda: time.sleep(0.001), {"iterations": 3})
    assert reason == "fixed" and all(v >= 1_000_000 for v in latencies)


def test_a_virtual_machine_says_so_and_bare_hardware_says_nothing(tmp_path: Path) -> None:
    """Its timings are not the hardware's: QEMU's virt board (the lab board's device tree,
    tests/lab/image.py: a Pi-like model, QEMU's compatible kept), a hypervisor's DMI
    vendor, the CPU's flag. A Pi's device tree is no virtual machine."""
    from harness.runner.device import virtual_machine

    tree = tmp_path / "proc" / "device-tree"
    tree.mkdir(parents=True)
    (tree / "compatible").write_bytes(b"raspberrypi,4-model-b\x00brcm,bcm2711\x00")
    assert virtual_machine(["fp", "asimd"], str(tmp_path)) is None
    (tree / "compatible").write_bytes(b"edge-harness,lab-board\x00linux,dummy-virt\x00")
    assert "QEMU virt machine" in (virtual_machine([], str(tmp_path)) or "")
    (tree / "compatible").unlink()
    dmi = tmp_path / "sys" / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("QEMU\n")
    assert virtual_machine([], str(tmp_path)) == "virtual machine (DMI vendor: QEMU)"
    (dmi / "sys_vendor").write_text("Dell Inc.\n")
    assert virtual_machine(["sse4_2", "hypervisor"], str(tmp_path)) == (
        "virtual machine (the CPU's hypervisor flag)"
    )
    assert virtual_machine(["sse4_2"], str(tmp_path)) is None
