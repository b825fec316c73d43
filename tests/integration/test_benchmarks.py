"""Every script under benchmarks/ runs in its --quick mode and prints its table, so none
can rot unnoticed. The figures themselves are not checked here: they are measurements,
kept in benchmarks/README.md, not assertions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from netlab import can_make_namespaces

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# each script, and a line of the table it prints
TABLES = {
    "cli_startup.py": "x python -c pass",
    "fidelity.py": "process spread",
    "overhead.py": "exec's start budget",
    "strategies.py": "speedup",
    "regression_detection.py": "false positives",
    "fleet.py": "controller CPU per job",
    "real_models.py": "effect, or why not",
    "profiling.py": "profiled run ms",
    "report_size.py": "report.html, MB",
    "tune.py": "NNCF quantize_with_accuracy_control",
    "lab_scale.py": "claims per second",
}


def test_every_script_is_smoke_tested() -> None:
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(TABLES)


@pytest.mark.parametrize("script", sorted(TABLES))
def test_benchmark_runs_in_quick_mode(script: str) -> None:
    if script == "fleet.py" and can_make_namespaces():
        pytest.skip(f"the namespace lab cannot run here: {can_make_namespaces()}")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert TABLES[script] in done.stdout, done.stdout[-3000:]
