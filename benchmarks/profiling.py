"""The cost of per-layer profiling: for each bundled CNN on the local device, the timed
p50 (its solo job) against the median run time of its profile job (onnxruntime profiling
on, a process of its own), and how much of a profiled run its nodes' kernels account for.

    .venv/bin/python benchmarks/profiling.py [--runs 50]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _setup import ROOT

from harness.runner.result_document import ResultDocument
from harness.scheduler import prepare_run, run_prepared

MODELS = ["digits_cnn", "tiny_mbv2", "shufflenet_like", "squeezenet_like", "resnet18_like"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50, help="profiled runs per model")
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: checks the script runs (the tests)"
    )
    args = parser.parse_args()
    models = MODELS[:1] if args.quick else MODELS
    runs, iterations = (3, 20) if args.quick else (args.runs, 300)
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "profiling.toml"
        plan.write_text(
            f'name = "profiling"\ndevices = ["local"]\nmodels = {models!r}\n'.replace("'", '"')
            + 'variants = ["fp32"]\n'
            f'devices_dir = "{ROOT / "devices"}"\nmodels_dir = "{ROOT / "models"}"\n'
            f'output_dir = "{Path(tmp) / "runs"}"\n'
            f"[measure]\nwarmup = 20\niterations = {iterations}\nprocesses = 3\n"
            f"profile = true\nprofile_runs = {runs}\n[inputs]\ndims = {{ batch = 1 }}\n"
        )
        prepared = prepare_run(plan, log=lambda message: None)
        records = run_prepared(prepared)
        results, _ = prepared.store.frames()
    p50 = results.set_index("model")["p50_ms"]
    print(f"\nlocal device, onnxruntime CPU, 1 thread; {runs} profiled runs per model\n")
    header = (
        f"{'model':<18} {'timed p50 ms':>13} {'profiled run ms':>16} {'cost':>7} "
        f"{'kernels / run':>14} {'nodes':>6}"
    )
    print(header)
    print("-" * len(header))
    for record in (r for r in records if r.kind == "profile"):
        profile = ResultDocument(record.runner).profile
        assert profile is not None and profile.run_us and profile.mean_run_us
        run_ms = profile.run_us / 1000
        kernels = sum(profile.op_types.values()) / profile.mean_run_us
        print(
            f"{record.model:<18} {p50[record.model]:>13.3f} {run_ms:>16.3f} "
            f"{run_ms / p50[record.model]:>6.2f}x {kernels:>14.1%} {profile.node_count:>6}"
        )


if __name__ == "__main__":
    main()
