"""Device files (`devices/*.toml`) and the inventory: where a device is, how to reach it,
what it measures; the built-in `local` device."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from harness.config.base import (
    KEY_SYNONYMS,
    NAME_PATTERN,
    LaxPath,
    _read_toml,
    _Strict,
    _validate,
    duration_s,
)
from harness.errors import ConfigError

LOCAL_DEVICE_NAME = "local"


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


class Connection(_Strict):
    """How to reach it: over SSH (a host or an ssh_config alias, keys, a jump host) or
    through adb (a serial, on this machine's adb server or another's)."""

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
    connect_timeout_s: Annotated[float, duration_s()] = 10.0
    # the watchdog over every transport operation: this much, plus a command's own timeout
    # or a transfer's size at 64 KiB/s (harness/transport/base.py)
    io_timeout_s: Annotated[float, duration_s()] = 60.0
    serial: str | None = None
    adb: str = "adb"
    adb_host: str | None = None
    adb_port: Annotated[int, Field(ge=1, le=65535)] | None = None


class Placement(_Strict):
    """Where and how a job runs on the device: the interpreter and folder of the runner,
    or the native binaries; the cores it is pinned to; what it may change (governor)."""

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
    sysfs_root: str = "/sys"  # where sysfs is, for power, thermal and cpufreq (tests: a tree)
    # the Python runner: "persistent" (one per session, a forked child per job) or "exec"
    # (a process per job: a device that cannot keep one); unset: HARNESS_RUNNER_MODE, or
    # persistent (harness/execute/session.py)
    runner_mode: Literal["persistent", "exec"] | None = None

    @field_validator("workdir")
    @classmethod
    def _workdir_stays_put(cls, value: str) -> str:
        if ".." in value.replace("\\", "/").split("/"):
            raise ValueError(
                "the workdir may not climb with '..': give a folder under the login's home "
                "(e.g. 'edge-harness') or an absolute path"
            )
        return value


class PowerSettings(_Strict):
    """Power, sampled on the device beside the runner (harness/probes/power.py)."""

    source: PowerSource
    interval_ms: Annotated[int, Field(ge=1, le=60_000)] | None = None  # None: the source's own
    command: list[str] | None = None  # source = "command": an argv that prints watts
    idle_s: Annotated[float, Field(ge=0, le=600)] = 2.0  # the idle baseline before each job

    @model_validator(mode="after")
    def _command_has_argv(self) -> PowerSettings:
        if self.source == "command" and not self.command:
            raise ValueError("source = 'command' needs command = [argv printing watts]")
        return self


class ThermalPolicy(_Strict):
    """Before each job, wait until the hottest zone is below cooldown_c (or cooldown_max_s
    passed); a job that throttled is run again up to rerun_throttled times."""

    cooldown_c: Annotated[float, Field(gt=0, lt=150)] | None = None
    cooldown_max_s: Annotated[float, duration_s(zero_allowed=True)] = 300.0
    throttle_min_freq_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    rerun_throttled: Annotated[int, Field(ge=0, le=5)] = 0


class RetryPolicy(_Strict):
    """Faults of the link (never of a job) are retried `times` times, waiting backoff_s,
    then twice that, ...; a device still unreachable is quarantined for the run."""

    times: Annotated[int, Field(ge=0, le=10)] = 2
    backoff_s: Annotated[float, duration_s(zero_allowed=True)] = 2.0
    # how long to wait for another controller's lease on the device before skipping it
    lease_wait_s: Annotated[float, duration_s(zero_allowed=True)] = 300.0


# where each key of the flat device files before the sections went (a file that still
# has one is told its new place)
MOVED_KEYS: dict[str, str] = {
    **{key: f"connection.{key}" for key in Connection.model_fields},
    **{key: f"placement.{key}" for key in Placement.model_fields},
    **{f"power_{key}": f"power.{key}" for key in ("interval_ms", "command", "idle_s")},
    **{key: f"thermal.{key}" for key in ThermalPolicy.model_fields},
    "retries": "retry.times",
    "retry_backoff_s": "retry.backoff_s",
    "lease_wait_s": "retry.lease_wait_s",
}


class Device(_Strict):
    """What a device is and how to reach it, in sections; never how to talk to it (see
    transport/). In a device file each section is a table: [connection], [placement],
    [power], [thermal], [retry]."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    transport: Literal["local", "ssh", "adb"]
    role: Literal["target", "gateway"] = "target"
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    connection: Connection = Field(default_factory=Connection)
    placement: Placement = Field(default_factory=Placement)
    power: PowerSettings | None = None
    thermal: ThermalPolicy = Field(default_factory=ThermalPolicy)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    source: str = ""  # the device file it came from

    @property
    def device_class(self) -> str:
        return self.labels.get("class", "")

    @property
    def address(self) -> str:
        """Where it is, as `devices list` shows it."""
        link = self.connection
        if self.transport == "ssh":
            user = f"{link.user}@" if link.user else ""
            port = f":{link.port}" if link.port else ""
            where = link.ssh_alias or f"{user}{link.host}{port}"
            return where + (f" via {link.proxy_jump}" if link.proxy_jump else "")
        if self.transport == "adb":
            server = (
                f" on adb server {link.adb_host}:{link.adb_port or 5037}" if link.adb_host else ""
            )
            return f"serial {link.serial}{server}"
        return "-"

    @property
    def runner_kind(self) -> str:
        """Phones have no Python: they run the native binaries unless told otherwise."""
        return self.placement.runner or ("native" if self.transport == "adb" else "python")

    @property
    def device_workdir(self) -> str:
        if self.transport == "adb" and self.placement.workdir == DEFAULT_WORKDIR:
            return ADB_WORKDIR
        return self.placement.workdir

    @model_validator(mode="after")
    def _ssh_needs_a_host(self) -> Device:
        if self.transport == "ssh" and not (self.connection.host or self.connection.ssh_alias):
            raise ValueError("an ssh device needs 'host' or 'ssh_alias' under [connection]")
        if self.transport == "adb" and not self.connection.serial:
            raise ValueError("an adb device needs 'serial' under [connection] (see `adb devices`)")
        return self

    def redacted(self) -> dict[str, Any]:
        """The record as written to run.json: no secrets, only the names of where they live."""
        return self.model_dump(mode="json", exclude_none=True)


