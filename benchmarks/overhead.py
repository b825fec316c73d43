"""Per-job cost outside the timed window: a persistent runner (a forked child per job)
beside exec-per-job (a runner process per job), measured side by side in one run, on the
local device and over loopback SSH.

Each (device, model, mode) is one job of 1 + --jobs processes in one device session: the
first process is cold (the runner and model pushed; in the persistent mode the runner is
started), the others warm. Per warm process:

- job total: the controller's attempt (pushes checked, spec written, the process, its
  document read and checked);
- controller: the job total less the runner's own wall time (the target: <= 0.05 s
  persistent; exec-per-job pays the command's start and the interpreter here);
- runner start: from the process's start to the model's load. Persistent: from the fork
  (the runner's own `start_ms`). Exec: the interpreter's start and the runner's imports,
  timed as a bare command over the same connection (the runner's modules imported, less
  the transport's `true`), plus the runner's `start_ms` from its main(). (The wall time
  before main() seen from the controller also holds the process's teardown: not used);
- load and timed window: the model's load, the timed loop.

    .venv/bin/python benchmarks/overhead.py [--jobs 10] [--iterations 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from _setup import ROOT, bench_devices

MODES = ("exec", "persistent")
MODELS = ("tiny_mbv2", "face_detection_short_range")
DEVICES = ("local", "loopback")


RUNNER_IMPORTS = (
    f"import sys; sys.path.insert(0, {str(ROOT / 'harness' / 'runner')!r}); import run, measure"
)


def process_parts(record, exec_start_s: float) -> list[dict[str, float]]:
    """Each process's figures (seconds), from the pooled record's per-process notes;
    `exec_start_s`: an exec'd runner's start before its main()."""
    controller = record.controller
    processes = record.runner["processes"]
    parts, offset = [], 0
    for index, process in enumerate(processes):
        timed_s = sum(record.latencies_ns[offset : offset + process["n"]]) / 1e9
        offset += process["n"]
        total_s = controller["total_s_per_process"][index]
        wall_s = process["wall_ms"] / 1e3
        forked = record.runner.get("process") == "forked"
        parts.append(
            {
                "total": total_s,
                "controller": total_s - wall_s,
                "start": process["start_ms"] / 1e3 + (0.0 if forked else exec_start_s),
                "load": process["load_ms"] / 1e3,
                "timed": timed_s,
            }
        )
    return parts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10, help="warm processes per job")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: checks the script runs (the tests)"
    )
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.iterations = 1, 20
    models = MODELS[:1] if args.quick else MODELS
    rows = []
    with tempfile.TemporaryDirectory() as tmp, bench_devices(Path(tmp)) as bench:
        floors = {
            device: {
                "true": bench.exec_s(device, ["true"]),
                "pass": bench.exec_s(device, [sys.executable, "-c", "pass"]),
                "imports": bench.exec_s(
                    device, [sys.executable, "-c", "import numpy, onnxruntime"]
                ),
                "runner": bench.exec_s(device, [sys.executable, "-c", RUNNER_IMPORTS]),
            }
            for device in DEVICES
        }
        for device in DEVICES:
            for model in models:
                for mode in MODES:
                    record = bench.run(
                        device, model, args.iterations, warmup=5,
                        processes=args.jobs + 1, runner_mode=mode,
                    )  # fmt: skip
                    expected = "forked" if mode == "persistent" else "exec"
                    assert record.runner.get("process") == expected, record.runner.get("process")
                    floor = floors[device]
                    parts = process_parts(record, floor["runner"] - floor["true"])
                    first, warm = parts[0], parts[1:]
                    median = {k: statistics.median(p[k] for p in warm) for k in first}
                    rows.append((device, model, mode, first["total"] - median["total"], median))
    print(
        f"{args.jobs} warm processes per job after one cold one, {args.iterations} timed "
        "iterations each; seconds per process (median of the warm ones)"
    )
    print(
        f"{'device':<9} {'model':<27} {'mode':<11} {'first+':>7} {'total':>7} "
        f"{'controller':>10} {'start':>7} {'load':>7} {'timed':>7}"
    )
    for device, model, mode, first_extra, m in rows:
        print(
            f"{device:<9} {model:<27} {mode:<11} {first_extra:>7.3f} {m['total']:>7.3f} "
            f"{m['controller']:>10.3f} {m['start']:>7.3f} {m['load']:>7.3f} {m['timed']:>7.3f}"
        )
    print("floors, same run (seconds; a command over the open connection):")
    for device, floor in floors.items():
        interpreter = floor["pass"] - floor["true"]
        runtime_import = floor["imports"] - floor["pass"]
        print(
            f"  {device:<9} exec `true` {floor['true']:.3f}; beyond it python -c pass "
            f"{interpreter:.3f}, then import numpy+onnxruntime {runtime_import:.3f}: exec's "
            f"start budget {interpreter + runtime_import:.3f} (the runner's imports "
            f"{floor['runner'] - floor['pass']:.3f})"
        )
    print(
        "targets: persistent controller <= 0.05, start <= 0.05, total <= 0.35; exec "
        "controller <= 0.25, start <= python -c pass + the imports (both beyond `true`)"
    )


if __name__ == "__main__":
    main()
