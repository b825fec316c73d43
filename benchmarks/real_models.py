"""Every compression strategy on the real pretrained models (PaddleOCR detector and
classifier, Silero VAD, openWakeWord's PyTorch-exported timer classifier, MediaPipe's iris
model and Basic Pitch as TFLite), built, verified and measured in one run on the local
device; then, for the models with representative inputs (the digits CNN's real eval set,
the photographs for the MobileNetV2-style CNN and MediaPipe's face detector, rendered text
lines for the direction classifier, real speech for Silero VAD and Basic Pitch and its
openWakeWord embeddings for the timer classifier), each
variant's fidelity measured on seeded random inputs (and calibrated on them) beside the
same on the representative inputs, so the difference is visible, with the share of the
job's device time the quality pass took.

A row is a model × strategy: whether it was built, the effect verification counted (or the
reason it was not built, or `no-effect`), p50, speedup against fp32 with its 95 % interval
("~": inside the process-to-process noise), file size against fp32, the PSNR of its
outputs against fp32's on the same inputs (the worst output), for classifiers the top-1
agreement with fp32 on those inputs, and the quality verdict (ok, loss, or unverified where
the inputs were seeded random ones).

    .venv/bin/python benchmarks/real_models.py [--max-seconds 2] [--processes 3]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import pandas as pd
from _setup import ROOT

from harness.analysis import compare_variants
from harness.fidelity import from_records
from harness.records import JobRecord
from harness.runner.result_document import ResultDocument
from harness.scheduler import prepare_run, run_prepared

MODELS = ["ppocr_cls_v2", "ppocr_det_v4", "silero_vad_v5", "openwakeword_timer", "iris_landmark",
          "basic_pitch_nmp"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-seconds", type=float, default=2.0)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: checks the script runs (the tests)"
    )
    parser.add_argument("--part", choices=["all", "strategies", "quality"], default="all")
    args = parser.parse_args()
    models = ["ppocr_cls_v2", "silero_vad_v5"] if args.quick else MODELS
    if args.quick:
        args.max_seconds, args.processes = 0.1, 1
    if args.part in ("all", "strategies"):
        every_strategy(models, args)
    if args.part in ("all", "quality"):
        random_against_representative(["tiny_mbv2"] if args.quick else WITH_DATA, args)


def run_plan(
    folder: Path, models: list[str], models_dir: Path, args: argparse.Namespace, dims: str
) -> tuple[pd.DataFrame, pd.DataFrame, list[JobRecord]]:
    """The models on the local device: results, samples and records."""
    plan = folder / "plan.toml"
    plan.write_text(
        f"""name = "real-models"
devices = ["local"]
models = {models!r}
devices_dir = "{ROOT / "devices"}"
models_dir = "{models_dir}"
output_dir = "{folder / "runs"}"
[measure]
warmup = 10
min_iterations = 20
target_ci = 0.01
max_seconds = {args.max_seconds}
processes = {args.processes}
[runtime]
threads = [{args.threads}]
[inputs]
dims = {{ {dims} }}
""".replace("'", '"')
    )
    prepared = prepare_run(plan, log=lambda message: None)
    run_prepared(prepared)
    results, samples = prepared.store.frames()
    return results, samples, prepared.store.records()


def every_strategy(models: list[str], args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dims = "batch = 1, height = 320, width = 320"
        results, samples, _ = run_plan(Path(tmp), models, ROOT / "models", args, dims)
    compared = compare_variants(results, samples)
    speedups = {(r.model, r.variant): r for r in compared.itertuples()}
    fp32_bytes = results[results["variant"] == "fp32"].set_index("model")["model_bytes"]
    print(
        f"\nlocal device (this machine), onnxruntime CPU / LiteRT XNNPACK, {args.threads} thread(s), "
        f"{args.processes} process(es) per job, inputs 1x3x320x320 (detector), "
        "1x3x48x320 (classifier), 512 samples (VAD), 1x34x96 (timer), 1x64x64x3 (iris, TFLite), "
        "1x43844x1 (Basic Pitch, TFLite)\n"
    )
    header = (
        f"{'model':<18} {'variant':<16} {'status':<10} {'p50 ms':>8} "
        f"{'speedup vs fp32':>22} {'size':>6} {'PSNR dB':>7} {'agree':>5} {'quality':<10}  "
        "effect, or why not"
    )
    print(header)
    print("-" * (len(header) + 40))
    for row in results.sort_values(["model", "variant"]).itertuples():
        compared_row = speedups.get((row.model, row.variant))
        speedup = ""
        if compared_row is not None and not pd.isna(compared_row.speedup):
            speedup = f"{compared_row.speedup:.2f}x [{compared_row.speedup_low:.2f}-"
            speedup += f"{compared_row.speedup_high:.2f}]"
            speedup += " ~" if compared_row.significant is False else ""
        p50 = "" if pd.isna(row.p50_ms) else f"{row.p50_ms:.3f}"
        size = (
            f"{row.model_bytes / fp32_bytes[row.model]:.2f}x"
            if row.status == "ok" and not pd.isna(row.model_bytes)
            else ""
        )
        effect = row.variant_effect if isinstance(row.variant_effect, str) else ""
        # the reason without its "variant not built: model/variant: " prefix
        reason = re.sub(r"^(variant not built: )?[\w.-]+/[\w.-]+: ", "", str(row.error))
        what = effect if row.status == "ok" else reason[:110]
        psnr = "" if pd.isna(row.psnr_db) else f"{row.psnr_db:.1f}"
        agree = "" if pd.isna(row.top1_agreement) else f"{row.top1_agreement:.0%}"
        quality = compared_row.quality if compared_row is not None else None
        quality = quality if isinstance(quality, str) and row.variant != "fp32" else ""
        print(
            f"{row.model:<18} {row.variant:<16} {row.status:<10} {p50:>8} {speedup:>22} "
            f"{size:>6} {psnr:>7} {agree:>5} {quality:<10}  {what}"
        )


WITH_DATA = [
    "digits_cnn", "tiny_mbv2", "face_detection_short_range", "ppocr_cls_v2", "silero_vad_v5",
    "basic_pitch_nmp", "openwakeword_timer",
]  # fmt: skip
# the face detector's manifest declares no variants (the demo measures its fp32 only)
TFLITE_VARIANTS = """
[[variants]]
name = "fp16"
strategy = "fp16"

