"""`harness tune` end to end on a real pretrained model with its real inputs: PaddleOCR's
text-direction classifier (the rapidocr wheel) judged on the text lines of `make models`.

Its plain int8-static (per-channel, MinMax) flips one of the 118 lines against fp32 (top-1
agreement 0.992), which breaks a budget of 0.995; the tune finds which layer to keep in
float and the mixed-precision variant holds it (agreement 1.0). Quality is deterministic,
so it is asserted; the speed figures are the benchmark's (benchmarks/tune.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    HARNESS,
    STANDIN_DIR,
    StandinPhones,
    harness,
    make_workspace,
    skip_where_int8_holds,
    wait_until,
)

from harness.tune_search import Recipe

PLAN = """
name = "tune-cls"
devices = ["local"]
models = ["ppocr_cls_v2"]

[inputs]
dims = { batch = 1, width = 192 }

[measure]
warmup = 3
min_iterations = 20
max_seconds = 0.5
paired_budget_s = 2.0

[tune]
objective = "smallest"
quality = { min_top1_agreement = 0.995 }
strategies = ["int8-static"]
per_channel = [true]
calibrate_methods = ["MinMax"]
calibration_samples = 16
max_trials = 8
"""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    workspace = make_workspace(tmp_path_factory.mktemp("tune"))
    plan = workspace / "plans" / "tune.toml"
    plan.write_text(PLAN)
    done = harness("tune", "--plan", plan, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return workspace, done.stdout


def _folder(workspace: Path) -> Path:
    return workspace / "reports" / "tune" / "ppocr_cls_v2-local"


def test_plain_int8_breaks_the_budget_and_the_mixed_precision_recipe_holds_it(
    tuned: tuple[Path, str],
) -> None:
    workspace, out = tuned
    folder = _folder(workspace)
    trials = [json.loads(p.read_text()) for p in sorted((folder / "trials").glob("*.json"))]
    by_origin = {t["recipe"]["origin"].split(":")[0]: t for t in trials}
    plain = by_origin["whole model"]
    skip_where_int8_holds(
        plain["quality"] == "ok",
        f"whole-model int8 top1_agreement {plain['outputs'][0]['value']:.3f} >= 0.995",
    )
    assert plain["quality"] == "loss" and "min_top1_agreement = 0.995" in plain["quality_why"]
    assert plain["outputs"][0]["value"] < 0.995
    mixed = [t for t in trials if t["recipe"]["params"].get("nodes_to_exclude")]
    holding = [t for t in mixed if t["quality"] == "ok"]
    assert holding, [t["quality_why"] for t in mixed]
    assert all(t["outputs"][0]["value"] >= 0.995 for t in holding)
    # the layers kept in float are few: the search bisects down to the fewest that hold
    fewest = min(len(t["recipe"]["params"]["nodes_to_exclude"]) for t in holding)
    assert fewest <= 2
    # every trial that held was measured on the device, paired with fp32
    assert all(t["measured"] and t["settings"] for t in holding)
    assert all(s["speedup_low"] <= s["speedup"] <= s["speedup_high"]
               for t in holding for s in t["settings"])  # fmt: skip
    # the answer: the table, the chart, the pinned entry
    answer = json.loads((folder / "tune.json").read_text())
    assert answer["chosen"]["recipe"]["params"]["nodes_to_exclude"]
    assert "recommended: trial" in out and "[[variants]]" in out
    assert (folder / "trials.svg").read_text().startswith("<svg")
    assert "speedup" in (folder / "trials.csv").read_text().splitlines()[0]
    sensitivity = next(folder.glob("sensitivity-*.json"))
    assert len(json.loads(sensitivity.read_text())) == 54  # every Conv of the model
    # the device's profile names the optimized graph's nodes; most Convs are found in it
    found = re.search(r"layer time shares: (\d+) of 54 weighted layers found.*, (\d+)% of", out)
    assert found and int(found[1]) >= 50 and int(found[2]) >= 25, out  # 54, 37 % here


def test_the_pinned_recipe_rebuilds_byte_identically_from_the_manifest(
    tuned: tuple[Path, str],
) -> None:
    workspace, _ = tuned
    folder = _folder(workspace)
    pinned = (folder / "recommended.toml").read_text()
    entry = tomllib.loads(pinned)["variants"][0]
    chosen = json.loads((folder / "tune.json").read_text())["chosen"]
    assert entry["params"] == chosen["recipe"]["params"]
    manifest = workspace / "models" / "ppocr_cls_v2.toml"
    manifest.write_text(manifest.read_text() + "\n" + pinned)
    cache = workspace / "models" / "cache" / "variants" / "ppocr_cls_v2"
    recipe = chosen["recipe"]
    key = Recipe(recipe["strategy"], recipe["params"], recipe["origin"]).key
    [tuned_file] = cache.glob(f"tune-{key}-*.onnx")
    done = harness("compress", manifest, "--dims", "batch=1,width=192", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    [rebuilt] = cache.glob("tuned-*.onnx")
    assert _sha(rebuilt) == _sha(tuned_file)


def test_a_constraint_nothing_meets_exits_1_naming_the_closest_miss_and_resumes(
    tuned: tuple[Path, str],
) -> None:
    workspace, _ = tuned
    runs_before = sorted((_folder(workspace) / "runs").iterdir())
    done = harness(
        "tune", "--plan", workspace / "plans" / "tune.toml", "--budget", "p90_ms=0.001", timeout=600
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no recipe meets the constraints on local" in done.stdout
    assert "closest miss: p90_ms:" in done.stdout
    # every trial came from the stored records: nothing judged or measured again
    assert "resuming:" in done.stdout and "not run again" in done.stdout
    assert "trial " not in done.stdout.split("tune ppocr_cls_v2")[0].replace("trial(s)", "")
    assert sorted((_folder(workspace) / "runs").iterdir()) == runs_before


def test_a_tune_killed_mid_measurement_resumes_without_measuring_a_finished_trial_again(
    tuned: tuple[Path, str], tmp_path: Path
) -> None:
    """SIGKILL to the whole tune (controller and runner) while it measures a new candidate
    on the device; run again, it measures only that candidate, once."""
    workspace = tmp_path / "workspace"
    shutil.copytree(tuned[0], workspace, symlinks=True)
    plan = workspace / "plans" / "tune.toml"
    plan.write_text(
        PLAN.replace('strategies = ["int8-static"]', 'strategies = ["int8-static", "fp16"]')
    )
    folder = _folder(workspace)
    finished = {p.name: p.read_bytes() for p in (folder / "trials").glob("*.json")}
    runs = folder / "runs"
    runs_before = set(runs.iterdir())
    tune = subprocess.Popen(
        [HARNESS, "tune", "--plan", str(plan)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: set(runs.iterdir()) - runs_before, 300, "the fp16 measurement's run")
        assert tune.poll() is None, "the tune ended before it could be interrupted"
    finally:
        os.killpg(tune.pid, signal.SIGKILL)
        tune.communicate()
    [killed_run] = set(runs.iterdir()) - runs_before
    fp16 = [json.loads(p.read_text()) for p in (folder / "trials").glob("*.json")
            if p.name not in finished]  # fmt: skip
    assert [t["recipe"]["strategy"] for t in fp16] == ["fp16"] and not fp16[0]["measured"]

    done = harness("tune", "--plan", plan, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming: {len(finished) + 1} trial(s)" in done.stdout
    # the trials finished before the kill are the same records, byte for byte
    assert {n: (folder / "trials" / n).read_bytes() for n in finished} == finished
    [new_run] = set(runs.iterdir()) - runs_before - {killed_run}  # fp16's, measured once
    [fp16_after] = [json.loads((folder / "trials" / n).read_text()) for n in
                    {p.name for p in (folder / "trials").glob("*.json")} - set(finished)]  # fmt: skip
    assert fp16_after["measured"] and fp16_after["device_run"] == new_run.name


TFLITE_PLAN = """
name = "tune-phone"
devices = ["pixel"]
models = ["face_detection_short_range"]

