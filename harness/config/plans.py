"""Plans (what to run, how to measure) and budgets (what a release must meet)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from harness.config.base import (
    NAME_PATTERN,
    LaxPath,
    _read_toml,
    _Strict,
    _validate,
    duration_s,
)
from harness.config.devices import LOCAL_DEVICE_NAME
from harness.config.models import ModelManifest, load_manifest
from harness.errors import ConfigError
from harness.runner.contract import StopRule


class Measure(_Strict):
    """The stop rule: fixed `iterations`, or adaptive on the CI of the median."""

    warmup: Annotated[int, Field(ge=0)] = 10
    iterations: Annotated[int, Field(ge=1)] | None = None
    min_iterations: Annotated[int, Field(ge=5)] = 50
    max_iterations: Annotated[int, Field(ge=5)] = 100_000
    target_ci: Annotated[float, Field(gt=0, lt=1)] = 0.01
    max_seconds: Annotated[float, duration_s()] = 10.0
    timeout_s: Annotated[float, duration_s()] = 300.0
    # fresh runner processes per job, in rounds over the device's jobs; latencies pooled
    processes: Annotated[int, Field(ge=1, le=100)] = 1
    # after the timed loop (first process), every output of this many samples of the
    # representative set ([data]), else the eval set, else fixed inputs, compared with
    # fp32's on the same device, output by output (harness/fidelity.py); 0: none
    fidelity_samples: Annotated[int, Field(ge=0, le=1024)] = 32
    # for testing regression detection only: every inference made this fraction slower
    inject_slowdown: Annotated[float, Field(ge=0, le=10)] = 0.0
    # paired comparison (harness/runner/paired.py): each variant also runs beside its fp32
    # in the same processes, in alternating blocks, until its ratio's 95 % interval lies
    # beyond ±equivalence_pct (faster/slower), inside it (equivalent), or the device time
    # of the comparison (all its processes together) ends (inconclusive)
    paired: bool = False
    paired_budget_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    equivalence_pct: Annotated[float, Field(gt=0, lt=50)] = 2.0
    paired_block_ms: Annotated[float, Field(gt=0, le=10_000)] = 20.0
    # stop a comparison early once the variant is surely slower than this ratio of fp32's
    # time (`harness tune`: the best candidate so far; None: decide against fp32 only)
    paired_stop_above_ratio: Annotated[float, Field(gt=0)] | None = None
    # per-layer profiles (harness/runner/op_profile.py; a native tool's own profiler,
    # harness/native/op_profiles.py): one more process per job that profiles
    # `profile_runs` inferences, the top `profile_top_n` nodes kept (the rest summed); the
    # timed processes are never profiled
    profile: bool = False
    profile_runs: Annotated[int, Field(ge=1, le=10_000)] = 20
    profile_top_n: Annotated[int, Field(ge=1, le=10_000)] = 30

    @model_validator(mode="after")
    def _ordered(self) -> Measure:
        if self.max_iterations < self.min_iterations:
            raise ValueError("max_iterations must be >= min_iterations")
        return self

    def stop_rule(self) -> StopRule:
        """A fixed count of iterations, or the adaptive rule's bounds and target."""
        if self.iterations:
            return {"iterations": self.iterations}
        return {
            "min_iterations": self.min_iterations,
            "max_iterations": self.max_iterations,
            "target_ci": self.target_ci,
            "max_seconds": self.max_seconds,
        }


TFLITE_DELEGATES = ("xnnpack", "builtin", "gpu", "nnapi")