def builtin_local_device(workdir: str | None = None) -> Device:
    """The built-in device: this machine, running the runner with this interpreter."""
    return Device(
        name=LOCAL_DEVICE_NAME,
        transport="local",
        placement=Placement(
            python=sys.executable,
            workdir=workdir or str(Path.home() / ".cache" / "edge-harness" / "local-device"),
        ),
        labels={"class": "controller"},
        description="this machine (built in)",
        source="built-in",
    )


def select_devices(
    names: list[str], inventory: dict[str, Device], selectors: list[str]
) -> list[str]:
    """The plan's devices that match every `key=value` label selector and, if names are
    given among the selectors, are one of them (`--devices pi5-a,class=pi5`). An empty
    selection is refused, never read as "all": it is what an unset CI variable gives."""
    selectors = [s.strip() for s in selectors if s.strip()]
    if not selectors:
        raise ConfigError(
            "--devices",
            "is empty (an unset variable?): name devices or labels, e.g. --devices class=pi5, "
            "or leave the option out to run every device of the plan",
        )
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
    device belongs to exactly one shard and every controller computes the same split. A
    shard with no device is refused: a controller that would run nothing must not pass."""
    chosen = [name for k, name in enumerate(sorted(names)) if k % count == index - 1]
    if not chosen:
        raise ConfigError(
            "--shard",
            f"shard {index}/{count} has no device: the plan's selection has {len(names)} "
            f"device(s) ({', '.join(sorted(names))}), so use at most {len(names)} shard(s)",
        )
    return chosen


def load_device(path: Path) -> Device:
    data = _read_toml(path)
    data.setdefault("name", path.stem)
    _refuse_moved_keys(data, path)
    device = _validate(Device, data, path)
    binaries = {
        tool: binary.model_copy(update={"local": path.parent / binary.local})
        if binary.local is not None
        else binary
        for tool, binary in device.placement.binaries.items()
    }
    placement = device.placement.model_copy(update={"binaries": binaries})
    return device.model_copy(update={"placement": placement})


def _refuse_moved_keys(data: dict[str, Any], path: Path) -> None:
    """A key of the flat device files from before the sections: name its new place."""
    if isinstance(data.get("power"), str):
        raise ConfigError(
            path,
            f"power is a table now: write [power] with source = {data['power']!r} "
            "(and interval_ms, command, idle_s there, without the power_ prefix)",
            "power",
        )
    for key in data:
        moved = MOVED_KEYS.get(KEY_SYNONYMS.get(key.lower(), key))
        if moved is not None:
            section, name = moved.split(".")
            raise ConfigError(
                path,
                f"'{key}' belongs in the [{section}] table now: write it under [{section}] "
                f"as `{name} = ...` (a top-level key after a table would land inside it: "
                "put top-level keys first)",
                key,
            )


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
