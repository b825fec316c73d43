"""A fleet of 16 devices at once: 16 network namespaces, each with its own real sshd
(tests/netlab.py), each running a short job set. Two figures, measured in one run:

- the run's wall time against the slowest single device's wall time inside it (target
  <= 1.25x: the devices really run in parallel, the controller adds little on top);
- the controller's own CPU time per job (target <= 50 ms): this process's CPU time
  during the run (paramiko, threads, leases, records, parquet) divided by the jobs; the
  runners on the devices are excluded (they are sshd's children in their namespaces), and
  the one-time imports of pandas and scipy are shown apart (a cost per controller start).

Needs root (network namespaces). Run after `make models`:
    .venv/bin/python benchmarks/fleet.py [DEVICES] [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from netlab import can_make_namespaces, netlab  # noqa: E402

from harness.scheduler import JobEvent, prepare_run, run_prepared  # noqa: E402

MODELS = ["tiny_mbv2"]
THREADS = [1, 2]
ITERATIONS = 30


def main(count: int) -> None:
    reason = can_make_namespaces()
    if reason:
        sys.exit(f"cannot build the namespace lab: {reason}")
    with tempfile.TemporaryDirectory(prefix="harness-fleet-") as scratch:
        workspace = Path(scratch)
        (workspace / "lab").mkdir()
        (workspace / "devices").mkdir()
        (workspace / "plans").mkdir()
        with netlab(workspace / "lab", count) as lab:
            names = []
            for device in lab.devices:
                name = f"dev{device.index:02d}"
                (workspace / "devices" / f"{name}.toml").write_text(device.device_toml(lab, name))
                names.append(name)
            plan = workspace / "plans" / "fleet.toml"
            plan.write_text(
                f'name = "fleet"\ndevices = {names!r}\nmodels = {MODELS!r}\n'
                f'models_dir = "{ROOT / "models"}"\nvariants = ["fp32"]\n'
                f"[measure]\nwarmup = 2\niterations = {ITERATIONS}\n"
                f"[runtime]\nthreads = {THREADS!r}\n[inputs]\ndims = {{ batch = 1 }}\n"
            )
            imports_cpu = time.process_time()
            import pandas  # noqa: F401 -- the controller's one-time imports, counted apart
            import scipy.stats  # noqa: F401

            imports_cpu = time.process_time() - imports_cpu
            prepared = prepare_run(plan)
            first_seen: dict[str, float] = {}
            last_seen: dict[str, float] = {}

            def on_event(event: JobEvent) -> None:
                now = time.perf_counter()
                first_seen.setdefault(event.device, now)
                last_seen[event.device] = now

            cpu_start = time.process_time()
            wall_start = time.perf_counter()
            records = run_prepared(prepared, on_event=on_event)
            wall_s = time.perf_counter() - wall_start
            cpu_s = time.process_time() - cpu_start
    failed = [r for r in records if r.status != "ok"]
    device_s = {d: last_seen[d] - wall_start for d in last_seen}  # from the run's start
    slowest = max(device_s, key=lambda d: device_s[d])
    print(f"{count} namespace devices x {len(MODELS) * len(THREADS)} jobs "
          f"({ITERATIONS} iterations), {len(records)} jobs, {len(failed)} not ok")  # fmt: skip
    print(f"{'figure':44} {'value':>10} {'target':>10}")
    print(f"{'run wall time (s)':44} {wall_s:10.2f}")
    print(f"{'slowest device, start to last job (s): ' + slowest:44} {device_s[slowest]:10.2f}")
    print(f"{'run / slowest device':44} {wall_s / device_s[slowest]:10.3f} {'<= 1.25':>10}")
    print(f"{'controller CPU per job (ms)':44} {1000 * cpu_s / len(records):10.1f} {'<= 50':>10}")
    print(f"{'  + one-time imports (pandas, scipy), ms':44} {1000 * imports_cpu:10.1f}")
    for record in failed:
        print(f"  {record.job_id}: {record.status}: {record.error}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("devices", type=int, nargs="?", default=16)
    parser.add_argument(
        "--quick", action="store_true", help="2 devices: checks the script runs (the tests)"
    )
    args = parser.parse_args()
    main(2 if args.quick else args.devices)
