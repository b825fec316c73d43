"""What the controller and the runner exchange: the job spec the controller writes and the
result document the runner prints, with their schema versions. Shipped to the device with
the runner; standard library only, Python 3.8+.

Format history:
  harness.job/1    -- the job spec: model, runtime, provider, threads, warmup, stop rule,
                      inputs, eval set, samplers, preparation; from the watchdog on it also
                      carries `deadline_s` and `running_file`.
  harness.result/1 -- the result document: status, error, runtime, load/first ms,
                      latencies_ns, memory checkpoints and samples, device state before and
                      after, power readings and windows, eval outputs; an eval that
                      failed after the timed loop leaves `eval_error` beside the latencies;
                      `fidelity` (every output of a few fixed inputs) or `fidelity_error`
                      (added later, read as absent from older runners).
  harness.facts/1  -- `--facts`: platform, Python, runtimes, disk, CPUs.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any, Dict, List, TypedDict, Union, cast, final

RESULT_SCHEMA = "harness.result/1"
FACTS_SCHEMA = "harness.facts/1"
JOB_SCHEMA = "harness.job/1"


# ---------------------------------------------------------------------------- the job spec


# a JSON object as json.loads gives it: read by a parser (ResultDocument, the records'
# reader), never passed on as it is
JsonObject = Dict[str, Any]


class InputSpecDoc(TypedDict, total=False):
    """A model input as the manifest describes it (config.models.InputSpecDoc)."""

    shape: list[int | str]  # dims by number or by name (plan's `dims`); [] a scalar
    low: float  # seeded values drawn in [low, high)
    high: float
    values: list[int | float] | None  # or one of these


@final
class FixedStop(TypedDict):
    iterations: int


@final
class AdaptiveStop(TypedDict):
    """Until the median's 95 % CI is within ±target_ci (relative), between the bounds; at
    max_seconds it stops whatever the count."""

    min_iterations: int
    max_iterations: int
    target_ci: float
    max_seconds: float


# when the timed loop stops; the same rule for jobs.py, the runner and native tools' argv
StopRule = Union[FixedStop, AdaptiveStop]


class EvalSpec(TypedDict):
    file: str  # the eval set on the device (.npz)
    inputs: dict[str, str]  # model input -> array name
    whole: list[str]  # inputs passed whole with every sample
    top_k: int


class FidelitySpec(TypedDict):
    samples: int  # every output of this many fixed inputs
    classification: bool  # the outputs are class scores (top-k agreement)


class SamplerSpec(TypedDict, total=False):
    """What sampler.py reads and how often: a power source, or this runner's memory."""

    source: str  # a power source (config.PowerSource), or "memory"
    root: str  # the sysfs root
    interval_s: float
    command: list[str] | None  # source = "command": an argv that prints watts
    idle_s: float  # power: the idle baseline before the model loads
    min_readings: int  # power: the idle window is held open until then
    out: str  # where the sampler writes its readings (JSON lines)
    pid: int  # memory: the runner's own process (set by the runner)


PowerSpec = SamplerSpec
MemorySamplerSpec = SamplerSpec


class PrepareSpec(TypedDict, total=False):
    cores: list[int]
    governor: str


class PairedSpec(TypedDict, total=False):
    budget_s: float
    band: float
    block_ms: float
    block_size: int  # fixed (tests); else from block_ms
    reference_path: str  # set in the spec: fp32 on the device


class ProfileSpec(TypedDict, total=False):
    runs: int
    top_n: int
    prefix: str  # set in the spec: where the runtime writes its trace


class JobSpec(TypedDict):
    """What the controller asks of one runner process (`<workdir>/jobs/<run>/<job>.json`)."""

    schema: str  # JOB_SCHEMA
    job_id: str
    model_path: str  # on the device
    runtime: str  # "onnxruntime" | "tflite"
    provider: str  # an execution provider, or a TFLite delegate
    threads: int
    warmup: int
    stop: StopRule
    seed: int
    dims: dict[str, int]  # dynamic dimensions, by name or "input:axis"
    input_file: str | None  # .npz/.npy on the device, else seeded inputs
    input_specs: dict[str, InputSpecDoc]  # by input name
    eval: EvalSpec | None
    fidelity: FidelitySpec | None
    inject_slowdown: float  # testing regression detectors only
    power: PowerSpec | None
    sysfs_root: str
    prepare: PrepareSpec
    memory_sampler: MemorySamplerSpec | None
    deadline_s: float  # the runner's own watchdog ends it here, controller or not
    running_file: str | None  # kept while it runs: "pid pgid job"
    paired: PairedSpec | None  # a paired job (paired.py)
    profile: ProfileSpec | None  # a profile job (op_profile.py)


