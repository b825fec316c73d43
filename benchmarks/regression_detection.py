"""Quality of regression detection on real latency samples from this machine.

Two designs, both with real runs of the MobileNetV2-style model on the local device:

- across runs (what `harness compare RUN_A RUN_B` sees on nightly history): many runs of
  the same job (A/A) and of the job with every inference made 5 % slower (A/B, the runner's
  `inject_slowdown`), compared pairwise;
- interleaved in one run (what `harness show --compare` sees for variants): copies of A and
  of B in one plan, their processes interleaved round by round, compared paired by round.

A/A comparisons called anything but "no change" are false positives (target <= 1 % over
>= 200 comparisons); A/B comparisons called "slower" are detections (target >= 95 %).

    .venv/bin/python benchmarks/regression_detection.py [--design both|across|interleaved]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _setup import ROOT, bench_devices

from harness.config import Inputs, Measure, Plan, RuntimeSettings, load_manifest
from harness.history import compare_interleaved, compare_latencies, regression_verdict
from harness.jobs import Job, expand_plan
from harness.scheduler import run_jobs
from harness.store import RunStore

THRESHOLDS = (0.01, 0.02, 0.03, 0.04)


def base_job(bench, processes: int, iterations: int) -> Job:
    manifest = load_manifest(ROOT / "models" / "tiny_mbv2.toml")
    plan = Plan(
        name="detect",
        models=["tiny_mbv2"],
        variants=["fp32"],
        measure=Measure(warmup=20, iterations=iterations, processes=processes),
        runtime=RuntimeSettings(threads=[1]),
        inputs=Inputs(dims={"batch": 1}),
    )
    [job] = expand_plan(plan, [bench.inventory["local"]], [manifest])
    return job


def copies(job: Job, count: int, slowdown: float, tag: str) -> list[Job]:
    return [
        dataclasses.replace(
            job, job_id=f"{job.job_id}.{tag}{i}", variant=f"{tag}{i}", inject_slowdown=slowdown
        )
        for i in range(count)
    ]


def run(bench, jobs: list[Job], tmp: Path) -> pd.DataFrame:
    store = RunStore.create(tmp / "runs", "detect")
    run_jobs(jobs, bench.inventory, store)
    return store.frames()[1]


def report(title: str, aa: list[dict], ab: list[dict]) -> None:
    print(f"\n{title}; test: {aa[0]['test']}")
    print(
        f"{'threshold':>9} {'A/A comparisons':>16} {'false positives':>16} {'A/B comparisons':>16} {'detected':>9}"
    )
    for threshold in THRESHOLDS:
        aa_verdicts = [regression_verdict(c["ratio"], c["p_value"], threshold)[0] for c in aa]
        ab_verdicts = [regression_verdict(c["ratio"], c["p_value"], threshold)[0] for c in ab]
        false_positive = np.mean([v != "no change" for v in aa_verdicts])
        detected = np.mean([v == "slower" for v in ab_verdicts])
        print(
            f"{threshold:>9.0%} {len(aa):>16} {false_positive:>16.1%} {len(ab):>16} {detected:>9.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--design", choices=["both", "across", "interleaved"], default="both")
    parser.add_argument("--runs", type=int, default=21, help="across: runs per arm")
    parser.add_argument("--batches", type=int, default=5, help="interleaved: runs")
    parser.add_argument(
        "--copies", type=int, default=10, help="interleaved: copies of A and of B per run"
    )
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--slowdown", type=float, default=0.05)
    args = parser.parse_args()
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # pinned, as a lab pins its boards
    print(f"tiny_mbv2 fp32, 1 thread, on CPU {cpu}; injected slowdown {args.slowdown:.0%}; "
          f"{args.processes} processes x {args.iterations} iterations per job")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, bench_devices(Path(tmp)) as bench:
        job = base_job(bench, args.processes, args.iterations)
        if args.design in ("both", "across"):
            frames: dict[str, list[pd.DataFrame]] = {"A": [], "B": []}
            for index in range(2 * args.runs):  # A, B, A, B, ...
                arm = "AB"[index % 2]
                [single] = copies(job, 1, args.slowdown if arm == "B" else 0.0, arm)
                frames[arm].append(run(bench, [single], Path(tmp)))
            aa = [compare_latencies(a, b) for a, b in itertools.combinations(frames["A"], 2)]
            ab = [compare_latencies(a, b) for a, b in itertools.product(frames["A"], frames["B"])]
            p50s = [f["latency_ns"].median() for f in frames["A"]]
            report(f"across runs: {args.runs} runs per arm, run-to-run std of the p50 "
                   f"{np.std(p50s) / np.median(p50s):.2%}", aa, ab)  # fmt: skip
        if args.design in ("both", "interleaved"):
            aa, ab = [], []
            for _ in range(args.batches):
                a_jobs = copies(job, args.copies, 0.0, "A")
                b_jobs = copies(job, args.copies, args.slowdown, "B")
                samples = run(
                    bench, [j for pair in zip(a_jobs, b_jobs, strict=True) for j in pair], Path(tmp)
                )
                by_job = {j: g for j, g in samples.groupby("job_id")}
                aa += [
                    compare_interleaved(by_job[x.job_id], by_job[y.job_id])
                    for x, y in itertools.combinations(a_jobs, 2)
                ]
                ab += [
                    compare_interleaved(by_job[x.job_id], by_job[y.job_id])
                    for x, y in itertools.product(a_jobs, b_jobs)
                ]
            report(
                f"interleaved in one run: {args.batches} runs x {args.copies} copies of A and of B",
                aa,
                ab,
            )


if __name__ == "__main__":
    main()
