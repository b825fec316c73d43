"""A stand-in for TensorRT's `trtexec`, for the SSH test device (there is no GPU here).
It times the ONNX model for real with onnxruntime's CPU provider, honours --onnx,
--iterations and --exportTimes, and prints its summary in the layout of the recorded real
outputs in tests/fixtures/trtexec/ — the test covers the plumbing (argv, the trace file
fetched back as raw samples), while the format itself is verified against the recordings.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main(argv):
    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    session = ort.InferenceSession(options["onnx"], providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
        for i in session.get_inputs()
    }
    trace, clock = [], time.perf_counter()
    for _ in range(int(options.get("iterations", "10"))):
        start = (time.perf_counter() - clock) * 1e3
        session.run(None, feeds)
        end = (time.perf_counter() - clock) * 1e3
        trace.append({"startComputeMs": start, "endComputeMs": end, "computeMs": end - start,
                      "latencyMs": end - start})  # fmt: skip
    if "exportTimes" in options:
        with open(options["exportTimes"], "w") as handle:
            json.dump(trace, handle)
    ms = np.array([t["latencyMs"] for t in trace])
    summary = (
        f"min = {ms.min():g} ms, max = {ms.max():g} ms, mean = {ms.mean():g} ms, "
        f"median = {np.median(ms):g} ms, percentile(99%) = {np.percentile(ms, 99):g} ms"
    )
    print("[11/23/2026-09:00:00] [I] === Performance summary ===")
    print(f"[11/23/2026-09:00:00] [I] Throughput: {1e3 / ms.mean():g} qps")
    print(f"[11/23/2026-09:00:00] [I] Latency: {summary}")
    print(f"[11/23/2026-09:00:00] [I] GPU Compute Time: {summary}")
    print(f"&&&& PASSED TensorRT.trtexec [TensorRT v8601] # trtexec {' '.join(argv)}")


if __name__ == "__main__":
    main(sys.argv[1:])
