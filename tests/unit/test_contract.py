"""The runner contract: its schemas live in one module the runner ships with, and the
controller reads the result document only through `ResultDocument`."""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from test_jobs_and_records import OK_DOC

from harness import jobs
from harness.native import commands
from harness.runner import contract, result_document
from harness.runner import result_views as views
from harness.runner.result_document import ResultDocument

HARNESS = Path(contract.__file__).resolve().parents[1]


def test_the_schemas_have_one_owner() -> None:
    assert jobs.JOB_SCHEMA is contract.JOB_SCHEMA
    assert commands.RESULT_SCHEMA is contract.RESULT_SCHEMA
    assert OK_DOC["schema"] == contract.RESULT_SCHEMA


def test_a_full_document_reads_with_its_types() -> None:
    doc = ResultDocument({**OK_DOC, "state": {"before": {"governors": {"cpu0": "ondemand"}}}})
    assert doc.status == "ok" and doc.arch == "aarch64" and doc.runtime_version == "1.18.0"
    assert doc.load_ms == 12.5 and doc.latencies_ns[0] == 1_000_000
    assert doc.memory_kb("after_run").hwm_kb == 61_440
    before = doc.state("before")  # the zones of the older layout, the governors of the new
    assert before.thermal_c == {"zone0:cpu": 45.0, "zone1:gpu": 47.5}
    assert before.governors == {"cpu0": "ondemand"} and before.recorded


def test_an_absent_part_reads_as_empty_never_as_an_error() -> None:
    """A failed job, a native tool's document or an older runner's lacks parts."""
    doc = ResultDocument({"schema": contract.RESULT_SCHEMA, "status": "error", "error": {
        "type": "JobError", "stage": "loading the model", "message": "bad file"}})  # fmt: skip
    assert (
        doc.status == "error"
        and doc.describe_error() == "JobError while loading the model: bad file"
    )
    assert doc.latencies_ns == [] and doc.memory_kb("after_run") == views.Memory()
    assert doc.power == views.PowerReadings() and doc.eval is None and doc.fidelity is None
    assert doc.state("after") == views.DeviceState() and not doc.state("after").recorded
    assert doc.processes == [] and doc.reported_stats is None and doc.tool_name == "the tool"
    assert doc.runtime_version is None and doc.identity == views.Identity()
    assert doc.profile is None and doc.paired is None and doc.memory_readings == []


def test_a_malformed_part_reads_as_absent() -> None:
    """A value of the wrong type (a runner of another version, a hand-edited record) is
    never passed on as it is."""
    doc = ResultDocument({"status": "ok", "load_ms": "fast", "device": {"ram_mb": "8 GB"},
                          "memory_kb": {"after_run": {"hwm_kb": True}}, "state": [],
                          "processes": [{"n": 3, "p50_ms": "1"}], "eval": {"n": 2}})  # fmt: skip
    assert doc.load_ms is None and doc.identity.ram_mb is None
    assert doc.memory_kb("after_run").hwm_kb is None and not doc.state("before").recorded
    assert doc.processes == [views.ProcessSummary(n=3)] and doc.eval is None


def _untyped(hint: object) -> bool:
    """Whether a type lets a reader reach into raw JSON: Any itself, or a mapping or a
    list whose values are Any."""
    if hint is Any:
        return True
    origin, args = get_origin(hint), get_args(hint)
    if origin in (dict, list, collections.abc.Mapping, collections.abc.Sequence):
        return args[-1:] == (Any,)
    return any(_untyped(arg) for arg in args) if origin is not None else False


def test_the_controller_reads_documents_through_typed_views_only() -> None:
    """Every part `ResultDocument` gives is a typed view (a frozen dataclass, a TypedDict
    or a value), never the raw dict: a `.get` chain on runner output is a type error
    (`make typecheck`), and no code outside the contract reads `raw`."""
    public = [name for name in vars(ResultDocument) if not name.startswith("_")]
    assert len(public) > 20
    for name in public:
        member = getattr(ResultDocument, name)
        function = member.fget if isinstance(member, property) else member
        hints = get_type_hints(function, {**vars(contract), **vars(views), **vars(result_document)})
        assert not _untyped(hints["return"]), f"ResultDocument.{name} -> {hints['return']}"
    for view in (views.Memory, views.DeviceState, views.Identity, views.Fidelity,
                 views.EvalOutputs, views.ProcessSummary, views.ReportedStats,
                 views.ErrorInfo, views.Profile):  # fmt: skip
        assert dataclasses.is_dataclass(view) and view.__dataclass_params__.frozen  # type: ignore[attr-defined]
        for field_name, hint in get_type_hints(view, {**vars(contract), **vars(views)}).items():
            assert not _untyped(hint), f"{view.__name__}.{field_name}: {hint}"
    offenders = []
    for path in HARNESS.rglob("*.py"):
        if path.name == "result_document.py" and path.parent.name == "runner":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "raw":
                offenders.append(f"{path.relative_to(HARNESS)}:{node.lineno}")
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
