"""The runner contract (job matrix, result parsing) and the stored records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import (
    Inputs,
    Measure,
    ModelManifest,
    Plan,
    RuntimeSettings,
    Variant,
    builtin_local_device,
)
from harness.errors import RunnerFailed, StoreError
from harness.execute.python_runner import parse_result_document
from harness.job_key import job_id
from harness.plan_jobs import expand_plan
from harness.records import JobRecord
from harness.rows import RESULT_COLUMNS, result_row
from harness.store import RunStore, resolve_run

OK_DOC = {
    "schema": "harness.result/1",
    "status": "ok",
    "arch": "aarch64",
    "runtime": {"name": "onnxruntime", "version": "1.18.0", "providers": ["CPUExecutionProvider"]},
    "load_ms": 12.5,
    "first_ms": 3.0,
    "latencies_ns": [1_000_000, 1_100_000, 900_000, 1_000_000, 1_050_000, 950_000],
    "memory_kb": {
        "before_load": {"rss_kb": 40_960, "hwm_kb": 41_000},
        "after_load": {"rss_kb": 51_200, "hwm_kb": 52_000},
        "after_run": {"rss_kb": 52_000, "hwm_kb": 61_440},
    },
    "thermal_c": {"before": {"zone0:cpu": 45.0, "zone1:gpu": 47.5}, "after": {"zone0:cpu": 52.0}},
    "stop_reason": "fixed",
}


def test_plan_expands_to_the_full_matrix(tmp_path: Path) -> None:
    onnx, tflite = tmp_path / "a.onnx", tmp_path / "b.tflite"
    plan = Plan(
        name="p",
        models=["a", "b"],
        runtime=RuntimeSettings(
            threads=[1, 4], onnx_providers=["CPUExecutionProvider", "CUDAExecutionProvider"]
        ),
        measure=Measure(iterations=10),
        inputs=Inputs(dims={"batch": 1}),
    )
    manifests = [
        ModelManifest(
            name="a", file=onnx, variants=[Variant(name="student", strategy="external", file=onnx)]
        ),
        ModelManifest(name="b", file=tflite),
    ]
    jobs = expand_plan(plan, [builtin_local_device()], manifests)
    # a: 2 variants x 2 providers x 2 threads; b: 1 variant x 1 delegate x 2 threads
    assert len(jobs) == 8 + 2
    assert len({j.job_id for j in jobs}) == 10
    assert jobs[0].job_id == "local.a.fp32.cpu.t1"
    assert {j.runtime for j in jobs if j.model == "b"} == {"tflite"}
    assert jobs[0].stop == {"iterations": 10} and jobs[0].target_ci is None
    assert (
        job_id("pi", "m", "int8", "delegate:/usr/lib/libgpu.so", 2)
        == "pi.m.int8.delegate-usr-lib-libgpu-so.t2"
    )


def test_result_document_is_validated() -> None:
    doc = parse_result_document(json.dumps(OK_DOC) + "\n", device="pi", job_id="j")
    assert doc["load_ms"] == 12.5
    with pytest.raises(RunnerFailed, match="printed nothing"):
        parse_result_document("  \n", device="pi", job_id="j")
    with pytest.raises(RunnerFailed, match=r"not JSON: 'Segmentation fault'"):
        parse_result_document("Segmentation fault", device="pi", job_id="j")
    with pytest.raises(RunnerFailed, match="another harness version"):
        parse_result_document(
            json.dumps({**OK_DOC, "schema": "harness.result/9"}), device="pi", job_id="j"
        )
    with pytest.raises(RunnerFailed, match="no latencies"):
        parse_result_document(json.dumps({**OK_DOC, "latencies_ns": []}), device="pi", job_id="j")
    with pytest.raises(RunnerFailed, match="positive integers"):
        parse_result_document(
            json.dumps({**OK_DOC, "latencies_ns": [5, -1]}), device="pi", job_id="j"
        )
    with pytest.raises(RunnerFailed, match="error result without an error"):
        parse_result_document(json.dumps({**OK_DOC, "status": "error"}), device="pi", job_id="j")


def record(status: str = "ok", job: str = "pi.m.fp32.cpu.t1", **extra: object) -> JobRecord:
    runner = {k: v for k, v in OK_DOC.items() if k != "latencies_ns"}
    fields: dict = dict(
        run_id="r1", job_id=job, started_at="2026-11-23T07:00:00Z", finished_at="2026-11-23T07:00:01Z",
        device="pi", device_class="pi5", transport="ssh", model="m", variant="fp32", strategy="fp32",
        runtime="onnxruntime", provider="CPUExecutionProvider", threads=1, status=status,
        model_bytes=1234, model_sha256="ab" * 32, target_ci=0.01,
        runner=runner if status == "ok" else {}, latencies_ns=tuple(OK_DOC["latencies_ns"]) if status == "ok" else (),
    )  # fmt: skip
    fields.update(extra)
    return JobRecord(**fields)


def test_result_row_fills_the_design_columns() -> None:
    row = result_row(record())
    assert tuple(row) == RESULT_COLUMNS
    assert row["n"] == 6 and row["p50_ms"] == pytest.approx(1.0)
    assert row["rss_before_mb"] == 40 and row["peak_rss_mb"] == 60 and row["model_mem_mb"] == 10
    assert row["temp_start_c"] == 47.5 and row["temp_end_c"] == 52.0
    assert row["runtime_version"] == "1.18.0" and row["arch"] == "aarch64"
    assert row["energy_mj"] is None and row["accuracy"] is None  # not measured: null, not 0
    failed = result_row(record("timeout", error="timed out after 2 s"))
    assert (
        failed["n"] is None
        and failed["p50_ms"] is None
        and failed["error"] == "timed out after 2 s"
    )


def test_store_is_append_only_and_readable_without_parquet(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "nightly")
    store.write_job(record())
    with pytest.raises(StoreError, match="never overwritten"):
        store.write_job(record())
    store.write_job(record("error", job="pi.m.fp32.cpu.t2", error="boom"))
    results, samples = resolve_run(tmp_path, "latest").frames()
    assert list(results["status"]) == ["ok", "error"]
    assert str(results["n"].dtype) == "Int64" and results["energy_mj"].isna().all()
    assert len(samples) == 6 and samples["latency_ns"].dtype == "int64"
    store.finalize()
    assert (store.run_dir / "results.parquet").is_file()
    assert resolve_run(tmp_path, store.run_id).run_dir == store.run_dir
    with pytest.raises(StoreError, match="no run 'nope'"):
        resolve_run(tmp_path, "nope")


def test_records_from_a_newer_harness_are_refused(tmp_path: Path) -> None:
    data = record().to_json()
    assert JobRecord.from_json(data) == record()
    with pytest.raises(StoreError, match="newer harness"):
        JobRecord.from_json({**data, "schema": "harness.job-record/99"}, source="x.json")
    with pytest.raises(ValueError, match="status must be one of"):
        record("exploded")
    # a version 2 record (before `cores`) still loads, as a job run on any CPU
    older = {k: v for k, v in data.items() if k != "cores"} | {"schema": "harness.job-record/2"}
    assert JobRecord.from_json(older).cores is None


def test_memory_by_pss_and_swap_and_what_the_runner_could_not_prepare() -> None:
    kb = 1024
    memory = {
        "before_load": {"rss_kb": 40 * kb, "hwm_kb": 40 * kb, "pss_kb": 30 * kb, "swap_kb": 0},
        "after_load": {"rss_kb": 70 * kb, "hwm_kb": 70 * kb, "pss_kb": 45 * kb, "swap_kb": 0},
        "after_run": {"rss_kb": 72 * kb, "hwm_kb": 75 * kb, "pss_kb": 47 * kb, "swap_kb": 2 * kb},
    }
    sampled = {
        "samples": [{"t_ns": 1, "raw": {"VmHWM": 75 * kb, "Pss": 52 * kb, "VmSwap": 3 * kb}}]
    }
    runner = {
        **record().runner,
        "memory_kb": memory,
        "memory_sampled": sampled,
        "preparation": {
            "cpu_affinity": {"applied": True, "cpus": [4, 5]},
            "governor": {"applied": False, "governor": "performance", "error": "cpu0: denied"},
        },
        "state": {
            "before": {"governors": {"cpu0": "schedutil", "cpu1": "performance"}},
            "after": {"battery": {"status": "charging", "plugged": ["usb"]}},
        },
    }
    row = result_row(record(runner=runner))
    # the model's memory is its PSS share (mapped weights counted once), not RSS
    assert row["model_mem_mb"] == 15 and row["peak_rss_mb"] == 75
    # the sampler saw a peak between the checkpoints
    assert row["peak_pss_mb"] == 52 and row["peak_swap_mb"] == 3
    assert row["governor"] == "performance,schedutil"
    assert "governor not applied: cpu0: denied" in row["warnings"]
    assert "cpu affinity" not in row["warnings"]
    assert "the phone was charging (after the job)" in row["warnings"]
    # checkpoints without PSS (older kernels): RSS difference, no PSS peak
    plain = {k: {"rss_kb": v["rss_kb"], "hwm_kb": v["hwm_kb"]} for k, v in memory.items()}
    row = result_row(record(runner={**record().runner, "memory_kb": plain}))
    assert row["model_mem_mb"] == 30 and row["peak_pss_mb"] is None and row["governor"] is None