# ------------------------------------------------------- the result document, as written


class MemoryKb(TypedDict, total=False):
    """One reading of the process's memory (kB): VmRSS, VmHWM, VmSwap, smaps_rollup's Pss."""

    rss_kb: int | None
    hwm_kb: float | None
    swap_kb: int | None
    pss_kb: int | None


class MemoryCheckpoints(TypedDict, total=False):
    before_load: MemoryKb
    after_load: MemoryKb
    after_run: MemoryKb
    model_kb: float  # a native tool's own figure for the model


class DeviceStateDoc(TypedDict, total=False):
    thermal_c: dict[str, float]
    cpufreq_khz: dict[str, list[int]]  # cpu -> [current, maximum]
    governors: dict[str, str]
    throttled: str | None  # a Pi's `vcgencmd get_throttled`
    nvpmodel: str | None  # a Jetson's `nvpmodel -q`
    battery: JsonObject  # a phone's `dumpsys battery` (probes/thermal.py parses it)


class StatesDoc(TypedDict, total=False):
    before: DeviceStateDoc
    after: DeviceStateDoc


class IdentityDoc(TypedDict, total=False):
    cpu_model: str | None
    cpu_parts: list[str]
    cpu_count: int | None
    ram_mb: int | None
    os: str
    kernel: str
    board: str | None  # the device tree's model
    l4t: str | None  # a Jetson's L4T release


class RuntimeDoc(TypedDict, total=False):
    name: str
    module: str
    version: str | None
    providers: list[str]
    tool: str  # a native tool's name


class ErrorDoc(TypedDict, total=False):
    type: str
    message: str
    stage: str
    traceback: str
    errno: int | None
    disk_free_bytes: int | None


class PreparedDoc(TypedDict, total=False):
    applied: bool
    error: str
    cpus: list[int]  # cpu_affinity: the CPUs the process runs on
    governor: str  # governor: the one set
    previous: dict[str, str]  # governor: each CPU's before (restored after the job)


class PowerDoc(TypedDict, total=False):
    """The power sampler's raw readings ({"t_ns", "raw": {...}}, parsed on the controller
    by harness/probes/power.py) and the windows they are read in."""

    source: str
    interval_s: float | None
    idle_window_ns: list[int]
    timed_window_ns: list[int]
    iterations: int
    samples: list[JsonObject]  # {"t_ns", "raw": {...}}
    error: str | None
    window: str  # "tool run": a native tool's whole run, not its timed loop


class SampledDoc(TypedDict, total=False):
    samples: list[JsonObject]  # {"t_ns", "raw": {VmRSS, VmHWM, VmSwap, Pss}}
    error: str | None


class FidelityDoc(TypedDict, total=False):
    n: int
    source: str  # "eval set", "input file", "seeded random inputs"
    outputs: list[list[list[float]]]  # per sample, every output's values flattened
    shapes: list[list[int]]  # each output's shape (first sample)
    classification: bool


class EvalDoc(TypedDict, total=False):
    n: int
    top_k: list[list[int]]  # per sample, the first output's top-k indices
    outputs: list[list[float]] | None  # the first output's values, under a cap


class Block(TypedDict):
    v: str  # "ref" | "variant"
    ns: list[int]


class Decision(TypedDict):
    verdict: str  # "slower" | "faster" | "equivalent" | "inconclusive"
    blocks: int
    ratio: float | None  # variant / reference latency
    ratio_low: float | None
    ratio_high: float | None


class PairedDoc(TypedDict, total=False):
    block_size: int
    band: float
    blocks: list[Block]
    looks: list[Decision]
    stopped: str  # "decided" | "budget" | "max_blocks"
    decision: Decision
    elapsed_s: float


