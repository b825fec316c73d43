"""The runner contract: its schemas live in one module the runner ships with, and the
controller reads the result document only through `ResultDocument`."""

from __future__ import annotations

import ast
from pathlib import Path

from test_jobs_and_records import OK_DOC

from harness import jobs
from harness.execute import python_runner
from harness.native import commands
from harness.runner import contract
from harness.runner.contract import ResultDocument

HARNESS = Path(contract.__file__).resolve().parents[1]


def test_the_schemas_have_one_owner() -> None:
    assert jobs.JOB_SCHEMA is contract.JOB_SCHEMA
    assert python_runner.RESULT_SCHEMA is commands.RESULT_SCHEMA is contract.RESULT_SCHEMA
    assert OK_DOC["schema"] == contract.RESULT_SCHEMA


def test_a_full_document_reads_with_its_types() -> None:
    doc = ResultDocument({**OK_DOC, "state": {"before": {"governors": {"cpu0": "ondemand"}}}})
    assert doc.status == "ok" and doc.arch == "aarch64" and doc.runtime_version == "1.18.0"
    assert doc.load_ms == 12.5 and doc.latencies_ns[0] == 1_000_000
    assert doc.memory_kb("after_run")["hwm_kb"] == 61_440
    assert doc.thermal_c("before") == {"zone0:cpu": 45.0, "zone1:gpu": 47.5}  # older layout
    assert doc.state("before")["governors"] == {"cpu0": "ondemand"}


def test_an_absent_part_reads_as_empty_never_as_an_error() -> None:
    """A failed job, a native tool's document or an older runner's lacks parts."""
    doc = ResultDocument({"schema": contract.RESULT_SCHEMA, "status": "error", "error": {
        "type": "JobError", "stage": "loading the model", "message": "bad file"}})  # fmt: skip
    assert (
        doc.status == "error"
        and doc.describe_error() == "JobError while loading the model: bad file"
    )
    assert doc.latencies_ns == [] and doc.memory_kb("after_run") == {} and doc.power == {}
    assert doc.state("after") == {} and doc.thermal_c("after") == {} and doc.eval == {}
    assert doc.processes == [] and doc.reported_stats == {} and doc.tool_name == "the tool"
    assert doc.runtime_version is None and doc.identity == {}


def test_the_controller_reads_documents_only_through_the_contract() -> None:
    """No `.get(...)` / `[...]` on a stored runner document (`runner`, `record.runner`)
    outside harness/runner/ (the executors build documents and python_runner.parse_result_document
    validates one: they hold it as `doc`)."""
    offenders = []
    for path in HARNESS.rglob("*.py"):
        if "runner" in path.relative_to(HARNESS).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            target = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr == "get":
                    target = node.func.value
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                target = node.value
            text = ast.unparse(target) if target is not None else ""
            if text in ("runner", "record.runner", "reference.runner"):
                offenders.append(f"{path.relative_to(HARNESS)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_a_full_device_disk_is_told_from_the_runners_error() -> None:
    """ENOSPC, or a step that failed wordlessly with next to nothing free (a sampler that
    could not write its first reading): the device's condition, not the job's failure."""

    def failed(**error: object) -> ResultDocument:
        return ResultDocument({"status": "error", "error": {"type": "OSError", **error}})

    eight_mib = 8 * 2**20
    assert failed(errno=28).disk_full(eight_mib)  # ENOSPC
    assert failed(errno=122).disk_full(eight_mib)  # EDQUOT
    assert failed(errno=None, disk_free_bytes=4096).disk_full(eight_mib)
    assert not failed(errno=2, disk_free_bytes=2**30).disk_full(eight_mib)
    assert not failed().disk_full(eight_mib)  # an older runner says neither
    assert not ResultDocument(OK_DOC).disk_full(eight_mib)
