"""The result document as the controller reads it (`ResultDocument` and its frozen, typed
views) and the check that a runner's stdout is one (`result_problem`). The controller's
side of harness/runner/contract.py: not shipped to the device, standard library only."""

from __future__ import annotations

import base64
import errno
import math
from typing import Dict, List, cast

from .contract import (
    RESULT_SCHEMA,
    JsonObject,
    PairedDoc,
    ProfiledNode,
    ProviderShare,
    ResultDoc,
)
from .result_views import (
    DeviceState,
    ErrorInfo,
    EvalOutputs,
    Fidelity,
    Identity,
    Memory,
    PowerReadings,
    Prepared,
    ProcessSummary,
    Profile,
    ReportedStats,
)


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


def _mapping(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _with_masks(
    outputs: list[list[list[float]]], masks: list[dict[str, str]], shapes: list[list[int]]
) -> list[list[list[float]]]:
    """The outputs with each bit-packed mask (runner/outputs.py: numpy's packbits, most
    significant bit first) as its 0/1 values; stdlib only, as everything in this folder."""
    if not masks:
        return outputs
    unpacked = [list(sample) for sample in outputs]
    for sample, packed in zip(unpacked, masks):
        for index, bits in packed.items():
            size = math.prod(shapes[int(index)]) if int(index) < len(shapes) else 0
            on = [
                float((byte >> shift) & 1)
                for byte in base64.b64decode(bits)
                for shift in range(7, -1, -1)
            ]
            sample[int(index)] = on[:size]
    return unpacked


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
            virtual=_text(device.get("virtual")),
        )

    @property
    def load_ms(self) -> float | None:
        return _number(self.raw.get("load_ms"))

    @property
    def start_ms(self) -> float | None:
        """The runner's start before the model's load: its exec, or its fork."""
        return _number(self.raw.get("start_ms"))

    @property
    def process(self) -> str | None:
        """ "exec" (a runner process per job) or "forked" (a persistent runner's child);
        None for a native tool or an older runner."""
        return _text(self.raw.get("process"))

    @property
    def wall_ms(self) -> float | None:
        return _number(self.raw.get("wall_ms"))

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
        shapes = list(fidelity.get("shapes") or [])
        return Fidelity(
            n=int(fidelity.get("n") or 0),
            source=_text(fidelity.get("source")),
            outputs=_with_masks(fidelity["outputs"], fidelity.get("masks") or [], shapes),
            shapes=shapes,
            classification=bool(fidelity.get("classification")),
            names=[str(n) for n in fidelity.get("names") or []],
            elapsed_s=_number(fidelity.get("elapsed_s")),
            task=_text(fidelity.get("task")) or "",
            declared={
                str(k): v for k, v in (fidelity.get("declared") or {}).items()
                if isinstance(v, dict)
            },
        )  # fmt: skip

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
