"""Every stored run as one dataset that pyarrow, DuckDB and pandas read in one call, with no
download of the runs' job files (a run folder mixes JSON and parquet, so it is no dataset):

    reports/dataset/<table>/plan=<plan>/run=<run_id>/part-0.parquet

`<table>` is results (a row a job, `started_at` a UTC timestamp), variants (each variant
against fp32 on its device and setting: the headline speedup with its interval, size,
memory and quality, for every run, paired or not), samples (every timed latency), power
and comparisons (paired jobs). The hive keys `plan` and `run` become columns:

    pyarrow.dataset.dataset("reports/dataset/results", partitioning="hive")
    duckdb: SELECT * FROM read_parquet('reports/dataset/variants/**/*.parquet',
                                       hive_partitioning = true)

Written when a run is finalized (store.RunStore.finalize), next to the runs folder; the
samples file is a hard link to the run's own (no second copy on disk)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from harness.stored_run import RunMeta

TABLES = ("results", "variants", "samples", "power", "comparisons")


def dataset_root(run_dir: Path) -> Path:
    """`reports/runs/<run>` -> `reports/dataset`."""
    return run_dir.parent.parent / "dataset"


def partition(run_dir: Path, table: str, plan: str, run_id: str) -> Path:
    return dataset_root(run_dir) / table / f"plan={plan}" / f"run={run_id}"


def export_run(run_dir: Path, meta: RunMeta, frames: dict[str, pd.DataFrame]) -> list[Path]:
    """The run's tables into the dataset, each replaced whole (a run finalized again after
    `--resume` replaces its files). `frames`: its results, samples, power and comparisons
    views; `variants` is computed here; `samples` is linked from the run's own file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.analysis import compare_variants

    plan_table = meta.get("plan") or {}
    plan, run_id = str(plan_table.get("name") or "unnamed"), run_dir.name
    tolerances = {str(k): float(v) for k, v in (plan_table.get("quality") or {}).items()}
    frames = {
        **frames,
        "variants": compare_variants(
            frames["results"], frames["samples"], frames["comparisons"], tolerances
        ),
    }
    written = []
    for table in TABLES:
        folder = partition(run_dir, table, plan, run_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "part-0.parquet"
        partial = folder / f".part-0.{os.getpid()}.tmp"
        if table == "samples":
            _link_or_copy(run_dir / "samples.parquet", partial)
        else:
            frame = frames[table].copy()
            if "started_at" in frame:
                import pandas as pd

                frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), partial)
        partial.replace(target)
        written.append(target)
    return written


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or no hard links there
        shutil.copyfile(source, target)
