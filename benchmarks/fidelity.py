"""Measurement fidelity: does the harness report the latency a bare loop sees?

For the bundled CNN, the p50 from a bare in-process loop (same model, same threads, same
inputs, same machine) is compared with the p50 the harness reports through the local device
and through a loopback SSH device, each with a persistent runner (a forked child per
process) and exec-per-job (a runner process per process). All five are interleaved round by
round in one run, so drifts of the machine hit all of them alike. Target: ratio within
0.98-1.02.

Each harness job runs --processes processes: their p50s' spread (max - min over the median)
shows whether forked children, which share the persistent runner's imported pages, vary
more or less from process to process than exec'd runners. The memory columns are the first
process's: peak RSS (VmHWM), its PSS after the run, and what the model's load added to PSS.

    .venv/bin/python benchmarks/fidelity.py [--rounds 15] [--iterations 1000] [--processes 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from _setup import ROOT, bench_devices


def bare_loop_p50_ms(model: Path, threads: int, iterations: int, warmup: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feeds = {"input": np.random.default_rng(0).uniform(0, 1, (1, 3, 128, 128)).astype(np.float32)}
    names = [o.name for o in session.get_outputs()]
    for _ in range(warmup + 1):
        session.run(names, feeds)
    latencies = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(iterations):
            start = time.perf_counter_ns()
            session.run(names, feeds)
            latencies.append(time.perf_counter_ns() - start)
    finally:
        gc.enable()
    return float(np.percentile(latencies, 50)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: checks the script runs (the tests)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.iterations, args.processes = 1, 50, 2
    model = ROOT / "models" / "cache" / "tiny_mbv2.onnx"
    # One core for all three: this process, the local runner and sshd (started below,
    # so it and the SSH runner inherit the affinity). Takes one CPU-placement noise away.
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    modes = ("bare loop", "local persistent", "local exec", "ssh persistent", "ssh exec")
    p50s: dict[str, list[float]] = {mode: [] for mode in modes}
    spreads: dict[str, list[float]] = {mode: [] for mode in modes}
    memory_mb: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp, bench_devices(Path(tmp)) as bench:

        def measure(mode: str) -> float:
            if mode == "bare loop":
                return bare_loop_p50_ms(model, args.threads, args.iterations, 20)
            where, runner_mode = mode.split()
            device = "local" if where == "local" else "loopback"
            record = bench.run(
                device, "tiny_mbv2", args.iterations, args.threads,
                processes=args.processes, runner_mode=runner_mode,
            )  # fmt: skip
            process_p50s = [p["p50_ms"] for p in record.runner["processes"]]
            spreads[mode].append(
                (max(process_p50s) - min(process_p50s)) / statistics.median(process_p50s)
            )
            memory = record.runner["memory_kb"]
            memory_mb[mode].append(
                (
                    memory["after_run"]["hwm_kb"] / 1024,
                    memory["after_run"]["pss_kb"] / 1024,
                    (memory["after_load"]["pss_kb"] - memory["before_load"]["pss_kb"]) / 1024,
                )
            )
            return float(np.percentile(record.latencies_ns, 50)) / 1e6

        for round_index in range(args.rounds):
            # alternate the order so a drift within a round favours no mode
            for mode in modes if round_index % 2 == 0 else modes[::-1]:
                p50s[mode].append(measure(mode))
    print(
        f"tiny_mbv2 on CPU {cpu}, {args.threads} thread(s), {args.iterations} iterations x {args.rounds} "
        "interleaved rounds; ratio = median over rounds of (mode p50 / bare p50 of that round)"
    )
    print(
        f"{'mode':<17} {'median p50 ms':>14} {'min..max p50 ms':>18} {'ratio':>7} "
        f"{'ratio range':>14} {'process spread':>15} {'peak RSS MB':>12} {'PSS MB':>7} "
        f"{'model PSS MB':>13}"
    )
    for mode in modes:
        values = p50s[mode]
        ratios = [v / b for v, b in zip(values, p50s["bare loop"], strict=True)]
        line = (
            f"{mode:<17} {statistics.median(values):>14.4f} "
            f"{min(values):>8.4f}..{max(values):<8.4f} {statistics.median(ratios):>7.3f} "
            f"{min(ratios):>6.3f}..{max(ratios):<6.3f}"
        )
        if spreads[mode]:
            rss, pss, model_pss = (
                statistics.median(m[i] for m in memory_mb[mode]) for i in range(3)
            )
            line += (
                f" {statistics.median(spreads[mode]):>14.1%} {rss:>12.1f} {pss:>7.1f} "
                f"{model_pss:>13.1f}"
            )
        print(line)
    print(
        "process spread: median over rounds of (max - min) / median of the job's "
        f"{args.processes} processes' p50s"
    )


if __name__ == "__main__":
    main()
