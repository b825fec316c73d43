"""The run directory: append-only, written atomically, readable after a crash.

    reports/runs/<run_id>/
        run.json              plan, inventory (no secrets), controller versions, git commit
        jobs/<job_id>.json    one JobRecord, written the moment its job ends; never rewritten
        results.parquet       one row per job (derived from jobs/)
        samples.parquet       every timed latency (derived from jobs/)
        power.parquet         every power reading of jobs on devices with a power source

The job files are the source of truth; the parquet files are views rebuilt from them, so a
run killed half way is read from its job files.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import StoreError
from harness.records import (
    RESULT_COLUMN_TYPES,
    RESULT_COLUMNS,
    RESUMABLE_STATUSES,
    JobRecord,
    fill_reference_metrics,
    result_row,
)

if TYPE_CHECKING:
    import pandas as pd

RUN_SCHEMA = "harness.run/1"
SAMPLE_COLUMN_TYPES = {"run_id": "string", "job_id": "string", "process": "int64",
                       "iteration": "int64", "latency_ns": "int64"}  # fmt: skip
POWER_COLUMN_TYPES = {"run_id": "string", "job_id": "string", "t_s": "float64",
                      "power_w": "float64", "phase": "string", "window_s": "float64"}  # fmt: skip
# the pandas dtype of each column type (nullable where a column may be missing values)
_PANDAS_TYPES = {"int64": "Int64", "float64": "float64", "bool": "boolean", "string": "object"}


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

    def write_run_meta(self, meta: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / "run.json", {"schema": RUN_SCHEMA, **meta})

    def read_run_meta(self) -> dict[str, Any]:
        path = self.run_dir / "run.json"
        if not path.is_file():
            return {}
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"{path} is unreadable ({exc}): the run's jobs/ are intact; restore run.json "
                "from a backup, or delete it to read the run as one that did not finish"
            ) from None
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
        write_json_atomic(path, record.to_json())
        return path

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

    def set_aside_unreadable(self) -> list[Path]:
        """Move job records that cannot be read (cut short by a crash) to jobs/unreadable/,
        so that --resume runs their jobs again; returns where they went."""
        moved = []
        for path in sorted(self.jobs_dir.glob("*.json")):
            try:
                JobRecord.from_json(json.loads(path.read_text()), source=str(path))
            except (UnicodeDecodeError, json.JSONDecodeError, StoreError, TypeError, ValueError):
                aside = self.jobs_dir / "unreadable"
                aside.mkdir(exist_ok=True)
                target = aside / f"{path.stem}.{len(list(aside.glob('*.json')))}.json"
                path.replace(target)
                moved.append(target)
        return moved

    def finalize(self) -> None:
        """Write the parquet views from the job records, each with its explicit schema."""
        records = self.records()
        for frame, name, types in (
            (results_frame(records), "results.parquet", RESULT_COLUMN_TYPES),
            (samples_frame(records), "samples.parquet", SAMPLE_COLUMN_TYPES),
            (power_frame(records), "power.parquet", POWER_COLUMN_TYPES),
        ):
            _write_parquet_atomic(frame, self.run_dir / name, types)

    def stored_frames(self, notes: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The parquet views of a finished run, read as written (fast for long histories);
        rebuilt from the job records when the run did not finish, or when a view cannot
        be read (then `notes` gets why)."""
        import pandas as pd

        results, samples = self.run_dir / "results.parquet", self.run_dir / "samples.parquet"
        if self.read_run_meta().get("finished_at") and results.is_file() and samples.is_file():
            try:
                return pd.read_parquet(results), pd.read_parquet(samples)
            except (OSError, ValueError) as exc:  # pyarrow's errors are both
                if notes is not None:
                    notes.append(
                        f"{self.run_id}: results.parquet unreadable ({_first_line(exc)}); "
                        "rebuilt from its job records"
                    )
        return self.frames()

    def power(self) -> pd.DataFrame:
        """power.parquet of a finished run, else rebuilt from the job records."""
        import pandas as pd

        path = self.run_dir / "power.parquet"
        if self.read_run_meta().get("finished_at") and path.is_file():
            return pd.read_parquet(path)
        return power_frame(self.records())

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        records = self.records()
        return results_frame(records), samples_frame(records)


