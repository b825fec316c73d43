"""The run directory: append-only, written atomically, readable after a crash.

    reports/runs/<run_id>/
        run.json              plan, inventory (no secrets), controller versions, git commit
        jobs/<job_id>.json    one JobRecord, written the moment its job ends; never rewritten
        results.parquet       one row per job (derived from jobs/)
        samples.parquet       every timed latency (derived from jobs/)
        power.parquet         every power reading of jobs on devices with a power source
        comparisons.parquet   one row per paired job (a variant beside fp32, in-process)
        profile.parquet       one row per profiled node (profile jobs)

The job files are the source of truth; the parquet files are views rebuilt from them
(harness/tables.py), so a run killed half way is read from its job files. Reading runs back
— one, a history of them, a device's calibration — is this module's too, so that what
decides over them (history, gate, report) takes frames and never opens a file.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.comparisons import COMPARISONS_SCHEMA_VERSION
from harness.dataset_export import dataset_root
from harness.errors import StoreError, StoreFull
from harness.job_key import view_of
from harness.records import RESUMABLE_STATUSES, JobRecord
from harness.rows import RESULTS_SCHEMA_VERSION
from harness.stored_files import read_view, refuse_newer, write_error, write_json_atomic
from harness.stored_run import Run, RunMeta
from harness.tables import (
    COMPARISON_COLUMN_TYPES,
    POWER_COLUMN_TYPES,
    PROFILE_COLUMN_TYPES,
    RESULT_COLUMN_TYPES,
    SAMPLE_COLUMN_TYPES,
    comparisons_frame,
    power_frame,
    profile_frame,
    results_frame,
    samples_frame,
    write_parquet_atomic,
)

if TYPE_CHECKING:
    import pandas as pd

# harness.run/1: plan, devices (flat, as their files were), versions, commit, shards
# harness.run/2: each device recorded in its sections (connection, placement, power,
#                thermal, retry), as config.Device holds it; nothing reads those fields back
RUN_SCHEMA = "harness.run/2"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(plan_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{plan_name}-{secrets.token_hex(2)}"


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.jobs_dir = self.run_dir / "jobs"

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @classmethod
    def create(cls, output_dir: Path, plan_name: str) -> RunStore:
        output_dir.mkdir(parents=True, exist_ok=True)
        run_dir = output_dir / new_run_id(plan_name)
        (run_dir / "jobs").mkdir(parents=True)
        return cls(run_dir)

    def begin(self, meta: RunMeta) -> None:
        """run.json of a new run: what it will run, on what, with which controller."""
        self._write_meta(meta)

    def mark_resumed(self) -> None:
        """A run taken up again (`--resume`): unfinished again, and when it was resumed."""
        meta = self.read_run_meta()
        meta.pop("finished_at", None)
        meta["resumed_at"] = [*meta.get("resumed_at", []), utc_now()]
        self._write_meta(meta)

    def mark_finished(self) -> None:
        """Every job of the run ended: when, and how many of each status."""
        meta = self.read_run_meta()
        statuses = [r.status for r in self.records()]
        meta["finished_at"] = utc_now()
        meta["status_counts"] = {s: statuses.count(s) for s in sorted(set(statuses))}
        self._write_meta(meta)

    def _write_meta(self, meta: RunMeta) -> None:
        """The one writer of run.json."""
        meta = meta.copy()
        meta["schema"] = RUN_SCHEMA
        write_json_atomic(self.run_dir / "run.json", meta)

    def read_run_meta(self) -> RunMeta:
        path = self.run_dir / "run.json"
        if not path.is_file():
            return {}
        try:
            data: RunMeta = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"{path} is unreadable ({exc}): the run's jobs/ are intact; restore run.json "
                "from a backup, or delete it to read the run as one that did not finish"
            ) from None
        refuse_newer(path, data.get("schema"), RUN_SCHEMA)
        return data

    def write_job(self, record: JobRecord) -> Path:
        """Persist one finished job now; a job is written once and never overwritten. A
        `skipped` or `interrupted` record is not a result: a resumed run replaces it
        (keeping it under jobs/superseded/ for the record)."""
        path = self.jobs_dir / f"{record.job_id}.json"
        if path.exists():
            if _status_of(path) not in RESUMABLE_STATUSES:
                raise StoreError(f"{path} exists already: results are never overwritten")
            kept = self.jobs_dir / "superseded"
            kept.mkdir(exist_ok=True)
            path.replace(kept / f"{record.job_id}.{len(list(kept.glob('*.json')))}.json")
        data = record.to_json()
        try:
            write_json_atomic(path, data)
        except StoreFull as exc:
            raise StoreFull(f"{exc}. {self._resume_note(record.job_id, data)}") from None
        return path

    def _resume_note(self, job_id: str, data: dict[str, Any]) -> str:
        """What a full disk cost and how to go on: the room the rest needs (this record's
        size per job left, thrice for the tables at the end: an estimate), how to resume."""
        left = max(len(set(self.read_run_meta().get("jobs", [])) - self.finished_job_ids()), 1)
        needed_mb = len(json.dumps(data, indent=1)) * left * 3 / 1e6 + 1
        return (
            f"Every job finished before is in {os.path.normpath(self.jobs_dir)}; job {job_id} "
            f"is not recorded. Free about {needed_mb:.0f} MB there (an estimate for the {left} "
            f"job(s) left), then `harness run PLAN --resume {self.run_id}` runs it and the rest"
        )

    def finished_job_ids(self) -> set[str]:
        """Jobs with a result (ok, error or timeout); skipped and interrupted jobs are run
        by --resume."""
        return {
            p.stem for p in self.jobs_dir.glob("*.json") if _status_of(p) not in RESUMABLE_STATUSES
        }

    def records(self) -> list[JobRecord]:
        records = []
        for path in sorted(self.jobs_dir.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise StoreError(
                    f"{path}: unreadable job record ({exc}); `harness run PLAN --resume "
                    f"{self.run_id}` sets it aside and runs its job again"
                ) from None
            records.append(JobRecord.from_json(data, source=str(path)))
        return sorted(records, key=lambda r: (r.started_at, r.job_id))  # job order

    def set_aside_unreadable(self) -> list[tuple[Path, Path]]:
        """Move job records that cannot be read (cut short by a crash) to jobs/unreadable/,
        so that --resume runs their jobs again; returns (record, where it went) pairs."""
        moved = []
        for path in sorted(self.jobs_dir.glob("*.json")):
            try:
                JobRecord.from_json(json.loads(path.read_text()), source=str(path))
            except (UnicodeDecodeError, json.JSONDecodeError, StoreError, TypeError, ValueError):
                aside = self.jobs_dir / "unreadable"
                aside.mkdir(exist_ok=True)
                target = aside / f"{path.stem}.{len(list(aside.glob('*.json')))}.json"
                path.replace(target)
                moved.append((path, target))
        return moved

    def finalize(self) -> None:
        """Write the parquet views from the job records, each with its explicit schema,
        then the run's part of the dataset of every run (harness/dataset_export.py)."""
        from harness.dataset_export import export_run

        records = self.records()
        frames = {
            "results": results_frame(records),
            "samples": samples_frame(records),
            "power": power_frame(records),
            "comparisons": comparisons_frame(records),
        }
        for frame, name, types in (
            (frames["results"], view_of("solo"), RESULT_COLUMN_TYPES),
            (frames["samples"], "samples.parquet", SAMPLE_COLUMN_TYPES),
            (frames["power"], "power.parquet", POWER_COLUMN_TYPES),
            (frames["comparisons"], view_of("paired"), COMPARISON_COLUMN_TYPES),
            (profile_frame(records), view_of("profile"), PROFILE_COLUMN_TYPES),
        ):
            path = self.run_dir / name
            try:
                write_parquet_atomic(frame, path, types)
            except OSError as exc:
                raise write_error(path, exc) from None
        try:
            export_run(self.run_dir, self.read_run_meta(), frames)
        except OSError as exc:
            raise write_error(dataset_root(self.run_dir), exc) from None

    def stored_frames(self, notes: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The parquet views of a finished run, read as written (fast for long histories);
        rebuilt from the job records when the run did not finish, or when a view cannot
        be read (then `notes` gets why)."""
        import pandas as pd

        results, samples = self.run_dir / "results.parquet", self.run_dir / "samples.parquet"
        if self.read_run_meta().get("finished_at") and results.is_file() and samples.is_file():
            try:
                return read_view(results, RESULTS_SCHEMA_VERSION), pd.read_parquet(samples)
            except (OSError, ValueError) as exc:  # pyarrow's errors are both
                if notes is not None:
                    notes.append(
                        f"{self.run_id}: results.parquet unreadable ({_first_line(exc)}); "
                        "rebuilt from its job records"
                    )
        return self.frames()

    def power(self) -> pd.DataFrame:
        """power.parquet of a finished run, else rebuilt from the job records."""

        path = self.run_dir / "power.parquet"
        if self.read_run_meta().get("finished_at") and path.is_file():
            return read_view(path)
        return power_frame(self.records())

    def comparisons(self) -> pd.DataFrame:
        """comparisons.parquet (paired jobs) of a finished run, else rebuilt from its records."""

        path = self.run_dir / "comparisons.parquet"
        if self.read_run_meta().get("finished_at") and path.is_file():
            return read_view(path, COMPARISONS_SCHEMA_VERSION)
        return comparisons_frame(self.records())

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        records = self.records()
        return results_frame(records), samples_frame(records)

    def load(self) -> Run:
        """The run read once: its job records, and its frames from the parquet views of a
        finished run (the bootstrap intervals are not computed again), else built from the
        records (a run that did not finish, a view that cannot be read)."""
        import pandas as pd

        records = self.records()
        meta = self.read_run_meta()
        results = self.run_dir / "results.parquet"
        samples = self.run_dir / "samples.parquet"
        frames = None
        if meta.get("finished_at") and results.is_file() and samples.is_file():
            try:
                frames = read_view(results, RESULTS_SCHEMA_VERSION), pd.read_parquet(samples)
            except (OSError, ValueError):  # rebuilt below, as an unfinished run is
                frames = None
        if frames is None or len(frames[0]) != sum(r.kind == "solo" for r in records):
            frames = results_frame(records), samples_frame(records)
        return Run(self.run_id, self.run_dir, meta, tuple(records), frames[0], frames[1],
                   self.comparisons(), self.power())  # fmt: skip


def merge_runs(stores: list[RunStore], output_dir: Path) -> RunStore:
    """One run from several (the shards of a plan run on several controllers): every job
    record, re-labelled with the new run's id; run.json says where each came from. A job
    found in two runs keeps its result over a `skipped` record; two results of one job are
    refused (merging must never pick a number silently)."""
    for store in stores:
        if not (store.run_dir / "run.json").is_file():
            raise StoreError(
                f"{store.run_dir / 'run.json'} is missing: without it the run's plan and shard "
                "are unknown, so it cannot be merged. Restore run.json from the controller "
                f"that ran it; `harness show {store.run_dir}` still reads its jobs"
            )
    metas = [store.read_run_meta() for store in stores]
    plans = {str((meta.get("plan") or {}).get("name")) for meta in metas}
    if len(plans) != 1:
        raise StoreError(
            f"these runs come from different plans ({sorted(plans)}); merge one plan's shards"
        )
    chosen: dict[str, tuple[JobRecord, str]] = {}
    for store in stores:
        for record in store.records():
            held = chosen.get(record.job_id)
            if held is None or held[0].status in RESUMABLE_STATUSES:
                chosen[record.job_id] = (record, store.run_id)
            elif record.status not in RESUMABLE_STATUSES:
                raise StoreError(
                    f"job {record.job_id} has a result in both {held[1]} and {store.run_id}; "
                    "merge runs of disjoint shards"
                )
    merged = RunStore.create(output_dir, plans.pop())
    for record, _ in sorted(chosen.values(), key=lambda item: item[0].job_id):
        merged.write_job(replace(record, run_id=merged.run_id))
    meta = metas[0].copy()
    meta.pop("shard", None)
    meta["run_id"] = merged.run_id
    meta["merged_from"] = {
        store.run_id: m.get("shard") for store, m in zip(stores, metas, strict=True)
    }
    meta["jobs"] = sorted({j for m in metas for j in m.get("jobs", [])})
    meta["devices"] = {k: v for m in metas for k, v in (m.get("devices") or {}).items()}
    ended = [m.get("finished_at") for m in metas]  # finished when every shard finished
    meta["finished_at"] = max(e for e in ended if e) if all(ended) else None
    merged.begin(meta)
    merged.finalize()
    return merged


def resolve_run(output_dir: Path, ref: str) -> RunStore:
    """`latest`, a run id under output_dir, or a path to a run directory."""
    if ref == "latest":
        runs = sorted(p for p in output_dir.glob("*") if (p / "jobs").is_dir())
        if not runs:
            raise StoreError(f"no runs under {output_dir}; start one with `harness run PLAN`")
        return RunStore(runs[-1])
    for candidate in (Path(ref), output_dir / ref):
        if (candidate / "jobs").is_dir():
            return RunStore(candidate)
    raise StoreError(f"no run '{ref}' (looked for {ref} and {output_dir / ref})")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _status_of(path: Path) -> str | None:
    try:
        status = json.loads(path.read_text()).get("status")
    except (OSError, json.JSONDecodeError):
        return None
    return str(status) if status is not None else None


def run_dirs(sources: Iterable[str | Path]) -> list[Path]:
    """Run directories from folders of runs, single run folders, or glob patterns."""
    found: list[Path] = []
    for source in sources:
        for match in sorted(glob.glob(str(source))) or [str(source)]:
            path = Path(match)
            if (path / "jobs").is_dir():
                found.append(path)
            elif path.is_dir():
                found += sorted(p for p in path.iterdir() if (p / "jobs").is_dir())
    if not found:
        raise StoreError(f"no run directories in {', '.join(map(str, sources))}")
    return sorted(set(found), key=lambda p: p.name)


def load_history(
    sources: Iterable[str | Path], with_samples: bool = False, notes: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Every run's tables stacked (the `results.parquet` columns, a row per job per run).
    A run that cannot be read (its tables and its job records) is left out, and `notes`
    says which and why: one bad run must not hide the history of the others."""
    import pandas as pd

    results, samples = [], []
    for path in run_dirs(sources):
        try:
            run_results, run_samples = RunStore(path).stored_frames(notes)
        except StoreError as exc:
            if notes is not None:
                notes.append(f"{path.name} skipped: {exc}")
            continue
        results.append(run_results)
        if with_samples:
            samples.append(run_samples)
    if not results:
        raise StoreError(f"no readable run in {', '.join(map(str, sources))}")
    frame = pd.concat(results, ignore_index=True)
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    return frame, (pd.concat(samples, ignore_index=True) if with_samples else None)