[[variants]]
name = "int8-dynamic"
strategy = "int8-dynamic"

[[variants]]
name = "int8-static"
strategy = "int8-static"
params = { calibration_samples = 12 }
"""


def without_real_data(text: str) -> str:
    """The manifest with its [data] and [eval] tables left out: what a user who gives no
    representative inputs runs (calibration and fidelity on seeded random inputs)."""
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = line.strip() in ("[data]", "[eval]")
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n"


def manifests_for(models: list[str], folder: Path, random: bool) -> None:
    folder.mkdir(parents=True)
    for name in models:
        text = (ROOT / "models" / f"{name}.toml").read_text()
        text = re.sub(
            r'^(file|images|audio|calibration_file) = "', rf'\1 = "{ROOT}/models/', text, flags=re.M
        )
        if name == "face_detection_short_range":
            text += TFLITE_VARIANTS
        (folder / f"{name}.toml").write_text(without_real_data(text) if random else text)


def quality_run(
    models: list[str], folder: Path, args: argparse.Namespace
) -> tuple[pd.DataFrame, dict[tuple[str, str], float]]:
    results, samples, records = run_plan(
        folder, models, folder / "models", args, "batch = 1, width = 192"
    )
    shares = {}
    for record in records:
        fidelity = ResultDocument(record.runner).fidelity
        run_s = record.controller.get("run_s")
        if fidelity is not None and fidelity.elapsed_s is not None and run_s:
            shares[(record.model, record.variant)] = fidelity.elapsed_s / run_s
    compared = compare_variants(results, samples).set_index(["model", "variant"])
    outputs = results.set_index(["model", "variant"])["fidelity_outputs"].to_dict()
    compared["headline"] = [_headline(outputs.get(key)) for key in compared.index]
    return compared, shares


def _headline(text: object) -> str:
    """The output that says most: a stuck one, else one judged by its kind, else the first."""
    if not isinstance(text, str):
        return ""
    outputs = from_records(json.loads(text))
    chosen = sorted(outputs, key=lambda o: (o.problem is None, o.kind == "tensor"))[0]
    if chosen.problem:
        return chosen.problem[:28]
    value = "n/a" if chosen.value is None else f"{chosen.value:.3g}"
    interval = "" if chosen.low is None else f" [{chosen.low:.0%}-{chosen.high:.0%}]"
    return f"{chosen.measure} {value}{interval}"


def random_against_representative(models: list[str], args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for label, random in (("random", True), ("representative", False)):
            manifests_for(models, Path(tmp) / label / "models", random)
            runs[label] = quality_run(models, Path(tmp) / label, args)
    (random_table, _), (real_table, shares) = runs["random"], runs["representative"]
    print(
        "\nfidelity of each variant against fp32 on the same device: calibrated and measured on "
        "seeded random inputs (no [data], no [eval]) | on the representative inputs "
        "(digits: its real eval set; the image models: the 12 photographs; the direction "
        "classifier: 118 rendered text lines; the audio models: 30 s of real speech, or "
        "openWakeWord's embeddings of it); quality pass = the fidelity pass's share of the "
        "job's device time\n"
    )
    header = (
        f"{'model':<27} {'variant':<14} {'random inputs':<44} {'representative inputs':<44} "
        f"{'quality pass':>12}"
    )
    print(header)
    print("-" * len(header))
    for (model, variant), real in real_table.iterrows():
        if variant == "fp32":
            continue
        noise = (
            random_table.loc[(model, variant)] if (model, variant) in random_table.index else None
        )
        share = shares.get((model, variant))
        print(
            f"{model:<27} {variant:<14} {_judged(noise):<44} {_judged(real):<44} "
            f"{'' if share is None else f'{share:.1%}':>12}"
        )


def _judged(row: pd.Series | None) -> str:
    """ "ok: top1_agreement 1 [74%-100%] n=12": the verdict and the headline measure."""
    if row is None or not isinstance(row.get("quality"), str):
        return "not measured"
    n = row["fidelity_n"]
    count = f" n={int(n)}" if n is not None and n == n else ""
    headline = row["headline"]
    if row["quality"] == "loss":  # what lost it: a measure past its tolerance, a stuck output
        headline = re.split(r" \(n=| past ", str(row["quality_note"]).split("; ")[0])[0]
    return f"{row['quality']}: {headline[:34]}{count}"


if __name__ == "__main__":
    main()
