"""`harness --help` wall time, and beside it `python -c pass` (target: <= 6x): pandas,
onnxruntime, paramiko, pydantic, altair and vl-convert must be imported lazily, inside the
commands that need them. A group's help and `--version` are timed too.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HARNESS = Path(sys.executable).parent / "harness"


def wall_s(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: checks the script runs (the tests)"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "harness --help": [str(HARNESS), "--help"],
        "harness devices --help": [str(HARNESS), "devices", "--help"],
        "harness run --help": [str(HARNESS), "run", "--help"],
        "harness --version": [str(HARNESS), "--version"],
        "import pandas (for scale)": [sys.executable, "-c", "import pandas"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):  # interleaved
        for name, argv in commands.items():
            times[name].append(wall_s(argv))
    floor = statistics.median(times["python -c pass"])
    print(f"{'command':<28} {'median s':>9} {'min s':>7} {'x python -c pass':>17}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<28} {median:>9.3f} {min(values):>7.3f} {median / floor:>16.1f}x")


if __name__ == "__main__":
    main()