class ProcessDoc(TypedDict, total=False):
    """One process of a job, as the controller pools them."""

    n: int
    p50_ms: float | None
    load_ms: float | None
    stop_reason: str | None
    peak_hwm_kb: float | None


class ReportedStatsDoc(TypedDict, total=False):
    """A native tool's summary statistics (ms), when it prints no samples."""

    n: int | None
    mean_ms: float | None
    std_ms: float | None
    min_ms: float | None
    max_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class ToolDoc(TypedDict, total=False):
    name: str
    argv: list[str]
    extra: JsonObject  # what the tool printed beyond the statistics


class ProfiledNode(TypedDict):
    node: str
    op_type: str
    provider: str
    calls: float  # per run
    us: float  # per run


class ProviderShare(TypedDict):
    nodes: int
    us: float


class ProfileDoc(TypedDict, total=False):
    """A profile job's per-layer profile (op_profile.py; harness/native/op_profiles.py reads
    native tools' into it): the top N nodes and the rest summed, time by op type and by
    provider (per run); LiteRT's op list has counts and no timing."""

    source: str
    runs: int | None
    node_count: int
    run_us: float | None  # median
    mean_run_us: float | None
    nodes: list[ProfiledNode]
    op_types: dict[str, float]  # op type -> us per run
    providers: dict[str, ProviderShare]
    op_counts: dict[str, int]  # LiteRT
    delegate_partitions: int  # LiteRT
    timing: str  # why there is no timing (LiteRT)
    tool_op_types: JsonObject  # benchmark_model's own summary by node type


class FedInput(TypedDict):
    name: str
    dtype: str
    shape: list[int]


class ResultDoc(TypedDict, total=False):
    """`harness.result/1` as the runner (and native/commands.py) writes it. Every part
    but the schema and status may be absent: a failed job, a native tool, an older runner."""

    schema: str
    status: str  # "ok" | "error"
    error: ErrorDoc | None
    python: str
    arch: str
    device: IdentityDoc
    job_id: str | None
    threads: int | None
    wall_ms: float
    runtime: RuntimeDoc
    load_ms: float | None
    first_ms: float | None
    inputs: list[FedInput]  # as fed
    inject_slowdown: float
    latencies_ns: list[int]
    stop_reason: str
    memory_kb: MemoryCheckpoints
    memory_sampled: SampledDoc
    state: StatesDoc
    thermal_c: dict[str, dict[str, float]]  # records before the state snapshots: zones
    preparation: dict[str, PreparedDoc]
    power: PowerDoc
    eval: EvalDoc
    eval_error: str
    fidelity: FidelityDoc
    fidelity_error: str
    paired: PairedDoc
    paired_processes: list[PairedDoc]  # the controller's pooled record
    processes: list[ProcessDoc]  # the controller's pooled record
    profile: ProfileDoc
    reported_stats: ReportedStatsDoc
    tool: ToolDoc


class JobError(Exception):
    """A failure of this job with a message meant for the user."""


def result_problem(doc: object) -> str | None:
    """Why `doc` (the runner's stdout, parsed) is not a result document the controller can
    read: another schema, an unknown status, an ok result without timings, an error
    result without an error. None when it is one."""
    if not isinstance(doc, dict) or doc.get("schema") != RESULT_SCHEMA:
        schema = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        return (
            "expected a %s document, got %r; is the runner on the device from another "
            "harness version?" % (RESULT_SCHEMA, schema)
        )
    status = doc.get("status")
    if status not in ("ok", "error"):
        return "unknown runner status %r" % (status,)
    if status == "ok":
        latencies = doc.get("latencies_ns")
        blocks = _mapping(doc.get("paired")).get("blocks")  # a paired job's timings
        if not (isinstance(latencies, list) and latencies) and not blocks and "profile" not in doc:
            return "result has no latencies"
        if not all(isinstance(v, int) and v > 0 for v in latencies or []):
            return "latencies must be positive integers (ns)"
    elif not isinstance(doc.get("error"), dict):
        return "error result without an error"
    return None


# ------------------------------------------------------ the result document, as read


@dataclass(frozen=True)
class Memory:
    """One memory reading of the process (kB); None where it was not read."""

    rss_kb: float | None = None
    hwm_kb: float | None = None
    swap_kb: float | None = None
    pss_kb: float | None = None


