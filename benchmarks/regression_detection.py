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

- paired in one process (`[measure] paired = true`, harness/runner/paired.py): fp32 and a
  copy of it (A/A), and fp32 and the copy made 5 % slower (A/B), alternated in blocks in
  the same runner processes and decided sequentially against the ±2 % equivalence band;
  each comparison a job of its own, within its device-time budget. Also a real pair (fp32
  against int8-static of the same model), whose verdict must not change from comparison
  to comparison, and the cost of co-residence: each bundled CNN's paired latency against
  its solo latency in the same run.

A/A comparisons called anything but "no change" are false positives (target <= 1 % over
>= 200 comparisons); A/B comparisons called "slower" are detections (target >= 95 %).
Verdicts at fixed thresholds, and at the default threshold raised to the machine's noise
floor as `harness compare` would: the floor `harness calibrate` measures (one extra job in
as many processes) and, across runs, the nightly-history floor of the A runs.

    .venv/bin/python benchmarks/regression_detection.py [--design both|across|interleaved|paired]
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

from harness.compress import BuildContext, build_all
from harness.config import Inputs, Measure, Plan, RuntimeSettings, Variant, load_manifest
from harness.history import (
    DEFAULT_THRESHOLD,
    calibrated_floor,
    calibration_floors,
    compare_interleaved,
    compare_latencies,
    noise_floor,
    regression_verdict,
)
from harness.jobs import Job
from harness.plan_jobs import expand_plan
from harness.scheduler import run_jobs, variant_cache_dir
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
    mdes = [c["mde"] for c in aa if c.get("mde") is not None]
    if mdes:  # what a "no change" could have missed, at the default threshold's test
        print(f"{'':>44} minimum detectable change (95 % power), median over the A/A "
              f"comparisons: {np.median(mdes):.1%}")  # fmt: skip
    for label, threshold in rows:
        aa_verdicts = [regression_verdict(c["ratio"], c["p_value"], threshold)[0] for c in aa]
        ab_verdicts = [regression_verdict(c["ratio"], c["p_value"], threshold)[0] for c in ab]
        false_positive = np.mean([v != "no change" for v in aa_verdicts])
        detected = np.mean([v == "slower" for v in ab_verdicts])
        print(f"{label:>44} {len(aa):>16} {false_positive:>16.1%} {len(ab):>16} "
              f"{detected:>9.1%}")  # fmt: skip


def paired_jobs(
    bench, model: str, variant_file: Path, count: int, slowdown: float, tag: str, args
) -> list[Job]:
    """`count` paired jobs, each its own comparison: fp32 beside `variant_file`."""
    manifest = load_manifest(ROOT / "models" / f"{model}.toml")
    variant = Variant(name=tag, strategy="external", file=variant_file)
    manifest = manifest.model_copy(update={"variants": [variant]})
    plan = Plan(
        name="paired",
        models=[model],
        measure=Measure(
            warmup=20,
            iterations=args.iterations,
            processes=args.paired_processes,
            paired=True,
            paired_budget_s=args.budget_s,
            fidelity_samples=0,
            inject_slowdown=slowdown,
        ),  # fmt: skip
        runtime=RuntimeSettings(threads=[1]),
        inputs=Inputs(dims={"batch": 1}),
    )
    jobs = expand_plan(plan, [bench.inventory["local"]], [manifest])
    solo = [j for j in jobs if j.kind == "solo"]
    [pair] = [j for j in jobs if j.kind == "paired"]
    return solo + [
        dataclasses.replace(pair, job_id=f"{pair.job_id}.{tag}{i}", variant=f"{tag}{i}")
        for i in range(count)
    ]


