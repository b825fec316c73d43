"""`harness tune` beside a peer on the same models, inputs and quality budget: OpenVINO
NNCF's `quantize_with_accuracy_control` (nncf 3.4, ONNX backend: quantize all, then put
back in float the layers that cost most, validated on the set). Then every result is
measured by the harness on the local device in one paired run per model (each variant
beside fp32 in the same processes, its speedup's 95 % interval), its quality judged again
there by the run's fidelity pass.

    .venv/bin/python benchmarks/tune.py [--paired-budget 30] [--quick]

The budget is the same for both tools, on the model's representative set:
- ppocr_cls_v2 (PaddleOCR's text-direction classifier, 118 rendered text lines): top-1
  agreement with fp32 >= 0.995 (NNCF: that agreement as its metric, max_drop 0.005);
- digits_cnn (4-conv CNN, 360 held-out handwritten digits): accuracy drop <= 1 point
  (NNCF: accuracy against the labels as its metric, max_drop 0.01).
The tune's objective is `smallest`: on an x86 CPU at one thread int8 QDQ is slower than
fp32 for these models, so `fastest` has no answer and the table shows the speed anyway.
"Trials" are candidates each tool judged on the set (NNCF: its validation calls after the
initial model's). Intel Neural Compressor is not run: see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _setup import ROOT
from conftest import make_workspace

from harness.analysis import compare_variants
from harness.config import load_manifest
from harness.representative import with_representative_sets
from harness.scheduler import prepare_run, run_prepared, variant_cache_dir


@dataclass(frozen=True)
class Case:
    model: str
    dims: str  # the plan's [inputs] dims
    harness_budget: str  # the [tune] quality table
    metric: str  # NNCF's: "agreement" with fp32's top-1, or "accuracy" against the labels
    max_drop: float  # NNCF's, absolute, in the metric's units
    calibration_samples: int


CASES = [
    Case("ppocr_cls_v2", "{ batch = 1, width = 192 }", "{ min_top1_agreement = 0.995 }",
         "agreement", 0.005, 16),
    Case("digits_cnn", "{ batch = 1 }", "{ max_accuracy_drop_pts = 1.0 }", "accuracy", 0.01, 64),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paired-budget", type=float, default=30.0)
    parser.add_argument(
        "--quick", action="store_true", help="digits_cnn, tiny budgets: checks the script runs"
    )
    args = parser.parse_args()
    cases = [c for c in CASES if c.model == "digits_cnn"] if args.quick else CASES
    budget = 1.0 if args.quick else args.paired_budget
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workspace = make_workspace(Path(tmp) / "workspace")
        for case in cases:
            rows += compare(case, workspace, budget, args.quick)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False))


def compare(case: Case, workspace: Path, paired_budget_s: float, quick: bool) -> list[dict]:
    tuned = run_tune(case, workspace, quick)
    peer = run_nncf(case, workspace)
    manifest = workspace / "models" / f"{case.model}.toml"
    manifest.write_text(
        manifest.read_text() + "\n" + tuned["pinned"] + '\n[[variants]]\nname = "nncf"\n'
        f'strategy = "external"\nlabel = "NNCF 3.4 accuracy control"\nfile = "{peer["file"]}"\n'
    )
    measured = measure(case, workspace, paired_budget_s, quick)
    rows = []
    for variant, tool, trials, wall_s in (
        ("tuned", "harness tune", tuned["trials"], tuned["wall_s"]),
        ("nncf", "NNCF quantize_with_accuracy_control", peer["trials"], peer["wall_s"]),
    ):
        row = measured[variant]
        rows.append({"model": case.model, "tool": tool, **row, "trials": trials,
                     "wall_s": round(wall_s, 1), "recipe": tuned["recipe"] if variant == "tuned"
                     else peer["recipe"]})  # fmt: skip
    return rows


def run_tune(case: Case, workspace: Path, quick: bool) -> dict[str, Any]:
    plan = workspace / "plans" / f"tune-{case.model}.toml"
    plan.write_text(
        f"""name = "tune-{case.model}"