@dataclass(frozen=True)
class DeviceState:
    """The device as a job started or ended (empty where nothing was read)."""

    thermal_c: dict[str, float] = field(default_factory=dict)
    cpufreq_khz: dict[str, list[int]] = field(default_factory=dict)
    governors: dict[str, str] = field(default_factory=dict)
    throttled: str | None = None
    nvpmodel: str | None = None
    battery_status: str | None = None
    recorded: bool = False  # whether the runner took this snapshot at all


@dataclass(frozen=True)
class Identity:
    """The comparability keys of the device the job ran on."""

    cpu_model: str | None = None
    ram_mb: int | None = None
    os: str | None = None
    kernel: str | None = None
    board: str | None = None  # the device tree's model, else a Jetson's L4T release


@dataclass(frozen=True)
class ErrorInfo:
    type: str | None = None
    message: str | None = None
    stage: str | None = None
    errno: int | None = None
    disk_free_bytes: int | None = None


@dataclass(frozen=True)
class Prepared:
    """One change the runner made for the job (cpu_affinity, governor)."""

    what: str
    applied: bool
    error: str | None


@dataclass(frozen=True)
class PowerReadings:
    """The power sampler's raw readings (parsed by harness/probes/power.py) and windows."""

    source: str = ""
    interval_s: float | None = None
    idle_window_ns: list[int] | None = None
    timed_window_ns: list[int] | None = None
    iterations: int = 0
    samples: list[JsonObject] = field(default_factory=list)
    error: str | None = None
    window: str | None = None  # "tool run": a native tool's whole run


@dataclass(frozen=True)
class Fidelity:
    """Every output of a few fixed inputs (per sample, each output's values flattened)."""

    n: int
    source: str | None
    outputs: list[list[list[float]]]
    shapes: list[list[int]]
    classification: bool


@dataclass(frozen=True)
class EvalOutputs:
    n: int
    top_k: list[list[int]]  # per sample
    outputs: list[list[float]] | None  # the first output's values, under a cap


@dataclass(frozen=True)
class ProcessSummary:
    n: int = 0
    p50_ms: float | None = None
    load_ms: float | None = None
    stop_reason: str | None = None
    peak_hwm_kb: float | None = None


@dataclass(frozen=True)
class ReportedStats:
    """A native tool's summary statistics (ms)."""

    n: int | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


@dataclass(frozen=True)
class Profile:
    """A profile job's per-layer profile, per run: the top N nodes (the rest summed in
    one), time by op type and by provider; LiteRT's op list has counts and no timing."""

    source: str | None = None
    runs: int | None = None
    node_count: int = 0
    run_us: float | None = None  # the median run
    mean_run_us: float | None = None  # the mean, as the nodes' times are
    nodes: list[ProfiledNode] = field(default_factory=list)
    op_types: dict[str, float] = field(default_factory=dict)  # op type -> us per run
    providers: dict[str, ProviderShare] = field(default_factory=dict)
    op_counts: dict[str, int] = field(default_factory=dict)  # LiteRT
    delegate_partitions: int = 0  # LiteRT: the partitions a delegate took
    timing: str | None = None  # why there is no timing

    @property
    def timed(self) -> bool:
        return bool(self.op_types)