def paired_design(bench, args, tmp: Path) -> None:
    base = ROOT / "models" / "cache" / "tiny_mbv2.onnx"
    copy = tmp / "tiny_mbv2_copy.onnx"
    copy.write_bytes(base.read_bytes())
    rows = {}
    for tag, slowdown, count in (("AA", 0.0, args.aa), ("AB", args.slowdown, args.ab)):
        store = RunStore.create(tmp / "runs", "paired")
        run_jobs(paired_jobs(bench, "tiny_mbv2", copy, count, slowdown, tag, args),
                 bench.inventory, store)  # fmt: skip
        rows[tag] = store.comparisons()
    aa, ab = rows["AA"], rows["AB"]
    false_positive = aa["verdict"].isin(["faster", "slower"]).mean()
    detected = (ab["verdict"] == "slower").mean()
    print(
        f"\npaired in one process: {args.paired_processes} processes per comparison, "
        f"budget {args.budget_s:g} s, equivalence band ±{aa['equivalence_pct'].iloc[0]:g} %"
    )
    print(
        f"{'':>10} {'comparisons':>12} {'faster/slower':>14} {'equivalent':>11} "
        f"{'inconclusive':>13} {'device s: median':>17} {'max':>6} {'ratio: median':>14}"
    )
    for tag, frame in (("A/A", aa), ("A/B 5 %", ab)):
        verdicts = frame["verdict"].value_counts(normalize=True)
        print(f"{tag:>10} {len(frame):>12} "
              f"{verdicts.get('faster', 0) + verdicts.get('slower', 0):>14.1%} "
              f"{verdicts.get('equivalent', 0):>11.1%} {verdicts.get('inconclusive', 0):>13.1%} "
              f"{frame['device_s'].median():>17.1f} {frame['device_s'].max():>6.1f} "
              f"{frame['ratio'].median():>14.3f}")  # fmt: skip
    print(
        f"false positives {false_positive:.1%} over {len(aa)} A/A comparisons (target <= 1 %); "
        f"{args.slowdown:.0%} slowdown detected in {detected:.1%} of {len(ab)} (target >= 95 %)"
    )
    manifest = load_manifest(ROOT / "models" / "tiny_mbv2.toml")
    built = build_all([manifest], ["int8-static"], variant_cache_dir(ROOT / "models"),
                      lambda m: BuildContext(m, {"batch": 1}))  # fmt: skip
    int8 = built[("tiny_mbv2", "int8-static")].path
    store = RunStore.create(tmp / "runs", "paired")
    run_jobs(paired_jobs(bench, "tiny_mbv2", int8, args.real, 0.0, "int8-", args),
             bench.inventory, store)  # fmt: skip
    real = store.comparisons()
    print(f"real pair, tiny_mbv2 int8-static vs fp32, {len(real)} comparisons: verdicts "
          f"{real['verdict'].value_counts().to_dict()}, speedup median "
          f"{real['speedup'].median():.3f} (range {real['speedup'].min():.3f}-"
          f"{real['speedup'].max():.3f})")  # fmt: skip
    print(
        "\nco-residence: each model's latency paired (beside a copy of itself) over solo, same run"
    )
    for model in args.cnns:
        base = ROOT / "models" / "cache" / f"{model}.onnx"
        if not base.is_file():
            base = ROOT / "models" / "zoo" / f"{model}.onnx"
        copy = tmp / f"{model}_copy.onnx"
        copy.write_bytes(base.read_bytes())
        store = RunStore.create(tmp / "runs", "paired")
        run_jobs(paired_jobs(bench, model, copy, 1, 0.0, "copy", args), bench.inventory, store)
        results, _ = store.frames()
        [pair] = store.comparisons().to_dict("records")
        solo = results.set_index("variant")["p50_ms"]
        print(f"  {model:<16} solo p50 fp32 {solo['fp32']:.3f} ms, copy {solo['copy']:.3f} ms; "
              f"paired fp32 {pair['reference_paired_ms']:.3f} ms "
              f"({pair['reference_paired_ms'] / solo['fp32']:.3f}x), copy "
              f"{pair['variant_paired_ms']:.3f} ms "
              f"({pair['variant_paired_ms'] / solo['copy']:.3f}x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--design", choices=["both", "across", "interleaved", "paired", "all"], default="both"
    )
    parser.add_argument("--aa", type=int, default=200, help="paired: A/A comparisons")
    parser.add_argument("--ab", type=int, default=100, help="paired: A/B comparisons")
    parser.add_argument("--real", type=int, default=20, help="paired: int8-static comparisons")
    parser.add_argument("--budget-s", type=float, default=30.0, help="paired: per comparison")
    parser.add_argument("--paired-processes", type=int, default=2)
    parser.add_argument(
        "--cnns", nargs="*",
        default=["digits_cnn", "tiny_mbv2", "squeezenet_like", "shufflenet_like", "resnet18_like"],
    )  # fmt: skip
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
        args.aa, args.ab, args.real, args.budget_s, args.cnns = 2, 2, 1, 3.0, ["digits_cnn"]
        args.design = "all"  # every design, so none can rot
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
        if args.design in ("paired", "all"):
            paired_design(bench, args, Path(tmp))
        if args.design in ("both", "across", "all"):
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
        if args.design in ("both", "interleaved", "all"):
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
