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
                      `start_ms` (the runner's start before the model's load)
                      and `process` ("exec" or "forked") added later.
  harness.facts/1  -- `--facts`: platform, Python, runtimes, disk, CPUs.
  harness.runner-session/1 -- `--serve`: JSON lines on stdin and stdout, a hello each
                      way (the runner's with its version), then a forked child and
                      one answer per job; described and typed in persistent.py.
"""

from __future__ import annotations

from typing import Any, Dict, TypedDict, Union, final

RESULT_SCHEMA = "harness.result/1"
FACTS_SCHEMA = "harness.facts/1"
JOB_SCHEMA = "harness.job/1"
SESSION_SCHEMA = "harness.runner-session/1"


# ---------------------------------------------------------------------------- the job spec


# a JSON object as json.loads gives it: read by a parser (ResultDocument, the records'
# reader), never passed on as it is
JsonObject = Dict[str, Any]
# an output's declaration ([outputs.NAME] of the manifest: kind, threshold, ...), echoed
OutputDeclarationDoc = Dict[str, Union[str, float, int, bool]]


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


class FidelitySpec(TypedDict, total=False):
    samples: int  # every output of this many fixed inputs (required)
    classification: bool  # the outputs are class scores (top-k agreement)
    task: str  # the manifest's task, echoed into the document for the controller
    outputs: dict[str, OutputDeclarationDoc]  # the manifest's [outputs.NAME], echoed
    file: str  # the representative set on the device (.npz keyed by input); else the
    # eval set, the input file or seeded inputs
    whole: list[str]  # the set's inputs passed whole with every sample (a state, a rate)


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
    stop_above: float  # stop once the ratio's 95 % interval lies above it ("behind")
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
    virtual: str | None  # what says it is a virtual machine (device.virtual_machine)


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
    source: str  # "representative set", "eval set", "input file", "seeded random inputs"
    outputs: list[list[list[float]]]  # per sample, every output's values flattened
    shapes: list[list[int]]  # each output's shape (first sample)
    names: list[str]  # each output's name
    classification: bool
    task: str  # echoed from the spec
    declared: dict[str, OutputDeclarationDoc]  # echoed from the spec
    elapsed_s: float  # the pass's own time on the device (reading, inferring, copying)
    # per sample, each declared mask output (by index) as its bits at the threshold,
    # packed and base64-encoded; its entry in `outputs` is then empty
    masks: list[dict[str, str]]


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
    stopped: str  # "decided" | "budget" | "max_blocks" | "behind" (past stop_above)
    decision: Decision
    elapsed_s: float


class ProcessDoc(TypedDict, total=False):
    """One process of a job, as the controller pools them."""

    n: int
    p50_ms: float | None
    load_ms: float | None
    start_ms: float | None  # the process's start (exec or fork) to the model's load
    wall_ms: float | None
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
    start_ms: float  # the process's start (exec or fork) to the model's load
    process: str  # "exec": a runner process per job; "forked" by a persistent runner
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