[inputs]
dims = { batch = 1 }

[measure]
warmup = 2
iterations = 20

[runtime]
tflite_delegates = ["xnnpack"]

[tune]
objective = "smallest"
quality = { min_detection_agreement = 0.95, min_snr_db = 15 }
strategies = ["int8-static"]
calibration_samples = 12
max_trials = 8
"""


def test_a_tflite_model_is_tuned_for_a_phone_its_recipe_measured_by_benchmark_model(
    workspace: Path, phones: StandinPhones
) -> None:
    """BlazeFace (MediaPipe's TFLite face detector) on its 12 photographs: plain full-integer
    int8 (ai-edge-quantizer) misses faces fp32 finds (detection agreement 0.88); the tune
    keeps ops in float through the quantizer's per-op recipe until 0.95 holds, and the
    phone measures the recipe with its native benchmark_model (the stand-in times it with
    LiteRT). A native tool runs no fidelity pass: the quality is the controller's."""
    tool = workspace / "tools" / "benchmark_model"
    tool.parent.mkdir()
    tool.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN_DIR}/benchmark_model.py" "$@"\n')
    tool.chmod(0o755)
    (workspace / "devices" / "pixel.toml").write_text(
        phones.device_toml("pixel", phones.serials[0])
        + f'[placement.binaries.benchmark_model]\nlocal = "{tool}"\n'
    )
    plan = workspace / "plans" / "tune-phone.toml"
    plan.write_text(TFLITE_PLAN)
    done = harness("tune", "--plan", plan, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = workspace / "reports" / "tune" / "face_detection_short_range-pixel"
    trials = [json.loads(p.read_text()) for p in sorted((folder / "trials").glob("*.json"))]
    plain = next(t for t in trials if t["recipe"]["origin"] == "whole model")
    assert plain["quality"] == "loss" and "past min_detection_agreement" in plain["quality_why"]
    chosen = json.loads((folder / "tune.json").read_text())["chosen"]
    kept = chosen["recipe"]["params"]["nodes_to_exclude"]
    assert kept and len(kept) <= 4  # ops named by their output tensor, as the phone's tools
    assert chosen["setting"]["provider"] == "xnnpack" and chosen["setting"]["speedup"] > 0
    assert chosen["setting"]["device_quality"] is None  # no fidelity pass in benchmark_model
    [measured] = [t for t in trials if t["number"] == chosen["trial"]]
    results = pd.read_parquet(folder / "runs" / measured["device_run"] / "results.parquet")
    assert set(results["transport"]) == {"adb"} and set(results["status"]) == {"ok"}
    assert len(results[results["variant"] != "fp32"]) == 1  # the recipe, beside fp32
    assert (phones.root / "benchmark_model.argv.json").is_file()  # the phone's own tool
    assert "[[variants]]" in done.stdout and "nodes_to_exclude" in done.stdout


def test_tune_refuses_a_model_without_representative_inputs(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    tiny = (workspace / "models" / "tiny_mbv2.toml").read_text()
    manifest = workspace / "models" / "tiny_random.toml"
    manifest.write_text(tiny.split("[data]")[0])
    done = harness(
        "tune", manifest, "--device", "local",
        "--models-dir", workspace / "models", "--devices-dir", workspace / "devices",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "harness tune needs representative inputs" in done.stdout


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