devices = ["local"]
models = ["{case.model}"]
[inputs]
dims = {case.dims}
[measure]
warmup = 5
min_iterations = 20
max_seconds = {0.5 if quick else 2.0}
paired_budget_s = {1.0 if quick else 10.0}
[runtime]
threads = [1]
[tune]
objective = "smallest"
quality = {case.harness_budget}
strategies = ["int8-static"]
calibration_samples = {case.calibration_samples}
max_trials = {6 if quick else 30}
device_budget_s = 900
"""
    )
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "harness"), "tune", "--plan", str(plan)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall_s = time.monotonic() - started
    folder = workspace / "reports" / "tune" / f"{case.model}-local"
    if done.returncode != 0:
        raise SystemExit(f"harness tune {case.model} exited {done.returncode}:\n{done.stdout}")
    answer = json.loads((folder / "tune.json").read_text())
    recipe = answer["chosen"]["recipe"]
    excluded = len(recipe["params"].get("nodes_to_exclude", []))
    words = f"{recipe['params']['calibrate_method']}, " + (
        "per-channel" if recipe["params"]["per_channel"] else "per-tensor"
    )
    return {
        "pinned": (folder / "recommended.toml").read_text(), "trials": answer["trials"],
        "wall_s": wall_s, "recipe": f"int8 QDQ {words}, {excluded} layer(s) in float",
    }  # fmt: skip


def run_nncf(case: Case, workspace: Path) -> dict[str, Any]:
    import nncf
    import onnx
    import onnxruntime as ort

    manifest = load_manifest(ROOT / "models" / f"{case.model}.toml")
    [manifest] = with_representative_sets([manifest], variant_cache_dir(ROOT / "models"), print)
    source = manifest.data.file if manifest.data is not None else manifest.eval.file
    with np.load(source) as data:
        labels = data["labels"]
        samples = data[next(k for k in data.files if k != "labels")].astype(np.float32)
    model = onnx.load(str(manifest.file))
    name = model.graph.input[0].name
    reference = ort.InferenceSession(str(manifest.file), providers=["CPUExecutionProvider"])
    truth = labels if case.metric == "accuracy" else _top1(reference, name, samples)
    truth_of = {x.tobytes(): t for x, t in zip(samples, truth, strict=True)}
    whole_set_calls = []

    def validate(candidate: Any, items: Any) -> float:
        batch = np.concatenate(list(items))
        # NNCF also calls it item by item, to rank the samples: those are not trials
        whole_set_calls.append(len(batch) == len(samples))
        session = ort.InferenceSession(
            candidate.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        expected = np.array([truth_of[x.tobytes()] for x in batch])
        return float(np.mean(_top1(session, name, batch) == expected))

    calibration = nncf.Dataset(list(samples[: case.calibration_samples]), lambda x: {name: x[None]})
    validation = nncf.Dataset([x[None] for x in samples])
    started = time.monotonic()
    quantized = nncf.quantize_with_accuracy_control(
        model, calibration, validation, validate, max_drop=case.max_drop,
        subset_size=case.calibration_samples,
    )  # fmt: skip
    wall_s = time.monotonic() - started
    out = workspace / "models" / f"{case.model}-nncf.onnx"
    onnx.save(quantized, str(out))
    return {"file": out, "trials": max(sum(whole_set_calls) - 1, 0), "wall_s": wall_s,
            "recipe": f"int8 QDQ (NNCF defaults, {_float_layers(quantized)} layer(s) in float)"}  # fmt: skip


def _float_layers(model: Any) -> int:
    """Weighted layers whose weight reaches them without a DequantizeLinear."""
    produced_by = {o: n for n in model.graph.node for o in n.output}
    count = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1:
            weight = produced_by.get(node.input[1])
            count += weight is None or weight.op_type != "DequantizeLinear"
    return count


def _top1(session: Any, name: str, batch: np.ndarray) -> np.ndarray:
    return np.array([np.argmax(session.run(None, {name: x[None]})[0]) for x in batch])


def measure(case: Case, workspace: Path, paired_budget_s: float, quick: bool) -> dict[str, dict]:
    """fp32, the tune's answer and NNCF's in one paired run on the local device."""
    plan = workspace / "plans" / f"measure-{case.model}.toml"
    plan.write_text(
        f"""name = "measure-{case.model}"
devices = ["local"]
models = ["{case.model}"]
variants = ["fp32", "tuned", "nncf"]
[inputs]
dims = {case.dims}
[measure]
warmup = 10
min_iterations = 50
max_seconds = {0.5 if quick else 3.0}
paired = true
paired_budget_s = {paired_budget_s}
fidelity_samples = 256
[runtime]
threads = [1]
[quality]
{case.harness_budget.strip("{} ")}
"""
    )
    prepared = prepare_run(plan, log=lambda _: None)
    run_prepared(prepared)
    run = prepared.store.load()
    compared = compare_variants(run.results, run.samples, run.comparisons)
    results = run.results.set_index("variant")
    out = {}
    for _, row in compared.iterrows():
        variant = row["variant"]
        if variant == "fp32":
            continue
        mine = results.loc[variant]
        quality = (
            f"accuracy {mine['accuracy']:.4f} (fp32 {results.loc['fp32', 'accuracy']:.4f})"
            if case.metric == "accuracy"
            else f"top-1 agreement {mine['top1_agreement']:.4f}"
        )
        out[variant] = {
            "quality": f"{row['quality']}: {quality} (n={int(mine['fidelity_n'] or 0)})",
            "speedup [95% CI]": f"{row['speedup']:.2f}x [{row['speedup_low']:.2f}-"
            f"{row['speedup_high']:.2f}]",
            "size_mb": round(mine["model_bytes"] / 1e6, 3),
        }
    return out


if __name__ == "__main__":
    main()
