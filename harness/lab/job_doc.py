"""A queued job as JSON (pure): the `Job` a submitting controller expanded from its plan,
with each of its files named by content (sha256) rather than by a path on that controller,
so a worker elsewhere fetches the same bytes and runs the very job `harness run` would.

The document is versioned (`JOB_DOC_SCHEMA`); a worker refuses one it does not know.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.jobs import Job

JOB_DOC_SCHEMA = "harness.queued-job/1"
# the Job's fields that are files on the controller: sent by content, never by path
FILE_FIELDS = ("model_file", "input_file", "eval_file", "fidelity_file", "reference_file")
TUPLE_FIELDS = ("eval_whole", "fidelity_whole")


class JobDocError(ValueError):
    """A queued job this harness cannot read (another version, a field it lacks)."""


def job_to_doc(job: Job, digests: Mapping[Path, str]) -> dict[str, Any]:
    """`job` as JSON; `digests` holds the sha256 of each of its files that exists (a
    variant that was not built has none: its record says why, and nothing is sent)."""
    doc: dict[str, Any] = {"schema": JOB_DOC_SCHEMA}
    for field in dataclasses.fields(job):
        value = getattr(job, field.name)
        if field.name in FILE_FIELDS:
            value = None if value is None else {"name": value.name, "sha256": digests.get(value)}
        elif field.name in TUPLE_FIELDS:
            value = list(value)
        doc[field.name] = value
    return doc


def job_from_doc(doc: Mapping[str, Any], fetch: Callable[[str | None, str], Path]) -> Job:
    """The `Job` of a document; `fetch(sha256, name)` gives the local path of a file (a
    path that does not exist where the sha256 is None: a variant that was not built)."""
    if doc.get("schema") != JOB_DOC_SCHEMA:
        raise JobDocError(
            f"queued job {doc.get('job_id')!r} is {doc.get('schema')!r}, this harness reads "
            f"{JOB_DOC_SCHEMA}: upgrade this controller's harness to the submitter's"
        )
    names = {f.name for f in dataclasses.fields(Job)}
    unknown = sorted(set(doc) - names - {"schema"})
    if unknown:
        raise JobDocError(f"queued job {doc.get('job_id')!r} has fields {unknown} unknown here")
    values: dict[str, Any] = {}
    for name in names & set(doc):
        value = doc[name]
        if name in FILE_FIELDS and value is not None:
            value = fetch(value.get("sha256"), str(value["name"]))
        elif name in TUPLE_FIELDS:
            value = tuple(value)
        values[name] = value
    return Job(**values)
