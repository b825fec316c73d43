"""`harness --help` wall time (target <= 0.3 s): pandas, onnxruntime, paramiko, altair and
vl-convert must be imported lazily, inside the commands that need them.

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
        "import pandas (for scale)": [sys.executable, "-c", "import pandas"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):  # interleaved
        for name, argv in commands.items():
            times[name].append(wall_s(argv))
    print(f"{'command':<28} {'median s':>9} {'min s':>7}")
    for name, values in times.items():
        print(f"{name:<28} {statistics.median(values):>9.3f} {min(values):>7.3f}")


if __name__ == "__main__":
    main()
