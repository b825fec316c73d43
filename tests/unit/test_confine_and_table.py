from __future__ import annotations

import pytest
from test_jobs_and_records import record

from harness.errors import RemotePathError
from harness.report.table import latency_tables
from harness.tables import results_frame
from harness.transport.base import confine


@pytest.mark.parametrize("relative", ["models/x.onnx", "a/../b", ".", "runner/abc/run.py"])
def test_paths_inside_the_workdir(relative: str) -> None:
    assert confine("/home/pi/edge-harness", relative).startswith("/home/pi/edge-harness")


@pytest.mark.parametrize(
    "relative", ["..", "../x", "a/../../x", "/etc/passwd", "/home/pi/edge-harness-other"]
)
def test_paths_leaving_the_workdir(relative: str) -> None:
    with pytest.raises(RemotePathError, match="leaves the device workdir"):
        confine("/home/pi/edge-harness", relative)


def test_table_rows_show_numbers_for_ok_and_reasons_for_failures() -> None:
    frame = results_frame(
        [record(), record("timeout", job="pi.m.fp32.cpu.t2", threads=2, error="timed out")]
    )
    [(model, rows)] = latency_tables(frame)
    assert model == "m" and rows[0]["variant"] == "fp32"
    ok, failed = rows
    assert ok["n"] == "6" and ok["p50_ms"] == "1.000" and ok["p50_ci"].startswith("±")
    assert ok["peak_rss_mb"] == "60.0" and ok["provider"] == "CPU"
    assert (
        failed["status"] == "timeout" and failed["p50_ms"] == "" and failed["note"] == "timed out"
    )
    # a failed job has no runtime version (nothing reported it): blank, never "nan"
    stored = frame.astype({"runtime_version": "str"})  # as read back from parquet
    assert [row["runtime"] for _, rows in latency_tables(stored) for row in rows][
        1
    ] == "onnxruntime"
