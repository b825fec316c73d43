"""A stand-in for onnxruntime's `onnxruntime_perf_test`, for the SSH test device (no
release of the tool is installable here). It times the ONNX model for real with
onnxruntime, honours -e cpu, -x, -r, -m times and -p (onnxruntime's own profiler, the
trace written as `<prefix>_<timestamp>.json`, as the real tool's), and prints its summary
in the layout of the recorded real outputs in tests/fixtures/onnxruntime_perf_test/ -- the
test covers the plumbing (argv, the trace found and fetched back), while the summary's
format is verified against the recordings and the trace is onnxruntime's own.
"""

import sys
import time

import numpy as np
import onnxruntime as ort


def main(argv):
    options, args = {}, list(argv)
    model = args.pop()
    while args:
        flag = args.pop(0)
        options[flag] = args.pop(0) if flag in ("-e", "-x", "-r", "-m", "-p") else True
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = int(options.get("-x", "1"))
    if "-p" in options:
        settings.enable_profiling = True
        settings.profile_file_prefix = options["-p"]
    session = ort.InferenceSession(model, settings, providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
        for i in session.get_inputs()
    }
    session.run(None, feeds)
    seconds = []
    for _ in range(int(options.get("-r", "1000"))):
        start = time.perf_counter()
        session.run(None, feeds)
        seconds.append(time.perf_counter() - start)
    if "-p" in options:
        session.end_profiling()
    print(f"Total inference requests: {len(seconds)}")
    print(f"Average inference time cost: {np.mean(seconds) * 1e3:g} ms")
    print(f"Runs:{len(seconds)}")
    print(f"Min Latency: {min(seconds):g} s")
    print(f"Max Latency: {max(seconds):g} s")
    for name, q in (("P50", 50), ("P90", 90), ("P95", 95), ("P99", 99), ("P999", 99.9)):
        print(f"{name} Latency: {np.percentile(seconds, q):g} s")


if __name__ == "__main__":
    main(sys.argv[1:])
