"""Quality of regression detection on real latency samples from this machine.

A/A: the same job run many times; every pair of runs is compared as `harness compare`
does (ratio of medians, Mann–Whitney U, threshold) and any verdict other than "no change"
is a false positive (target <= 1 % over >= 200 comparisons). A/B: the same job with the
runner told to make every inference 5 % slower (`inject_slowdown = 0.05`); the share of
A/B pairs called "slower" is the detection rate (target >= 95 %). Runs alternate A, B, A, B
in one session and are pinned to one CPU, as a nightly lab would pin its boards.

    .venv/bin/python benchmarks/regression_detection.py [--runs 21] [--processes 12]
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _setup import ROOT, bench_devices

from harness.config import Inputs, Measure, Plan, RuntimeSettings, load_manifest
from harness.history import compare_latencies, regression_verdict
from harness.jobs import expand_plan
from harness.scheduler import run_jobs
from harness.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)  # 210 A/A and 441 A/B pairs
    parser.add_argument("--processes", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--slowdown", type=float, default=0.05)
    args = parser.parse_args()
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    manifest = load_manifest(ROOT / "models" / "tiny_mbv2.toml")
    samples: dict[str, list[pd.DataFrame]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp, bench_devices(Path(tmp)) as bench:
        for index in range(2 * args.runs):
            arm = "AB"[index % 2]
            plan = Plan(
                name="detect",
                models=["tiny_mbv2"],
                variants=["fp32"],
                measure=Measure(
                    warmup=20,
                    iterations=args.iterations,
                    processes=args.processes,
                    inject_slowdown=args.slowdown if arm == "B" else 0.0,
                ),
                runtime=RuntimeSettings(threads=[1]),
                inputs=Inputs(dims={"batch": 1}),
            )
            jobs = expand_plan(plan, [bench.inventory["local"]], [manifest])
            store = RunStore.create(Path(tmp) / "runs", "detect")
            run_jobs(jobs, bench.inventory, store)
            samples[arm].append(store.frames()[1])
    aa = list(itertools.combinations(samples["A"], 2))
    ab = list(itertools.product(samples["A"], samples["B"]))
    compared = {
        name: [compare_latencies(a, b) for a, b in pairs]
        for name, pairs in (("A/A", aa), ("A/B", ab))
    }
    run_p50s = [s["latency_ns"].median() for s in samples["A"]]
    spread = np.std(run_p50s) / np.median(run_p50s)
    print(
        f"tiny_mbv2 fp32 on CPU {cpu}, {args.runs} runs per arm x {args.processes} processes x "
        f"{args.iterations} iterations; injected slowdown {args.slowdown:.0%}; run-to-run "
        f"std of the p50 {spread:.2%}; test: {compared['A/A'][0]['test']}"
    )
    print(
        f"{'threshold':>9} {'A/A comparisons':>16} {'false positives':>16} {'A/B comparisons':>16} {'detected':>9}"
    )

    def share(pairs: list[dict], threshold: float, wanted: str) -> float:
        verdicts = [regression_verdict(c["ratio"], c["p_value"], threshold)[0] for c in pairs]
        return float(np.mean([v == wanted for v in verdicts]))

    for threshold in (0.01, 0.02, 0.03, 0.04):
        false_positive = 1 - share(compared["A/A"], threshold, "no change")
        detected = share(compared["A/B"], threshold, "slower")
        print(
            f"{threshold:>9.0%} {len(compared['A/A']):>16} {false_positive:>16.1%} "
            f"{len(compared['A/B']):>16} {detected:>9.1%}"
        )


if __name__ == "__main__":
    main()
