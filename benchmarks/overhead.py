"""Controller overhead per job over loopback SSH, outside the timed window.

With the connection open and the model cached on the device, each job costs, besides the
timed loop: the controller's work (spec upload, command start, result transfer and
parsing, the record written to disk) and the runner process's own start-up (interpreter,
runtime import, model load, warm-up) on the device. Both are reported apart; the target
(<= 0.25 s) is for the controller's part. The first job's extra cost (runner and model
pushed) is reported too.

    .venv/bin/python benchmarks/overhead.py [--jobs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from _setup import bench_devices


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: checks the script runs (the tests)"
    )
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.iterations = 1, 20
    rows = []
    with tempfile.TemporaryDirectory() as tmp, bench_devices(Path(tmp)) as bench:
        ssh_true_s = bench.exec_s("loopback", ["true"])
        ssh_python_s = bench.exec_s("loopback", [sys.executable, "-c", "pass"])
        for model in ("tiny_mbv2", "face_detection_short_range"):
            records = [
                bench.run("loopback", model, args.iterations, warmup=5)
                for _ in range(args.jobs + 1)
            ]
            first, warm = records[0], records[1:]
            assert first.controller["model_pushed"] and not any(
                r.controller["model_pushed"] for r in warm
            )

            def parts(record):  # seconds
                total = record.controller["total_s"]
                runner_s = record.runner["wall_ms"] / 1e3
                timed_s = sum(record.latencies_ns) / 1e9
                return total, total - runner_s, runner_s - timed_s, timed_s

            warm_parts = [parts(r) for r in warm]
            rows.append(
                (
                    model,
                    parts(first)[0] - statistics.median(p[0] for p in warm_parts),
                    *(statistics.median(p[i] for p in warm_parts) for i in range(4)),
                )
            )
    print(
        f"loopback SSH, {args.jobs} warm jobs per model after one cold job, {args.iterations} timed iterations each"
    )
    print(
        "seconds per job (median)      first-push  job total  controller  runner start+load  timed window"
    )
    for model, push, total, controller, runner_rest, timed in rows:
        print(
            f"{model:<29} {push:>10.3f} {total:>10.3f} {controller:>11.3f} {runner_rest:>18.3f} {timed:>13.3f}"
        )
    print("floor of the transport, same connection and run:")
    print(f"  ssh exec `true`              {ssh_true_s:.3f} s   (sshd's own per-command cost)")
    print(f"  ssh exec `python -c pass`    {ssh_python_s:.3f} s   (plus the interpreter's start)")


if __name__ == "__main__":
    main()