class RuntimeSettings(_Strict):
    threads: list[Annotated[int, Field(ge=1, le=256)]] = Field(default_factory=lambda: [1])
    onnx_providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    tflite_delegates: list[str] = Field(default_factory=lambda: ["xnnpack"])

    @field_validator("tflite_delegates")
    @classmethod
    def _known_delegate(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in TFLITE_DELEGATES and not value.startswith("delegate:"):
                raise ValueError(
                    f"'{value}' is not a TFLite delegate: use 'xnnpack' (default kernels), "
                    "'builtin' (no default delegate), 'gpu' or 'nnapi' (benchmark_model "
                    "only) or 'delegate:/path/on/device/libX.so'"
                )
        return values


class Inputs(_Strict):
    seed: Annotated[int, Field(ge=0)] = 0  # numpy's generators take no negative seed
    dims: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    files: dict[str, LaxPath] = Field(default_factory=dict)


TuneStrategy = Literal["int8-static", "int8-dynamic", "fp16", "prune-structured", "low-rank"]
TUNE_STRATEGIES: tuple[str, ...] = get_args(TuneStrategy)
CalibrateMethod = Literal["MinMax", "Entropy", "Percentile"]
_FIRST_STRATEGIES: tuple[TuneStrategy, ...] = ("int8-static", "int8-dynamic", "fp16")
_FIRST_METHODS: tuple[CalibrateMethod, ...] = ("MinMax", "Percentile")


class TuneSettings(_Strict):
    """`[tune]`: what `harness tune` searches for a model on a device (harness/tune.py):
    the constraints a recipe must hold, what to minimise, the recipes to try, the limits."""

    model: str | None = None  # else the plan's only model
    device: str | None = None  # else the plan's only device
    objective: Literal["fastest", "smallest", "energy"] = "fastest"
    # quality per kind of output, as in [quality] (harness/fidelity.QUALITY_DEFAULTS): over
    # the plan's [quality]; judged on the representative set on the controller
    quality: dict[str, float] = Field(default_factory=dict)
    p50_ms: Annotated[float, Field(gt=0)] | None = None
    p90_ms: Annotated[float, Field(gt=0)] | None = None
    peak_mem_mb: Annotated[float, Field(gt=0)] | None = None  # the model's own (model_mem_mb)
    size_mb: Annotated[float, Field(gt=0)] | None = None
    # the search space: whole-model recipes of these strategies, int8-static's calibration
    # methods and granularities, and mixed precision (layers put back in float, greedily)
    strategies: list[TuneStrategy] = Field(
        default_factory=lambda: list(_FIRST_STRATEGIES), min_length=1
    )
    calibrate_methods: list[CalibrateMethod] = Field(
        default_factory=lambda: list(_FIRST_METHODS), min_length=1
    )
    per_channel: list[bool] = Field(default_factory=lambda: [True, False], min_length=1)
    calibration_samples: Annotated[int, Field(ge=1, le=10_000)] = 64
    mixed_precision: bool = True
    max_float_share: Annotated[float, Field(gt=0, le=1)] = 0.5  # of the quantizable layers
    prune_ratios: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=list)
    lowrank_energies: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=list)
    # the limits: trials (candidates judged), device time and wall time in all
    max_trials: Annotated[int, Field(ge=1, le=1000)] = 30
    device_budget_s: Annotated[float, duration_s()] = 900.0
    time_budget_s: Annotated[float, duration_s()] = 3600.0

    @field_validator("quality")
    @classmethod
    def _known_tolerances(cls, value: dict[str, float]) -> dict[str, float]:
        return _known_quality_keys(value)


