"""Quality of regression detection on real latency samples from this machine.

Two designs, both with real runs of the MobileNetV2-style model on the local device:

- across runs (what `harness compare RUN_A RUN_B` sees on nightly history): many runs of
  the same job (A/A) and of the job with every inference made 5 % slower (A/B, the runner's
  `inject_slowdown`), compared pairwise;
- interleaved in one run (what `harness show --compare` sees for variants): copies of A and
  of B in one plan (A0, B0, A1, B1, ...), their processes interleaved round by round,
  compared paired by round — every A with every B, and each B with its neighbours in the
  round order only (as a variant runs beside its fp32 base in a plan). A/A pairs are
  always every pair, the nearest and the farthest apart. The neighbours are also compared
  unpaired (`compare_latencies`: Yuen's trimmed t on process medians), to show what the
  pairing buys on this machine.

This machine's own noise is shown beside the figures: a bare Python loop on the same CPU,
timed in 100 ms slices before and after, and the share of slices that ran 1.3x slower
than the fastest (a shared VM's host steals time the guest does not see as steal).

A/A comparisons called anything but "no change" are false positives (target <= 1 % over
>= 200 comparisons); A/B comparisons called "slower" are detections (target >= 95 %).
Verdicts at fixed thresholds, and at the default threshold raised to the machine's noise
floor as `harness compare` would: the floor `harness calibrate` measures (one extra job in
as many processes) and, across runs, the nightly-history floor of the A runs.

    .venv/bin/python benchmarks/regression_detection.py [--design both|across|interleaved]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _setup import ROOT, bench_devices

from harness.config import Inputs, Measure, Plan, RuntimeSettings, load_manifest
from harness.history import (
    DEFAULT_THRESHOLD,
    calibrated_floor,
    calibration_floors,
    compare_interleaved,
    compare_latencies,
    noise_floor,
    regression_verdict,
)
from harness.jobs import Job, expand_plan
from harness.scheduler import run_jobs
from harness.store import RunStore

THRESHOLDS = sorted({0.01, 0.02, DEFAULT_THRESHOLD, 0.04})


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


def machine_noise(seconds: float = 5.0) -> str:
    """Share of slices of a fixed bare loop that ran >= 1.3x its fastest slice."""
    slices = []
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        start, total = time.perf_counter(), 0
        for k in range(150_000):
            total += k * k
        slices.append(time.perf_counter() - start)
    slowest = np.array(slices) / min(slices)
    return (f"{np.mean(slowest >= 1.3):.0%} of {len(slices)} slices >= 1.3x the fastest, "
            f"slowest {slowest.max():.2f}x")  # fmt: skip


def run(bench, jobs: list[Job], tmp: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    store = RunStore.create(tmp / "runs", "detect")
    run_jobs(jobs, bench.inventory, store)
    return store.frames()


def report(title: str, aa: list[dict], ab: list[dict], floors: dict[str, float]) -> None:
    """One row per threshold: fixed ones, then the default raised to each floor."""
    print(f"\n{title}; test: {aa[0]['test']}")
    print(f"{'threshold':>44} {'A/A comparisons':>16} {'false positives':>16} "
          f"{'A/B comparisons':>16} {'detected':>9}")  # fmt: skip
    rows = [(f"{t:.0%}" + (" (default)" if t == DEFAULT_THRESHOLD else ""), t) for t in THRESHOLDS]
    rows += [
        (f"default raised to the {name} ({floor:.1%})", max(DEFAULT_THRESHOLD, floor))
        for name, floor in floors.items()
    ]
    for label, threshold in rows:
        aa_verdicts = [regression_verdict(c["ratio"], c["p_value"], threshold)[0] for c in aa]
        ab_verdicts = [regression_verdict(c["ratio"], c["p_value"], threshold)[0] for c in ab]
        false_positive = np.mean([v != "no change" for v in aa_verdicts])
        detected = np.mean([v == "slower" for v in ab_verdicts])
        print(f"{label:>44} {len(aa):>16} {false_positive:>16.1%} {len(ab):>16} "
              f"{detected:>9.1%}")  # fmt: skip


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
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: checks the script runs (the tests)"
    )
    args = parser.parse_args()
    noise_s = 0.2 if args.quick else 5.0
    if args.quick:  # the paired test needs MIN_ROUNDS processes
        args.runs, args.batches, args.copies, args.processes, args.iterations = 2, 1, 2, 5, 20
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # pinned, as a lab pins its boards
    print(f"tiny_mbv2 fp32, 1 thread, on CPU {cpu}; injected slowdown {args.slowdown:.0%}; "
          f"{args.processes} processes x {args.iterations} iterations per job")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, bench_devices(Path(tmp)) as bench:
        job = base_job(bench, args.processes, args.iterations)
        calibration = dataclasses.replace(
            copies(job, 1, 0.0, "calibration")[0], processes=2 * args.processes
        )  # twice the processes: the floor for jobs of `processes` is measured, not bounded
        calibrated = calibrated_floor(
            calibration_floors(run(bench, [calibration], Path(tmp))[1]), args.processes
        )
        print(f"calibrated floor for {args.processes}-process jobs: {calibrated:.2%}")
        print(f"machine noise before: {machine_noise(noise_s)}")
        if args.design in ("both", "across"):
            frames: dict[str, list[pd.DataFrame]] = {"A": [], "B": []}
            a_results = []
            for index in range(2 * args.runs):  # A, B, A, B, ...
                arm = "AB"[index % 2]
                [single] = copies(job, 1, args.slowdown if arm == "B" else 0.0, arm)
                results, samples = run(bench, [single], Path(tmp))
                frames[arm].append(samples)
                if arm == "A":
                    a_results.append(results.assign(variant="A"))
            nightly = noise_floor(pd.concat(a_results)).get("local", 0.0)
            aa = [compare_latencies(a, b) for a, b in itertools.combinations(frames["A"], 2)]
            ab = [compare_latencies(a, b) for a, b in itertools.product(frames["A"], frames["B"])]
            p50s = [f["latency_ns"].median() for f in frames["A"]]
            report(f"across runs: {args.runs} runs per arm, run-to-run std of the p50 "
                   f"{np.std(p50s) / np.median(p50s):.2%}", aa, ab,
                   {"calibrated floor": calibrated, "nightly floor": nightly})  # fmt: skip
        if args.design in ("both", "interleaved"):
            aa, ab, ab_neighbours = [], [], []
            aa_unpaired, ab_unpaired = [], []
            for _ in range(args.batches):
                a_jobs = copies(job, args.copies, 0.0, "A")
                b_jobs = copies(job, args.copies, args.slowdown, "B")
                _, samples = run(
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
                neighbours = [(x, y) for i, y in enumerate(b_jobs) for x in a_jobs[i : i + 2]]
                ab_neighbours += [  # B_i beside A_i before it and A_i+1 after it
                    compare_interleaved(by_job[x.job_id], by_job[y.job_id]) for x, y in neighbours
                ]
                ab_unpaired += [
                    compare_latencies(by_job[x.job_id], by_job[y.job_id]) for x, y in neighbours
                ]
                aa_unpaired += [
                    compare_latencies(by_job[x.job_id], by_job[y.job_id])
                    for x, y in itertools.combinations(a_jobs, 2)
                ]
            report(
                f"interleaved in one run: {args.batches} runs x {args.copies} copies of A and of B",
                aa,
                ab,
                {"calibrated floor": calibrated},
            )
            report(
                "the same runs, each B against its neighbours in the round order only",
                aa,
                ab_neighbours,
                {"calibrated floor": calibrated},
            )
            report(
                "the same runs and pairs, unpaired",
                aa_unpaired,
                ab_unpaired,
                {"calibrated floor": calibrated},
            )
        print(f"\nmachine noise after: {machine_noise(noise_s)}")


if __name__ == "__main__":
    main()
