"""The frozen, typed views `ResultDocument` (harness/runner/result_document.py) gives of a
result document's parts: what the controller reads, never the raw dict."""

from __future__ import annotations

from dataclasses import dataclass, field

from .contract import (
    JsonObject,
    OutputDeclarationDoc,
    ProfiledNode,
    ProviderShare,
)


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
    # what says it is a virtual machine, whose timings are not the hardware's (not a
    # comparability key: the same VM compares with itself)
    virtual: str | None = None


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
    names: list[str] = field(default_factory=list)  # each output's name (older: none)
    task: str = ""
    declared: dict[str, OutputDeclarationDoc] = field(default_factory=dict)  # [outputs.NAME]
    elapsed_s: float | None = None  # the pass's time on the device


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