def _mapping(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return str(value) if value is not None and value != "" else None


def _memory(raw: JsonObject, names: dict[str, str]) -> Memory:
    return Memory(**{mine: _number(raw.get(theirs)) for mine, theirs in names.items()})


_REPORTED_FIGURES = ("mean_ms", "std_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms",
                     "p99_ms")  # fmt: skip
_CHECKPOINT_NAMES = {k: k for k in ("rss_kb", "hwm_kb", "swap_kb", "pss_kb")}
_SAMPLER_NAMES = {"rss_kb": "VmRSS", "hwm_kb": "VmHWM", "swap_kb": "VmSwap", "pss_kb": "Pss"}


class ResultDocument:
    """The result document as the controller reads it: each part with its type, and its
    value when the part is absent — a failed job, a native tool's document (no samples,
    summary statistics instead), a record from an older runner. The only reader of the
    document's keys: the controller asks this, never the raw dict, and gets typed values
    (tests/unit/test_contract.py holds it to that)."""

    def __init__(self, raw: ResultDoc | JsonObject) -> None:
        self.raw: JsonObject = dict(raw)

    def _part(self, key: str) -> JsonObject:
        return _mapping(self.raw.get(key))

    @property
    def status(self) -> str:
        return str(self.raw.get("status") or "error")

    @property
    def error(self) -> ErrorInfo:
        """What failed (all None when nothing did)."""
        error = self._part("error")
        return ErrorInfo(
            _text(error.get("type")), _text(error.get("message")), _text(error.get("stage")),
            _integer(error.get("errno")), _integer(error.get("disk_free_bytes")),
        )  # fmt: skip

    def describe_error(self) -> str:
        error = self.error
        return "%s while %s: %s" % (error.type, error.stage, error.message)

    def disk_full(self, min_free_bytes: int) -> bool:
        """Whether the job failed for a full disk on the device: its error is ENOSPC or
        EDQUOT, or less than `min_free_bytes` was free in the job's folder when it failed
        (what failed then may only have said it could not start)."""
        error = self.error
        free = error.disk_free_bytes
        return error.errno in (errno.ENOSPC, errno.EDQUOT) or (
            free is not None and free < min_free_bytes
        )

    @property
    def arch(self) -> str | None:
        return _text(self.raw.get("arch"))

    @property
    def runtime_version(self) -> str | None:
        return _text(self._part("runtime").get("version"))

    @property
    def identity(self) -> Identity:
        device = self._part("device")
        return Identity(
            cpu_model=_text(device.get("cpu_model")),
            ram_mb=_integer(device.get("ram_mb")),
            os=_text(device.get("os")),
            kernel=_text(device.get("kernel")),
            board=_text(device.get("board")) or _text(device.get("l4t")),
        )

    @property
    def load_ms(self) -> float | None:
        return _number(self.raw.get("load_ms"))

    @property
    def first_ms(self) -> float | None:
        return _number(self.raw.get("first_ms"))

    @property
    def stop_reason(self) -> str | None:
        return _text(self.raw.get("stop_reason"))

    @property
    def latencies_ns(self) -> list[int]:
        return list(self.raw.get("latencies_ns") or [])

    @property
    def inject_slowdown(self) -> float:
        return float(self.raw.get("inject_slowdown") or 0.0)

    def memory_kb(self, checkpoint: str) -> Memory:
        """The process's memory at `before_load`, `after_load` or `after_run`."""
        return _memory(_mapping(self._part("memory_kb").get(checkpoint)), _CHECKPOINT_NAMES)

    @property
    def memory_readings(self) -> list[Memory]:
        """Every memory reading: the checkpoints, then the memory sampler's."""
        checkpoints = [v for v in self._part("memory_kb").values() if isinstance(v, dict)]
        sampled = [
            _mapping(s).get("raw") for s in self._part("memory_sampled").get("samples") or []
        ]
        return [_memory(c, _CHECKPOINT_NAMES) for c in checkpoints] + [
            _memory(_mapping(s), _SAMPLER_NAMES) for s in sampled
        ]

    @property
    def model_kb(self) -> float | None:
        """A native tool's own figure for the model's memory."""
        return _number(self._part("memory_kb").get("model_kb"))

    def state(self, when: str) -> DeviceState:
        """The device's state `before` or `after` the job (records before the state
        snapshots kept the zones' temperatures only, under `thermal_c`)."""
        state = _mapping(self._part("state").get(when))
        zones = _mapping(state.get("thermal_c")) or _mapping(self._part("thermal_c").get(when))
        return DeviceState(
            thermal_c=zones,
            cpufreq_khz=_mapping(state.get("cpufreq_khz")),
            governors=_mapping(state.get("governors")),
            throttled=_text(state.get("throttled")),
            nvpmodel=_text(state.get("nvpmodel")),
            battery_status=_text(_mapping(state.get("battery")).get("status")),
            recorded=bool(state),
        )

    @property
    def preparation(self) -> list[Prepared]:
        """What the runner was asked to change for the job, and whether it could."""
        return [
            Prepared(what, bool(_mapping(done).get("applied")), _text(_mapping(done).get("error")))
            for what, done in self._part("preparation").items()
        ]

    @property
    def power(self) -> PowerReadings:
        """Empty where the device has no power source."""
        power = self._part("power")
        return PowerReadings(
            source=str(power.get("source") or ""),
            interval_s=_number(power.get("interval_s")),
            idle_window_ns=power.get("idle_window_ns") or None,
            timed_window_ns=power.get("timed_window_ns") or None,
            iterations=int(power.get("iterations") or 0),
            samples=[s for s in power.get("samples") or [] if isinstance(s, dict)],
            error=_text(power.get("error")),
            window=_text(power.get("window")),
        )

    @property
    def fidelity(self) -> Fidelity | None:
        """Every output of a few fixed inputs (eval set, input file, seeded random
        inputs); None where the job did not read them."""
        fidelity = self._part("fidelity")
        if not fidelity.get("outputs"):
            return None
        return Fidelity(
            n=int(fidelity.get("n") or 0),
            source=_text(fidelity.get("source")),
            outputs=fidelity["outputs"],
            shapes=list(fidelity.get("shapes") or []),
            classification=bool(fidelity.get("classification")),
        )

    @property
    def paired_processes(self) -> list[PairedDoc]:
        """A paired job's processes (the controller's pooled record)."""
        processes = [p for p in self.raw.get("paired_processes") or [] if isinstance(p, dict)]
        return cast(List[PairedDoc], processes)

    @property
    def paired(self) -> PairedDoc | None:
        """One process's paired comparison (before the controller pools them)."""
        paired = self.raw.get("paired")
        return cast(PairedDoc, paired) if isinstance(paired, dict) else None

    @property
    def profile(self) -> Profile | None:
        """A profile job's per-layer profile (None for other jobs)."""
        profile = self._part("profile")
        if not profile:
            return None
        nodes = [n for n in profile.get("nodes") or [] if isinstance(n, dict)]
        return Profile(
            source=_text(profile.get("source")),
            runs=_integer(profile.get("runs")),
            node_count=int(profile.get("node_count") or 0),
            run_us=_number(profile.get("run_us")),
            mean_run_us=_number(profile.get("mean_run_us")),
            nodes=cast(List[ProfiledNode], nodes),
            op_types={str(k): float(v) for k, v in _mapping(profile.get("op_types")).items()},
            providers=cast(Dict[str, ProviderShare], _mapping(profile.get("providers"))),
            op_counts={str(k): int(v) for k, v in _mapping(profile.get("op_counts")).items()},
            delegate_partitions=int(profile.get("delegate_partitions") or 0),
            timing=_text(profile.get("timing")),
        )

    @property
    def eval_error(self) -> str | None:
        """Why the eval pass failed after the timed loop (the latencies stand)."""
        return _text(self.raw.get("eval_error"))

    @property
    def eval(self) -> EvalOutputs | None:
        """Per eval sample, the first output's top-k; None where the job had no eval."""
        evaluation = self._part("eval")
        if "top_k" not in evaluation:
            return None
        outputs = evaluation.get("outputs")
        return EvalOutputs(int(evaluation.get("n") or 0), list(evaluation["top_k"]),
                           outputs if isinstance(outputs, list) else None)  # fmt: skip

    @property
    def processes(self) -> list[ProcessSummary]:
        """Per process of the job (the controller pools them)."""
        return [
            ProcessSummary(
                n=int(p.get("n") or 0),
                p50_ms=_number(p.get("p50_ms")),
                load_ms=_number(p.get("load_ms")),
                stop_reason=_text(p.get("stop_reason")),
                peak_hwm_kb=_number(p.get("peak_hwm_kb")),
            )
            for p in map(_mapping, self.raw.get("processes") or [])
        ]

    @property
    def reported_stats(self) -> ReportedStats | None:
        """A native tool's summary statistics (None when it printed samples, or is none)."""
        stats = self._part("reported_stats")
        if not stats:
            return None
        figures = {k: _number(stats.get(k)) for k in _REPORTED_FIGURES}
        return ReportedStats(_integer(stats.get("n")), **figures)

    @property
    def tool_name(self) -> str:
        return str(self._part("tool").get("name") or "the tool")
