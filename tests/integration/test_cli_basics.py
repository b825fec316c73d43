"""What a new user reaches for first: --version, completion, help that prints brackets,
the lists of models, plans and runs, and `harness init` to a first real run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

from conftest import HARNESS, MODELS_DIR, ROOT, harness

from harness.config import load_device, load_manifest, load_plan


def test_version_help_and_completion() -> None:
    shown = harness("--version")
    assert shown.returncode == 0 and shown.stdout.split()[:2] == [
        "harness",
        version("edge-harness"),
    ]
    # help is plain text: TOML table names keep their brackets
    assert "Budgets TOML ([[budget]] tables)." in harness("gate", "--help").stdout
    assert "[data] tables" in harness("models", "fetch", "--help").stdout
    completed = subprocess.run(
        [HARNESS],
        env={**os.environ, "_HARNESS_COMPLETE": "complete_bash", "COMP_WORDS": "harness models l",
             "COMP_CWORD": "2"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.stdout.split() == ["list"]


def test_models_and_plans_lists_for_people_and_scripts() -> None:
    listed = harness("models", "list", "--models-dir", MODELS_DIR, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    models = {m["name"]: m for m in json.loads(listed.stdout)}
    assert models["digits_cnn"]["quality_inputs"] == "labelled eval set"
    assert (
        models["digits_cnn"]["variants"][0] == "fp32" and models["digits_cnn"]["format"] == "onnx"
    )
    assert models["iris_landmark"]["quality_inputs"] == "random only (unverified)"
    assert models["face_detection_short_range"]["format"] == "tflite"
    table = harness("models", "list", "--models-dir", MODELS_DIR)
    assert "labelled eval set" in table.stdout and "digits_cnn" in table.stdout
    as_csv = harness("plans", "list", "--plans-dir", ROOT / "plans", "--format", "csv").stdout
    assert as_csv.splitlines()[0] == "name,path,devices,models,variants,problem"
    assert any(line.startswith("quickstart,") for line in as_csv.splitlines())


def test_init_scaffolds_a_project_that_runs(tmp_path: Path) -> None:
    """init with the user's own ONNX file: a manifest, a plan with its dynamic batch fixed,
    the next commands; a second init writes nothing; the plan runs on `local` as written,
    and the run lists."""
    model = tmp_path / "my net.onnx"
    shutil.copy(MODELS_DIR / "zoo" / "digits_cnn.onnx", model)
    project = tmp_path / "project"
    made = harness("init", project, "--model", model)
    assert made.returncode == 0, made.stdout + made.stderr
    assert made.stdout.splitlines()[-1] == f"  harness run {project / 'plans' / 'first.toml'}"
    manifest = load_manifest(project / "models" / "my-net.toml")
    assert Path(manifest.file).resolve() == model.resolve()
    plan = load_plan(project / "plans" / "first.toml")
    assert plan.devices == ["local"] and plan.models == ["my-net"]
    assert plan.inputs.dims == {"batch": 1}
    again = harness("init", project, "--model", model)
    assert again.returncode == 2 and "nothing was written" in again.stdout
    run = harness("run", project / "plans" / "first.toml", timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "next: harness report " in run.stdout
    runs = json.loads(harness("runs", "list", "--runs-dir", project / "reports" / "runs",
                              "--format", "json").stdout)  # fmt: skip
    assert len(runs) == 1 and runs[0]["finished"] and runs[0]["plan"] == "first"
    assert runs[0]["jobs"] == {"ok": 4}


def test_init_for_a_board_writes_a_device_file_the_inventory_loads(tmp_path: Path) -> None:
    made = harness("init", tmp_path, "--ssh", "pi@pi5-lab2.lab.example:2222")
    assert made.returncode == 0, made.stdout + made.stderr
    device = load_device(tmp_path / "devices" / "pi5-lab2.toml")
    assert (device.connection.host, device.connection.port, device.connection.user) == (
        "pi5-lab2.lab.example", 2222, "pi")  # fmt: skip
    assert "harness devices check pi5-lab2" in made.stdout
    assert load_plan(tmp_path / "plans" / "first.toml").devices == ["pi5-lab2"]
    bad = harness("init", tmp_path / "other", "--ssh", "pi5-lab2")
    assert bad.returncode == 2 and "user@host" in bad.stdout
    assert not (tmp_path / "other").exists()


def test_devices_list_and_check_for_scripts(tmp_path: Path) -> None:
    from device_files import local_device_file

    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "bench.toml").write_text(
        local_device_file(tmp_path / "wd") + '[labels]\nclass = "x86"\n'
    )
    listed = json.loads(
        harness("devices", "list", "--devices-dir", devices, "--format", "json").stdout
    )
    bench = next(d for d in listed if d["name"] == "bench")
    assert bench["transport"] == "local" and bench["labels"] == {"class": "x86"}
    checked = harness("devices", "check", "bench", "--devices-dir", devices, "--format", "json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (facts,) = json.loads(checked.stdout)
    assert facts["device"] == "bench" and "onnxruntime" in facts["usable_runtimes"]
    assert facts["runtimes"]["onnxruntime"]["version"] == version("onnxruntime")


def test_compress_names_dims_when_a_dynamic_axis_has_no_value(tmp_path: Path) -> None:
    """A model with a dynamic batch and no sample data: calibration needs a value for it,
    and the error says how `compress` takes one; with it, the variant builds."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(MODELS_DIR / "zoo" / "digits_cnn.onnx", models / "net.onnx")
    (models / "net.toml").write_text(
        'file = "net.onnx"\n[[variants]]\nname = "int8-static"\nstrategy = "int8-static"\n'
    )
    refused = harness("compress", "net", "--models-dir", models, timeout=300)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "dynamic ('batch')" in refused.stdout and "--dims NAME=N" in refused.stdout
    built = harness("compress", "net", "--models-dir", models, "--dims", "batch=1", timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
