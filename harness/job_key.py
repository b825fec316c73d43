"""Which job a result belongs to, spelled once: a job, its record and its table rows all
give the same `JobKey`, so history, comparisons, the gate, the report and the CLI match
them by one rule. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, Protocol, assert_never, get_args

# solo: one variant per process (results.parquet); paired: a variant beside its fp32 in the
# same processes (comparisons.parquet); profile: per-layer profiles (profile.parquet)
JobKind = Literal["solo", "paired", "profile"]
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)


def view_of(kind: JobKind) -> str:
    """The parquet view that holds a kind's records (harness/tables.py builds it)."""
    match kind:
        case "solo":
            return "results.parquet"
        case "paired":
            return "comparisons.parquet"
        case "profile":
            return "profile.parquet"
        case _:
            assert_never(kind)


class _Keyed(Protocol):
    """A job or a job record: anything with the key's fields as attributes."""

    @property
    def device(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def runtime(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def variant(self) -> str: ...


@dataclass(frozen=True, order=True)
class JobKey:
    """A model variant on a device with one runtime setting (runtime, provider, threads).
    Its `setting` (all but the variant) is the group in which variants are compared with
    their fp32."""

    device: str
    model: str
    variant: str
    runtime: str
    provider: str
    threads: int

    # as table columns, in this order; SETTING_COLUMNS without the variant
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "device", "model", "variant", "runtime", "provider", "threads",
    )  # fmt: skip
    SETTING_COLUMNS: ClassVar[tuple[str, ...]] = (
        "device", "model", "runtime", "provider", "threads",
    )  # fmt: skip

    @classmethod
    def of(cls, item: _Keyed) -> JobKey:
        """The key of a `jobs.Job` or a `records.JobRecord`."""
        return cls(item.device, item.model, item.variant, item.runtime, item.provider,
                   int(item.threads))  # fmt: skip

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> JobKey:
        """The key of a table row (results, comparisons, the variant analysis)."""
        return cls(
            str(row["device"]), str(row["model"]), str(row["variant"]), str(row["runtime"]),
            str(row["provider"]), int(row["threads"]),
        )  # fmt: skip

    @property
    def setting(self) -> tuple[str, str, str, str, int]:
        return (self.device, self.model, self.runtime, self.provider, self.threads)

    def with_variant(self, variant: str) -> JobKey:
        """The same setting with another variant (a variant's fp32 reference)."""
        return replace(self, variant=variant)

    def label(self) -> str:
        """How a message names the job: `device: model/variant provider t<threads>`."""
        return f"{self.device}: {self.model}/{self.variant} {self.provider} t{self.threads}"


def job_id(device: str, model: str, variant: str, provider: str, threads: int) -> str:
    provider_slug = re.sub(r"[^A-Za-z0-9]+", "-", provider.removesuffix("ExecutionProvider"))
    provider_slug = provider_slug.strip("-").lower() or "default"
    return f"{device}.{model}.{variant}.{provider_slug}.t{threads}"
