"""A lab past this machine: 1,000 devices served by 50 workers, on a real PostgreSQL and
SeaweedFS (tests/servers.py), and `history` and a gate's baseline over 10,000 stored runs.

The devices answer instantly, in this benchmark only: each attempt records at once a
result that says so (status `error`, "answered instantly"), so what is measured is the
lab's own machinery, the workers' real code around the device: procrastinate's fetch with
its per-device lock and priorities, the claim in the index, the device's lease row, the
record, the queue's finish, the heartbeats and sweeps, and each run's assembly and
publication. The workers are processes (forked), each with its own connections, as on
controllers.

Printed:
- claims per second (jobs claimed, over the span from the first claim to the last);
- queue latency p50 / p99: a job's wait from its submission to its claim (a burst of whole
  runs submitted at once: the backlog is part of it);
- database load per job: transactions committed and rows written (pg_stat_database);
- the time to answer `history` (every finished run's result rows from the index) and a
  gate's `latest` baseline over 10,000 stored runs.

    .venv/bin/python benchmarks/lab_scale.py [--devices N] [--workers N] [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_workspace  # noqa: E402
from servers import postgres_server, seaweedfs_server  # noqa: E402

from harness.config import Device, load_inventory, load_plan  # noqa: E402
from harness.lab.attempt import Attempts, failure_record  # noqa: E402
from harness.lab.job_doc import job_from_doc  # noqa: E402
from harness.lab.ledger import Claimed, Ledger  # noqa: E402
from harness.lab.queue import submit  # noqa: E402
from harness.lab.serve import LabWorker  # noqa: E402
from harness.records import JobRecord  # noqa: E402
from harness.scheduler import prepare_plan  # noqa: E402
from harness.shared import SharedStore  # noqa: E402
from harness.shared.index import RunIndex  # noqa: E402

INSTANT = "answered instantly (benchmarks/lab_scale.py: no device)"


class InstantAttempts(Attempts):
    """The real attempt around a device that answers at once."""

    def _attempt(self, ledger: Ledger, claimed: Claimed, device: Device) -> JobRecord | None:
        job = job_from_doc(claimed.spec, lambda sha256, name: Path(name))
        if not self._take_device(ledger, device.name, claimed.run_id):
            return None
        try:
            return failure_record(claimed, job, device, INSTANT)
        finally:
            ledger.release_device(device.name, self.name)


def serve(url: str, site: str, devices: list[str], workspace: str) -> None:
    """One worker process: its devices until the queue has none of their jobs."""
    shared = SharedStore(url, site)
    inventory = load_inventory(Path(workspace) / "devices", {})
    worker = LabWorker(shared, inventory, devices, Path(workspace) / "reports" / "runs",
                       heartbeat_s=10.0, until_idle=True, log=lambda text: None)  # fmt: skip
    worker.attempts = InstantAttempts(
        worker.attempts.shared, inventory, worker.attempts.runs_dir, worker.name, 10.0, worker.stop,
        lambda text: None, worker.tally,
    )  # fmt: skip
    worker.serve()


def database_counters(index: RunIndex) -> tuple[int, int]:
    row = index.transact(
        lambda db: db.execute(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    )
    assert row is not None
    return int(row[0]), int(row[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def store_history(index: RunIndex, runs: int, rows_per_run: int, row: dict) -> None:
    """`runs` finished runs of plan 'nightly' in the index, each with `rows_per_run` result
    rows (a copy of a real row, its keys changed): COPY, as a bulk load would."""

    def work(db) -> None:  # type: ignore[no-untyped-def]
        with db.cursor().copy(
            "COPY harness_runs (run_id, site, plan, status, location, started_at, finished_at)"
            " FROM STDIN"
        ) as copy:
            for i in range(runs):
                stamp = (
                    f"2026-{1 + i // 28 // 28 % 12:02d}-{1 + i // 28 % 28:02d}T{i % 24:02d}:00:00Z"
                )
                copy.write_row((f"hist-{i:05d}", "lab-a", "nightly", "finished",
                                f"s3://harness/lab/run=hist-{i:05d}", stamp, stamp))  # fmt: skip
        with db.cursor().copy(
            "COPY harness_results (run_id, job_id, device, model, variant, status, row) FROM STDIN"
        ) as copy:
            for i in range(runs):
                for j in range(rows_per_run):
                    job_id = f"bench-{j}.digits_cnn.fp32.cpu.t1"
                    data = {**row, "run_id": f"hist-{i:05d}", "job_id": job_id}
                    copy.write_row((f"hist-{i:05d}", job_id, f"bench-{j}", "digits_cnn",
                                    "fp32", "ok", json.dumps(data, default=str)))  # fmt: skip

    index.transact(work)


def main(devices: int, workers: int, runs: int, history_runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="harness-lab-scale-") as scratch, \
            postgres_server(max_connections=500) as pg, seaweedfs_server() as s3:  # fmt: skip
        import os

        os.environ.update(s3.credentials())
        url = pg.new_database("lab_scale")
        index = RunIndex(url)
        index.migrate()
        shared = SharedStore(url, "ci")
        shared.init(s3.objects_url)
        workspace = make_workspace(Path(scratch) / "lab")
        names = [f"dev-{i:04d}" for i in range(devices)]
        for name in names:
            (workspace / "devices" / f"{name}.toml").write_text(
                f'transport = "local"\n[placement]\nworkdir = "{scratch}/{name}"\n'
            )
        plan_path = workspace / "plans" / "nightly.toml"
        plan_path.write_text(
            f'name = "nightly"\ndevices = {json.dumps(names)}\nmodels = ["digits_cnn"]\n'
            'variants = ["fp32"]\n[measure]\niterations = 10\nfidelity_samples = 0\n'
            "[inputs]\ndims = { batch = 1 }\n"
        )
        plan = load_plan(plan_path)
        started = time.perf_counter()
        submitted = [submit(shared, prepare_plan(plan), "nightly").run_id for _ in range(runs)]
        submit_s = (time.perf_counter() - started) / runs
        jobs = devices * runs
        before = database_counters(index)
        share = [names[i::workers] for i in range(workers)]
        context = multiprocessing.get_context("fork")
        processes = [
            context.Process(target=serve, args=(url, f"lab-{i}", share[i], str(workspace)))
            for i in range(workers)
        ]
        served_at = time.perf_counter()
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        served_s = time.perf_counter() - served_at
        after = database_counters(index)
        events = index.transact(
            lambda db: db.execute(
                "SELECT j.id, e.type, e.at FROM procrastinate_events e JOIN procrastinate_jobs j"
                " ON j.id = e.job_id WHERE e.type IN ('deferred', 'started')"
            ).fetchall()
        )
        deferred = {job: at for job, kind, at in events if kind == "deferred"}
        claimed = {job: at for job, kind, at in events if kind == "started"}
        latency = [(claimed[j] - deferred[j]).total_seconds() for j in claimed]
        span = (max(claimed.values()) - min(claimed.values())).total_seconds()
        finished = [r for r in index.runs(status="finished") if r["run_id"] in submitted]
        assert len(claimed) == jobs and len(finished) == runs, (len(claimed), len(finished))

        # history and a gate's baseline over many stored runs
        row = index.result_rows("nightly")[0]
        store_history(index, history_runs, 4, row)
        timings = {}
        for what, call in (
            ("history (every result row)", lambda: shared.history_frame("nightly")),
            ("gate baseline = latest", lambda: index.runs(plan="nightly", status="finished")[-1]),
        ):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
            timings[what] = statistics.median(times)
        stored = len(index.runs(status="finished"))
        rows = len(index.result_rows("nightly"))
        index.close()

    print(f"lab of {devices} devices, {workers} worker processes, {runs} run(s) of one job per "
          f"device submitted at once ({jobs} jobs); devices answer instantly")  # fmt: skip
    print(f"{'figure':44} {'value':>12}")
    print(f"{'submit, per run (build, upload, queue)':44} {submit_s:>10.2f} s")
    print(f"{'serve, wall (all workers, start to end)':44} {served_s:>10.2f} s")
    print(f"{'claims per second':44} {len(claimed) / span if span else float('nan'):>12.1f}")
    print(f"{'queue latency p50 (submitted -> claimed)':44} {percentile(latency, 0.5):>10.2f} s")
    print(f"{'queue latency p99':44} {percentile(latency, 0.99):>10.2f} s")
    print(f"{'database transactions per job':44} {(after[0] - before[0]) / jobs:>12.1f}")
    print(f"{'database rows written per job':44} {(after[1] - before[1]) / jobs:>12.1f}")
    print(f"over {stored} stored runs ({rows} result rows):")
    for what, seconds in timings.items():
        print(f"  {what:42} {seconds:>10.3f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--history-runs", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="20 devices, 4 workers (seconds)")
    options = parser.parse_args()
    if options.quick:
        main(20, 4, 1, 200)
    else:
        main(options.devices, options.workers, options.runs, options.history_runs)
