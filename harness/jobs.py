"""A job: one variant on one device with one runtime setting (`Job`), what a variant
built for it is (`VariantFile`), and its spec for the runner (`JobSpec`, whose parts are
typed in harness/runner/contract.py). A plan becomes jobs in harness/plan_jobs.py.

Nothing here touches a device, a socket or a subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.job_key import JobKind
from harness.native.commands import (
    PYTHON_RUNNER,
    cpu_list,
)
from harness.runner.contract import (
    JOB_SCHEMA,
    EvalSpec,
    FidelitySpec,
    InputSpecDoc,
    JobSpec,
    JsonObject,
    OutputDeclarationDoc,
    PairedSpec,
    PowerSpec,
    PrepareSpec,
    ProfileSpec,
    StopRule,
)

# past the job's timeout the controller kills the runner; this much later the runner's own
# watchdog does, for when no controller is left (killed, or its link lost)
RUNNER_DEADLINE_MARGIN_S = 15.0


# what building a variant did, in the strategy's own words (compress/*.py: sizes, sparsity,
# calibration, the verified effect): stored with every record and shown as it is
VariantReport = dict[str, Any]


@dataclass(frozen=True)
class Job:
    """One measurement: a model variant on a device with one runtime setting."""

    job_id: str
    device: str
    model: str
    variant: str
    strategy: str
    model_file: Path
    runtime: str
    provider: str
    threads: int
    warmup: int
    stop: StopRule
    processes: int
    inject_slowdown: float
    timeout_s: float
    seed: int
    dims: dict[str, int]
    input_file: Path | None
    input_specs: dict[str, InputSpecDoc] = field(default_factory=dict)
    target_ci: float | None = None
    eval_file: Path | None = None
    eval_inputs: dict[str, str] = field(default_factory=dict)
    eval_whole: tuple[str, ...] = ()  # inputs passed whole with every sample (a state)
    eval_labels: str = "labels"
    top_k: int = 5
    fidelity_samples: int = 0  # fixed inputs whose outputs are compared with fp32's
    task: str = ""  # the manifest's task (how an undeclared output is read)
    # the manifest's [outputs.NAME] declarations (harness/fidelity.OutputDeclaration)
    output_declarations: dict[str, OutputDeclarationDoc] = field(default_factory=dict)
    fidelity_file: Path | None = None  # the representative set ([data]), read for fidelity
    fidelity_whole: tuple[str, ...] = ()  # its inputs passed whole with every sample
    variant_report: VariantReport = field(default_factory=dict)
    variant_params: JsonObject = field(default_factory=dict)  # the manifest's, as written
    build_error: str | None = None
    build_status: str = "error"  # a variant not built: "error", or "no-effect"
    # what measures it: "runner" (harness/runner/run.py) or a native tool's name
    tool: str = PYTHON_RUNNER
    # the device's power source for the sampler (without the output path), or None
    power: PowerSpec | None = None
    sysfs_root: str = "/sys"
    # the CPUs the job runs on ("4-7"; None: any): one route to the runner (its affinity,
    # through `spec`) and to native tools (taskset), and a result column deciding
    # comparability
    cores: str | None = None
    governor: str | None = None  # the cpufreq governor the runner sets and restores
    memory_interval_s: float = 0.0  # 0: memory read at checkpoints only
    # a paired job (harness/runner/paired.py): the reference's file and the decision's
    # budget_s, band and block_ms; None for a job that measures one variant alone
    reference_file: Path | None = None
    paired: PairedSpec | None = None
    # a profile job (harness/runner/op_profile.py): runs, top_n; None for the others
    profile: ProfileSpec | None = None

    kind: JobKind = "solo"

    def __post_init__(self) -> None:
        """A paired job carries its comparison's settings, a profile job its profile's,
        and no other job either."""
        if (self.kind == "paired") != (self.paired is not None):
            raise ValueError(f"{self.job_id}: a {self.kind} job with paired = {self.paired}")
        if (self.kind == "profile") != (self.profile is not None):
            raise ValueError(f"{self.job_id}: a {self.kind} job with profile = {self.profile}")

    def local_files(self) -> list[Path]:
        """The controller's files the job sends to the device (none for a variant that
        was not built)."""
        files = [self.input_file, self.eval_file, self.fidelity_file, self.reference_file]
        if not self.build_error:
            files.insert(0, self.model_file)
        return [f for f in files if f is not None]

    @property
    def prepare(self) -> PrepareSpec:
        """What the Python runner changes for the job and undoes."""
        prepare: PrepareSpec = {}
        if self.cores:
            prepare["cores"] = cpu_list(self.cores)
        if self.governor:
            prepare["governor"] = self.governor
        return prepare

    def spec(
        self,
        model_path: str,
        input_path: str | None,
        eval_path: str | None = None,
        samples_prefix: str | None = None,
        reference_path: str | None = None,
        fidelity_path: str | None = None,
        first_round: bool = True,
    ) -> JobSpec:
        """The job spec document the runner reads (paths are the device's; the samplers
        write `<samples_prefix>.power.jsonl` and `.memory.jsonl`). The fidelity pass, like
        the eval, runs in the job's first process only (the record keeps that one's)."""
        evaluation: EvalSpec | None = (
            {
                "file": eval_path,
                "inputs": self.eval_inputs,
                "whole": list(self.eval_whole),
                "top_k": self.top_k,
            }
            if eval_path
            else None
        )
        return {
            "schema": JOB_SCHEMA,
            "job_id": self.job_id,
            "model_path": model_path,
            "runtime": self.runtime,
            "provider": self.provider,
            "threads": self.threads,
            "warmup": self.warmup,
            "stop": self.stop,
            "seed": self.seed,
            "dims": self.dims,
            "input_file": input_path,
            "input_specs": self.input_specs,
            "eval": evaluation,
            "fidelity": self.fidelity_spec(fidelity_path) if first_round else None,
            "inject_slowdown": self.inject_slowdown,
            "power": {**self.power, "out": f"{samples_prefix}.power.jsonl"}
            if self.power and samples_prefix
            else None,
            "sysfs_root": self.sysfs_root,
            "prepare": self.prepare,
            "memory_sampler": {
                "source": "memory",
                "interval_s": self.memory_interval_s,
                "out": f"{samples_prefix}.memory.jsonl",
            }
            if self.memory_interval_s and samples_prefix
            else None,
            # the runner ends itself (and its samplers) here even if no controller is left
            "deadline_s": self.timeout_s + RUNNER_DEADLINE_MARGIN_S,
            "running_file": f"{samples_prefix}.running" if samples_prefix else None,
            "paired": with_reference(self.paired, reference_path) if self.paired else None,
            "profile": {**self.profile, "prefix": f"{samples_prefix}.profile"}
            if self.profile and samples_prefix
            else None,
        }

    def fidelity_spec(self, fidelity_path: str | None) -> FidelitySpec | None:
        if not self.fidelity_samples:
            return None
        spec: FidelitySpec = {
            "samples": self.fidelity_samples,
            "classification": self.task == "classification",  # read by older controllers
            "task": self.task,
            "outputs": self.output_declarations,
        }
        if fidelity_path:
            spec["file"] = fidelity_path
            spec["whole"] = list(self.fidelity_whole)
        return spec


@dataclass(frozen=True)
class VariantFile:
    """A variant ready to run (its file and build report), or why it could not be built."""

    path: Path | None
    report: VariantReport = field(default_factory=dict)
    error: str | None = None
    status: str = (
        "error"  # of a variant not built: "error", or "no-effect" (built, changed nothing)
    )
    cached: bool | None = None  # taken from the variant cache (None: not a built variant)


def with_reference(paired: PairedSpec, reference_path: str | None) -> PairedSpec:
    spec = paired.copy()
    if reference_path is not None:
        spec["reference_path"] = reference_path
    return spec
