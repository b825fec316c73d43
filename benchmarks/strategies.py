"""Every compression strategy on the bundled models, and the compact designs beside the
big model they are an alternative to, measured in one run on the local device.

Each job runs in 3 fresh processes, interleaved across variants; the speedup's interval is
from the CIs of the two medians, and "~" marks a difference inside the process-to-process
noise (see harness/analysis.py).

    .venv/bin/python benchmarks/strategies.py [--threads 1] [--max-seconds 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from _setup import ROOT

from harness.analysis import compare_variants
from harness.scheduler import prepare_run, run_prepared

MODELS = ["digits_cnn", "tiny_mbv2", "resnet18_like", "squeezenet_like", "shufflenet_like"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=2.0)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: checks the script runs (the tests)"
    )
    args = parser.parse_args()
    models = ["digits_cnn"] if args.quick else MODELS
    if args.quick:
        args.max_seconds, args.processes = 0.2, 1
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "strategies.toml"
        plan.write_text(
            f"""name = "strategies"
devices = ["local"]
models = {models!r}
devices_dir = "{ROOT / "devices"}"
models_dir = "{ROOT / "models"}"
output_dir = "{Path(tmp) / "runs"}"
[measure]
warmup = 20
min_iterations = 100
target_ci = 0.01
max_seconds = {args.max_seconds}
processes = {args.processes}
[runtime]
threads = [{args.threads}]
[inputs]
dims = {{ batch = 1 }}
""".replace("'", '"')
        )
        prepared = prepare_run(plan, log=print)
        run_prepared(prepared)
        results, samples = prepared.store.frames()
    failed = results[results["status"] != "ok"]
    for row in failed.itertuples():
        print(f"not measured: {row.model}/{row.variant}: {row.error}")
    table = compare_variants(results, samples)
    table = table.merge(
        results[["job_id", "model", "variant", "model_bytes"]].assign(
            job_key=lambda f: f["model"] + "/" + f["variant"]
        ),
        on=["model", "variant"],
        how="left",
    )
    print(
        f"\nlocal device (this machine), onnxruntime CPU, {args.threads} thread(s), "
        f"{args.processes} processes per job\n"
    )
    header = f"{'model':<16} {'variant':<13} {'strategy':<19} {'size KB':>8} {'p50 ms':>8} {'speedup vs fp32':>22} {'accuracy':>9} {'top-1 agree':>11}"
    print(header)
    print("-" * len(header))
    for row in table.itertuples():
        speedup = (
            f"{row.speedup:.2f}x [{row.speedup_low:.2f}-{row.speedup_high:.2f}]"
            + ("" if row.significant is not False else " ~")
            if row.speedup is not None and not pd.isna(row.speedup)
            else ""
        )
        accuracy = "" if row.accuracy is None or pd.isna(row.accuracy) else f"{row.accuracy:.1%}"
        agree = (
            ""
            if row.top1_agreement is None or pd.isna(row.top1_agreement)
            else f"{row.top1_agreement:.1%}"
        )
        print(
            f"{row.model:<16} {row.variant:<13} {row.strategy:<19} {row.model_bytes / 1024:>8.0f} "
            f"{row.p50_ms:>8.3f} {speedup:>22} {accuracy:>9} {agree:>11}"
        )


if __name__ == "__main__":
    main()
