"""The parquet views of a run, derived from its job records, each column with its declared
type: results (a row per solo job), samples (every timed latency), power (every reading),
comparisons (a row per paired job), profile (a row per profiled node).
Typed, so that a column that is all null in one run is still a string or a number and any
runs of one schema version read as one table (pyarrow.dataset, DuckDB)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.comparisons import COMPARISON_COLUMN_TYPES, comparison_row
from harness.profiles import PROFILE_COLUMN_TYPES, profile_rows
from harness.records import JobRecord
from harness.rows import (
    RESULT_COLUMN_TYPES,
    RESULT_COLUMNS,
    fill_placement,
    fill_reference_metrics,
    result_row,
)
from harness.runner.result_document import ResultDocument

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COMPARISON_COLUMN_TYPES", "PROFILE_COLUMN_TYPES", "RESULT_COLUMN_TYPES",
           "comparisons_frame", "power_frame", "profile_frame", "results_frame",
           "samples_frame"]  # fmt: skip

SAMPLE_COLUMN_TYPES = {"run_id": "string", "job_id": "string", "process": "int64",
                       "iteration": "int64", "latency_ns": "int64"}  # fmt: skip
POWER_COLUMN_TYPES = {"run_id": "string", "job_id": "string", "t_s": "float64",
                      "power_w": "float64", "phase": "string", "window_s": "float64"}  # fmt: skip
# the pandas dtype of each column type (nullable where a column may be missing values)
_PANDAS_TYPES = {"int64": "Int64", "float64": "float64", "bool": "boolean", "string": "object"}


def results_frame(records: list[JobRecord]) -> pd.DataFrame:
    import pandas as pd

    solo = [r for r in records if r.kind == "solo"]
    rows = [result_row(r) for r in solo]
    fill_reference_metrics(rows, solo)
    fill_placement(rows, [r for r in records if r.kind == "profile"])
    return _typed(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)), RESULT_COLUMN_TYPES)


def comparisons_frame(records: list[JobRecord]) -> pd.DataFrame:
    """A row per paired job (harness/comparisons.py); empty when the run paired none."""
    import pandas as pd

    rows = [comparison_row(r) for r in records if r.kind == "paired"]
    frame = pd.DataFrame(rows, columns=list(COMPARISON_COLUMN_TYPES))
    return _typed(frame, COMPARISON_COLUMN_TYPES)


def profile_frame(records: list[JobRecord]) -> pd.DataFrame:
    """A row per kept node of every profile job (harness/profiles.py)."""
    import pandas as pd

    rows = [row for r in records if r.kind == "profile" for row in profile_rows(r)]
    return _typed(pd.DataFrame(rows, columns=list(PROFILE_COLUMN_TYPES)), PROFILE_COLUMN_TYPES)


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

    from harness.errors import ParseError
    from harness.probes.power import power_trace

    rows = []
    for record in records:
        power = ResultDocument(record.runner).power
        window = power.timed_window_ns
        if record.status != "ok" or not window:
            continue
        try:
            trace = power_trace(power.source, power.samples)
        except ParseError:
            continue  # the result row says why
        # in seconds, as the trace and the row's energy summary have them: a stamp taken
        # back to ns through a float can land a nanosecond outside its window
        timed = (window[0] / 1e9, window[1] / 1e9)
        idle = [t / 1e9 for t in power.idle_window_ns or [0, 0]]
        for t_s, watts in trace:
            phase = "other"  # the model load, first inference and warm-up
            if timed[0] <= t_s <= timed[1]:
                phase = "timed"
            elif idle[0] <= t_s <= idle[1]:
                phase = "idle"
            rows.append(
                (record.run_id, record.job_id, t_s - timed[0], watts, phase, timed[1] - timed[0])
            )
    return _typed(pd.DataFrame(rows, columns=list(POWER_COLUMN_TYPES)), POWER_COLUMN_TYPES)


def _process_index(record: JobRecord) -> Any:
    import numpy as np

    counts = [p.n for p in ResultDocument(record.runner).processes]
    if sum(counts) != len(record.latencies_ns):
        counts = [len(record.latencies_ns)]  # one process (or a record from before processes)
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def _typed(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    return frame.astype({name: _PANDAS_TYPES[kind] for name, kind in types.items()})


def write_parquet_atomic(frame: pd.DataFrame, path: Path, types: dict[str, str]) -> None:
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
