"""A stand-in for TFLite's `benchmark_model`, for the stand-in phone (there is no Android
binary that runs here). It times the model for real with LiteRT, honours the flags the
harness passes (--graph, --num_threads, --warmup_runs, --num_runs, --use_xnnpack), and prints
its results in the layout of the recorded real outputs in tests/fixtures/benchmark_model/ —
so the test covers the plumbing (push, flags, taskset, parse, store), while the format
itself is verified against those recordings. It writes its argv and CPU affinity to
benchmark_model.argv.json in the phone's sandbox (benchmark_model.profiled.argv.json with
--enable_op_profiling=true), for the test to check.

With --enable_op_profiling=true it ends with a recorded real operator profile (no real
phone's can be made here): the NNAPI one with --use_nnapi=true, else the built-in kernels'
one of a float or a quantized MobileNetV2 as the model is float or quantized (see
tests/fixtures/benchmark_model/expected.json for where each came from).
"""

import json
import os
import resource
import statistics
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

RECORDINGS = os.path.join(os.path.dirname(__file__), "..", "fixtures", "benchmark_model")


def flags(argv):
    found = {}
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            found[key] = value
    return found


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stats_line(times_us):
    mean, std = statistics.mean(times_us), statistics.pstdev(times_us)
    p5, p95 = np.percentile(times_us, [5, 95])
    return (
        f"count={len(times_us)} first={times_us[0]} curr={times_us[-1]} min={min(times_us)} "
        f"max={max(times_us)} avg={mean:g} std={std:.0f} p5={p5:.0f} "
        f"median={statistics.median(times_us):.0f} p95={p95:.0f}"
    )


def main(argv):
    root = os.environ.get("STANDIN_ADB_ROOT", ".")
    options = flags(argv)
    profiled = options.get("enable_op_profiling") == "true"
    record = "benchmark_model.profiled.argv.json" if profiled else "benchmark_model.argv.json"
    with open(os.path.join(root, record), "w") as handle:
        json.dump({"argv": argv, "cpus": sorted(os.sched_getaffinity(0))}, handle)
    print("INFO: STARTING!")
    print(f"INFO: Graph: [{options['graph']}]")
    start_mb = peak_mb()
    started = time.perf_counter()
    xnnpack = options.get("use_xnnpack", "true") == "true"
    interpreter = Interpreter(
        model_path=options["graph"],
        num_threads=int(options.get("num_threads", "1")),
        experimental_op_resolver_type=OpResolverType.AUTO
        if xnnpack
        else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    init_us = (time.perf_counter() - started) * 1e6
    init_mb = peak_mb() - start_mb
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))

    def timed(count):
        times = []
        for _ in range(count):
            begin = time.perf_counter_ns()
            interpreter.invoke()
            times.append((time.perf_counter_ns() - begin) // 1000)
        return times

    warmup = timed(max(1, int(options.get("warmup_runs", "1"))))
    print("INFO: " + stats_line(warmup))
    runs = timed(int(options.get("num_runs", "50")))
    print("INFO: " + stats_line(runs))
    print(
        f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {warmup[0]}, "
        f"Warmup (avg): {statistics.mean(warmup):g}, Inference (avg): {statistics.mean(runs):g}"
    )
    overall_mb = peak_mb() - start_mb
    print(
        "INFO: Memory footprint delta from the start of the tool (MB): "
        f"init={init_mb:g} overall={overall_mb:g}"
    )
    if profiled:
        quantized = any(t["dtype"] in (np.int8, np.uint8) for t in interpreter.get_tensor_details())
        recording = (
            "android_nnapi_deeplab_op_profiling.txt"
            if options.get("use_nnapi") == "true"
            else "linux_x86_avx2_2020_op_profiling_%s.txt" % ("int8" if quantized else "fp32")
        )
        with open(os.path.join(RECORDINGS, recording)) as table:
            sys.stdout.write(table.read())


if __name__ == "__main__":
    main(sys.argv[1:])