def _known_quality_keys(value: dict[str, float]) -> dict[str, float]:
    from harness.fidelity import QUALITY_DEFAULTS

    unknown = sorted(set(value) - set(QUALITY_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown {unknown}; known: {', '.join(QUALITY_DEFAULTS)}")
    return value


class Plan(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    devices: list[str] = Field(default_factory=lambda: [LOCAL_DEVICE_NAME], min_length=1)
    models: list[str] = Field(min_length=1)
    variants: Annotated[list[str], Field(min_length=1)] | None = None  # None: all of them
    devices_dir: LaxPath = Path("../devices")
    models_dir: LaxPath = Path("../models")
    output_dir: LaxPath = Path("../reports/runs")
    measure: Measure = Field(default_factory=Measure)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    inputs: Inputs = Field(default_factory=Inputs)
    # what "worth shipping" demands of a variant's quality, over the defaults
    # (harness/fidelity.QUALITY_DEFAULTS: min_top1_agreement = 0.95, min_snr_db = 20, ...)
    quality: dict[str, float] = Field(default_factory=dict)
    tune: TuneSettings | None = None  # `harness tune --plan`: what to search for
    plan_path: LaxPath | None = None

    @field_validator("quality")
    @classmethod
    def _known_tolerances(cls, value: dict[str, float]) -> dict[str, float]:
        return _known_quality_keys(value)


def load_plan(path: Path) -> Plan:
    data = _read_toml(path)
    data.setdefault("name", path.stem)
    plan = _validate(Plan, data, path)
    base = path.parent
    return plan.model_copy(
        update={
            "devices_dir": base / plan.devices_dir,
            "models_dir": base / plan.models_dir,
            "output_dir": base / plan.output_dir,
            "inputs": plan.inputs.model_copy(
                update={"files": {k: base / v for k, v in plan.inputs.files.items()}}
            ),
            "plan_path": path,
        }
    )


def resolve_model(plan: Plan, ref: str) -> ModelManifest:
    """A plan names a model by manifest name (in models_dir) or by a path to a manifest."""
    candidate = Path(ref)
    if candidate.suffix != ".toml":
        candidate = plan.models_dir / f"{ref}.toml"
    elif not candidate.is_absolute() and plan.plan_path is not None:
        candidate = plan.plan_path.parent / candidate
    if not candidate.is_file():
        known = sorted(p.stem for p in plan.models_dir.glob("*.toml"))
        raise ConfigError(
            plan.plan_path or "plan",
            f"model '{ref}' has no manifest at {candidate}; "
            f"known models: {', '.join(known) or 'none'}",
            "models",
        )
    return load_manifest(candidate)


class Budget(_Strict):
    """Limits for one model (optionally one variant, device, device class) in a release gate."""

    model: str
    variant: str | None = None
    device: str | None = None
    device_class: str | None = None
    p50_ms: Annotated[float, Field(gt=0)] | None = None
    p90_ms: Annotated[float, Field(gt=0)] | None = None
    p99_ms: Annotated[float, Field(gt=0)] | None = None
    peak_mem_mb: Annotated[float, Field(gt=0)] | None = None
    energy_mj: Annotated[float, Field(gt=0)] | None = None
    max_accuracy_drop: Annotated[float, Field(ge=0, le=1)] | None = None
    # every output within this PSNR of fp32's on the same device and inputs (no labels needed)
    min_psnr_db: Annotated[float, Field(gt=0)] | None = None
    # per kind of output (harness/fidelity.py), the worst output of that kind; measured on
    # representative inputs, else the check cannot pass
    min_top1_agreement: Annotated[float, Field(ge=0, le=1)] | None = None
    min_detection_agreement: Annotated[float, Field(ge=0, le=1)] | None = None
    min_mask_iou: Annotated[float, Field(ge=0, le=1)] | None = None
    max_landmark_error_pct: Annotated[float, Field(ge=0)] | None = None
    min_presence_agreement: Annotated[float, Field(ge=0, le=1)] | None = None
    min_sequence_agreement: Annotated[float, Field(ge=0, le=1)] | None = None
    min_embedding_cosine: Annotated[float, Field(ge=-1, le=1)] | None = None
    min_snr_db: float | None = None
    max_regression_pct: Annotated[float, Field(ge=0)] | None = None
    # at least this many times fp32's speed on the same device (paired where the run paired)
    min_speedup: Annotated[float, Field(gt=0)] | None = None
    # at most this share of the profiled time on the CPU when the job asked for another
    # execution provider (needs profile = true in the plan)
    max_cpu_fallback_share: Annotated[float, Field(ge=0, le=1)] | None = None

    @model_validator(mode="after")
    def _has_a_limit(self) -> Budget:
        if not any(getattr(self, name) is not None for name in BUDGET_METRICS):
            raise ValueError(f"a budget needs at least one of {', '.join(BUDGET_METRICS)}")
        return self


BUDGET_METRICS = (
    "p50_ms", "p90_ms", "p99_ms", "peak_mem_mb", "energy_mj", "max_accuracy_drop",
    "min_psnr_db", "max_regression_pct", "min_speedup", "max_cpu_fallback_share",
    "min_top1_agreement", "min_detection_agreement", "min_mask_iou", "max_landmark_error_pct",
    "min_presence_agreement", "min_sequence_agreement", "min_embedding_cosine", "min_snr_db",
)  # fmt: skip


class Budgets(_Strict):
    baseline: str | None = None  # a run id, a path, or "latest": for max_regression_pct
    budget: list[Budget] = Field(min_length=1)


def load_budgets(path: Path) -> Budgets:
    budgets: Budgets = _validate(Budgets, _read_toml(path), path)
    return budgets


def parse_dims(text: str) -> dict[str, int]:
    """`"batch=1,height=640"` -> {"batch": 1, "height": 640} (the command line's --dims)."""
    dims: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if not name or not value.strip().isdigit() or int(value) < 1:
            raise ConfigError("--dims", f"'{part}' is not NAME=N with N >= 1, e.g. height=640")
        dims[name.strip()] = int(value)
    return dims
