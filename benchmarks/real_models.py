"""Every compression strategy on the real pretrained models (PaddleOCR detector and
classifier, Silero VAD, openWakeWord's PyTorch-exported timer classifier, MediaPipe's iris
model and Basic Pitch as TFLite), built, verified and measured in one run on the local
device.

A row is a model × strategy: whether it was built, the effect verification counted (or the
reason it was not built, or `no-effect`), p50, speedup against fp32 with its 95 % interval
("~": inside the process-to-process noise), file size against fp32, and the PSNR of its
outputs against fp32's on the same inputs (the worst output) and, for classifiers, the top-1
agreement with fp32 on those inputs.

    .venv/bin/python benchmarks/real_models.py [--max-seconds 2] [--processes 3]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import pandas as pd
from _setup import ROOT

from harness.analysis import compare_variants
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
    args = parser.parse_args()
    models = ["ppocr_cls_v2", "silero_vad_v5"] if args.quick else MODELS
    if args.quick:
        args.max_seconds, args.processes = 0.1, 1
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "real.toml"
        plan.write_text(
            f"""name = "real-models"
devices = ["local"]
models = {models!r}
devices_dir = "{ROOT / "devices"}"
models_dir = "{ROOT / "models"}"
output_dir = "{Path(tmp) / "runs"}"
[measure]
warmup = 10
min_iterations = 20
target_ci = 0.01
max_seconds = {args.max_seconds}
processes = {args.processes}
[runtime]
threads = [{args.threads}]
[inputs]
dims = {{ batch = 1, height = 320, width = 320 }}
""".replace("'", '"')
        )
        prepared = prepare_run(plan, log=lambda message: None)
        run_prepared(prepared)
        results, samples = prepared.store.frames()
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
        f"{'speedup vs fp32':>22} {'size':>6} {'PSNR dB':>7} {'agree':>5}  effect, or why not"
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
        print(
            f"{row.model:<18} {row.variant:<16} {row.status:<10} {p50:>8} {speedup:>22} "
            f"{size:>6} {psnr:>7} {agree:>5}  {what}"
        )


if __name__ == "__main__":
    main()
