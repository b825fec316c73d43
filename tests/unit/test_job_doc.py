"""A queued job's document: the job a worker rebuilds is the job the submitter expanded,
its files named by content and fetched where the worker keeps them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.jobs import Job
from harness.lab.job_doc import JOB_DOC_SCHEMA, JobDocError, job_from_doc, job_to_doc


def a_job(tmp_path: Path) -> Job:
    model = tmp_path / "variants" / "int8.onnx"
    return Job(
        job_id="bench-1.m.int8.cpu.t1", device="bench-1", model="m", variant="int8",
        strategy="int8-dynamic", model_file=model, runtime="onnxruntime",
        provider="CPUExecutionProvider", threads=1, warmup=2,
        stop={"iterations": 10, "min_iterations": 10, "max_iterations": 10, "max_seconds": 1.0,
              "target_ci": None},
        processes=1, inject_slowdown=0.0, timeout_s=60.0, seed=0, dims={"batch": 1},
        input_file=None, eval_file=tmp_path / "eval.npz", eval_whole=("state",),
        variant_report={"size_mb": 0.1},
    )  # fmt: skip


def test_a_job_comes_back_whole_with_its_files_where_the_worker_keeps_them(tmp_path: Path) -> None:
    job = a_job(tmp_path)
    digests = {job.model_file: "a" * 64, job.eval_file: "b" * 64}
    doc = json.loads(json.dumps(job_to_doc(job, digests)))  # as stored: JSON
    assert doc["model_file"] == {"name": "int8.onnx", "sha256": "a" * 64}
    assert str(tmp_path) not in json.dumps(doc)  # no path of the submitting controller
    cache = tmp_path / "worker-cache"
    rebuilt = job_from_doc(doc, lambda sha, name: cache / str(sha) / name)
    assert rebuilt.model_file == cache / ("a" * 64) / "int8.onnx"
    assert rebuilt.eval_file == cache / ("b" * 64) / "eval.npz"
    assert rebuilt.input_file is None and rebuilt.eval_whole == ("state",)
    same = {"model_file": job.model_file, "eval_file": job.eval_file}
    assert Job(**{**rebuilt.__dict__, **same}) == job


def test_a_document_of_another_version_or_shape_is_refused(tmp_path: Path) -> None:
    doc = job_to_doc(a_job(tmp_path), {})
    assert doc["model_file"]["sha256"] is None  # a file not known: not fetched
    with pytest.raises(JobDocError, match="upgrade this controller"):
        job_from_doc({**doc, "schema": "harness.queued-job/9"}, lambda sha, name: Path(name))
    with pytest.raises(JobDocError, match="unknown here"):
        job_from_doc({**doc, "warp_factor": 9}, lambda sha, name: Path(name))
    assert doc["schema"] == JOB_DOC_SCHEMA