def results_frame(records: list[JobRecord]) -> pd.DataFrame:
    import pandas as pd

    rows = [result_row(r) for r in records]
    fill_reference_metrics(rows, records)
    return _typed(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)), RESULT_COLUMN_TYPES)


def samples_frame(records: list[JobRecord]) -> pd.DataFrame:
    """Every timed latency: run, job, the runner process it came from (0-based, in the
    order the processes ran) and its iteration within the job."""
    import numpy as np
    import pandas as pd

    parts = [
        pd.DataFrame(
            {
                "run_id": r.run_id,
                "job_id": r.job_id,
                "process": _process_index(r),
                "iteration": np.arange(len(r.latencies_ns), dtype=np.int64),
                "latency_ns": np.asarray(r.latencies_ns, dtype=np.int64),
            }
        )
        for r in records
        if r.latencies_ns
    ]
    if not parts:
        return _typed(pd.DataFrame(columns=list(SAMPLE_COLUMN_TYPES)), SAMPLE_COLUMN_TYPES)
    return pd.concat(parts, ignore_index=True)


def power_frame(records: list[JobRecord]) -> pd.DataFrame:
    """Every job's power trace: seconds from the start of its timed window (negative
    before it), watts, the phase ('idle' baseline, 'timed' window, or 'other': the model
    load, first inference and warm-up) and the timed window's length."""
    import pandas as pd

    from harness.probes.power import PowerParseError, power_trace

    rows = []
    for record in records:
        power = record.runner.get("power") or {}
        window = power.get("timed_window_ns")
        if record.status != "ok" or not window:
            continue
        try:
            trace = power_trace(power["source"], power.get("samples") or [])
        except PowerParseError:
            continue  # the result row says why
        idle = power.get("idle_window_ns") or [0, 0]
        window_s = (window[1] - window[0]) / 1e9
        for t_s, watts in trace:
            t_ns = t_s * 1e9
            phase = "other"  # the model load, first inference and warm-up
            if window[0] <= t_ns <= window[1]:
                phase = "timed"
            elif idle[0] <= t_ns <= idle[1]:
                phase = "idle"
            rows.append(
                (record.run_id, record.job_id, (t_ns - window[0]) / 1e9, watts, phase, window_s)
            )
    return _typed(pd.DataFrame(rows, columns=list(POWER_COLUMN_TYPES)), POWER_COLUMN_TYPES)


def _process_index(record: JobRecord) -> Any:
    import numpy as np

    counts = [p.get("n", 0) for p in record.runner.get("processes") or []]
    if sum(counts) != len(record.latencies_ns):
        counts = [len(record.latencies_ns)]  # one process (or a record from before processes)
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def merge_runs(stores: list[RunStore], output_dir: Path) -> RunStore:
    """One run from several (the shards of a plan run on several controllers): every job
    record, re-labelled with the new run's id; run.json says where each came from. A job
    found in two runs keeps its result over a `skipped` record; two results of one job are
    refused (merging must never pick a number silently)."""
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
    meta = {k: v for k, v in metas[0].items() if k not in ("schema", "run_id", "shard")}
    meta.update(
        run_id=merged.run_id,
        merged_from={
            store.run_id: shard.get("shard") for store, shard in zip(stores, metas, strict=True)
        },
        jobs=sorted({j for shard in metas for j in shard.get("jobs", [])}),
        devices={k: v for shard in metas for k, v in (shard.get("devices") or {}).items()},
        # finished only when every shard finished (else `show` says the run is partial)
        finished_at=max(m["finished_at"] for m in metas)
        if all(m.get("finished_at") for m in metas)
        else None,
    )
    merged.write_run_meta(meta)
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


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _typed(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    return frame.astype({name: _PANDAS_TYPES[kind] for name, kind in types.items()})


def _write_parquet_atomic(frame: pd.DataFrame, path: Path, types: dict[str, str]) -> None:
    """With the declared Arrow type of every column: inferred from the values, a column
    that is all null in one run would be typed `null`, and that run would not union with
    the others."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema([(name, arrow.get(kind, pa.string())) for name, kind in types.items()])
    table = pa.Table.from_pandas(frame[list(types)], schema=schema, preserve_index=False)
    tmp = path.with_name(f".{path.name}.part")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _status_of(path: Path) -> str | None:
    try:
        status = json.loads(path.read_text()).get("status")
    except (OSError, json.JSONDecodeError):
        return None
    return str(status) if status is not None else None
