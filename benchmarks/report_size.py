"""The report of a 100-job nightly: the page's size and the time and memory to write it,
against the targets (≤ 1.5 MB, ≤ 5 s).

The jobs are real: one real run of the digits CNN's seven variants on the local device,
whose job records (samples, runner documents, quality) are then given out to 5 devices x
3 models x 7 variants (105 jobs), each copy with its own latencies (the real samples
scaled by a per-device factor), so the report has a lab's shape without a lab's hours.
`report.html` then holds no raw sample: distributions are drawn from quantiles and the
charts' data is in CSV files beside the page. The first report on a machine also bundles
Vega's scripts (vl-convert, ~1.5 s), kept in ~/.cache/edge-harness for every later one.

    .venv/bin/python benchmarks/report_size.py [--devices 5] [--models 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
import time
from pathlib import Path

from _setup import ROOT

from harness.scheduler import prepare_run, run_prepared
from harness.store import RunStore

TARGET_MB, TARGET_S = 1.5, 5.0


def real_records(folder: Path, quick: bool) -> list:
    plan = folder / "seed.toml"
    plan.write_text(
        f'name = "seed"\ndevices = ["local"]\nmodels = ["digits_cnn"]\n'
        f'devices_dir = "{ROOT / "devices"}"\nmodels_dir = "{ROOT / "models"}"\n'
        f'output_dir = "{folder / "runs"}"\n[measure]\nwarmup = 10\n'
        f"iterations = {200 if quick else 1500}\nprocesses = 1\n[inputs]\ndims = {{ batch = 1 }}\n"
    )
    prepared = prepare_run(plan)
    records = run_prepared(prepared)
    assert all(r.status == "ok" for r in records), [r.error for r in records]
    return records


def lab_run(folder: Path, seeds: list, devices: int, models: int) -> RunStore:
    """`seeds` given out to devices x models, each device a little slower than the last."""
    store = RunStore.create(folder / "runs", "nightly")
    store.begin(
        {"run_id": store.run_id, "started_at": seeds[0].started_at, "plan": {"name": "nightly"}}
    )
    for d in range(devices):
        for m in range(models):
            for seed in seeds:
                device, model = f"bench-{d + 1:02d}", f"model_{m + 1}"
                factor = 1 + 0.35 * d + 0.1 * m
                store.write_job(
                    dataclasses.replace(
                        seed,
                        run_id=store.run_id,
                        job_id=f"{device}.{model}.{seed.variant}.cpu.t1",
                        device=device,
                        model=model,
                        latencies_ns=tuple(int(v * factor) for v in seed.latencies_ns),
                    )
                )
    store.finalize()
    store.mark_finished()
    return store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer jobs and samples")
    args = parser.parse_args()
    if args.quick:
        args.devices, args.models = 2, 1
    from harness.report.document import write_report

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seeds = real_records(folder, args.quick)
        store = lab_run(folder, seeds, args.devices, args.models)
        os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # no JavaScript bundle cached yet
        started = time.perf_counter()
        run = store.load()
        loaded = time.perf_counter()
        write_report(run)
        first = time.perf_counter()
        files = write_report(run)  # the bundle now cached, as for every report after the first
        written = time.perf_counter()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        jobs, samples = len(run.results), len(run.samples)
        size_mb = files.html.stat().st_size / 2**20
        plots_mb = sum(p.stat().st_size for p in (files.html.parent / "plots").iterdir()) / 2**20
        summary_kb = files.markdown.stat().st_size / 1024
    rows = [
        ("jobs (samples)", f"{jobs} ({samples})", ""),
        ("report.html, MB", f"{size_mb:.2f}", f"<= {TARGET_MB}"),
        ("plots/ (PNG, SVG, CSV), MB", f"{plots_mb:.2f}", ""),
        ("summary.md, KB", f"{summary_kb:.1f}", "< 64"),
        ("load the run, s", f"{loaded - started:.2f}", ""),
        ("write it, first on the machine, s", f"{first - loaded:.2f}", ""),
        ("write it (scripts cached), s", f"{written - first:.2f}", f"<= {TARGET_S}"),
        ("peak RSS of this process, MB", f"{rss_mb:.0f}", ""),
    ]
    print(f"{'measure':32} {'value':>16}  target")
    for name, value, target in rows:
        print(f"{name:32} {value:>16}  {target}")


if __name__ == "__main__":
    main()
