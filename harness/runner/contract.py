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
from typing import Any, TypedDict

RESULT_SCHEMA = "harness.result/1"
FACTS_SCHEMA = "harness.facts/1"
JOB_SCHEMA = "harness.job/1"


class JobSpec(TypedDict):
    """What the controller asks of one runner process (`<workdir>/jobs/<run>/<job>.json`)."""

    schema: str  # JOB_SCHEMA
    job_id: str
    model_path: str  # on the device
    runtime: str  # "onnxruntime" | "tflite"
    provider: str  # an execution provider, or a TFLite delegate
    threads: int
    warmup: int
    stop: dict[str, Any]  # {"iterations": N} or min/max_iterations, target_ci, max_seconds
    seed: int
    dims: dict[str, int]  # dynamic dimensions, by name or "input:axis"
    input_file: str | None  # .npz/.npy on the device, else seeded inputs
    input_specs: dict[str, dict[str, Any]]
    eval: dict[str, Any] | None  # {"file", "inputs", "top_k"}
    fidelity: dict[str, Any] | None  # {"samples": N}: every output of N fixed inputs
    inject_slowdown: float  # testing regression detectors only
    power: dict[str, Any] | None  # the power sampler's spec, with its output path
    sysfs_root: str
    prepare: dict[str, Any]  # {"cores": [...], "governor": ...}
    memory_sampler: dict[str, Any] | None
    deadline_s: float  # the runner's own watchdog ends it here, controller or not
    running_file: str | None  # kept while it runs: "pid pgid job"
    # a paired job (paired.py): reference_path, budget_s, band, block_ms (or block_size)
    paired: dict[str, Any] | None
    # a profile job (op_profile.py): runs, top_n, prefix (where the runtime writes its trace)
    profile: dict[str, Any] | None


class JobError(Exception):
    """A failure of this job with a message meant for the user."""


class ResultDocument:
    """The result document as the controller reads it: each part it uses, with its type and
    its value when the part is absent — a failed job, a native tool's document (no samples,
    summary statistics instead), a record from an older runner. The only reader of the
    document's keys: the controller asks this, never the raw dict."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def _part(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key)
        return value if isinstance(value, dict) else {}

    @property
    def status(self) -> str:
        return str(self.raw.get("status") or "error")

    @property
    def error(self) -> dict[str, Any]:
        """type, message, stage and traceback of what failed (empty when nothing did)."""
        return self._part("error")

    def describe_error(self) -> str:
        error = self.error
        return "%s while %s: %s" % (error.get("type"), error.get("stage"), error.get("message"))

    def disk_full(self, min_free_bytes: int) -> bool:
        """Whether the job failed for a full disk on the device: its error is ENOSPC or
        EDQUOT, or less than `min_free_bytes` was free in the job's folder when it failed
        (what failed then may only have said it could not start)."""
        error = self.error
        free = error.get("disk_free_bytes")
        return error.get("errno") in (errno.ENOSPC, errno.EDQUOT) or (
            isinstance(free, int) and free < min_free_bytes
        )

    @property
    def arch(self) -> str | None:
        return self.raw.get("arch")

    @property
    def runtime_version(self) -> str | None:
        return self._part("runtime").get("version")

    @property
    def identity(self) -> dict[str, Any]:
        """cpu_model, cpu_parts, ram_mb, os, kernel, board, l4t."""
        return self._part("device")

    @property
    def load_ms(self) -> float | None:
        return self.raw.get("load_ms")

    @property
    def first_ms(self) -> float | None:
        return self.raw.get("first_ms")

    @property
    def stop_reason(self) -> str | None:
        return self.raw.get("stop_reason")

    @property
    def latencies_ns(self) -> list[int]:
        return list(self.raw.get("latencies_ns") or [])

    @property
    def inject_slowdown(self) -> float:
        return float(self.raw.get("inject_slowdown") or 0.0)

    def memory_kb(self, checkpoint: str) -> dict[str, Any]:
        """rss_kb, hwm_kb, swap_kb, pss_kb at `before_load`, `after_load` or `after_run`
        (and a native tool's `model_kb`)."""
        value = self._part("memory_kb").get(checkpoint)
        return value if isinstance(value, dict) else {}

    @property
    def memory_checkpoints(self) -> dict[str, Any]:
        return self._part("memory_kb")

    @property
    def memory_samples(self) -> list[dict[str, Any]]:
        """The memory sampler's raw readings (VmRSS, VmHWM, VmSwap, Pss in kB)."""
        samples = self._part("memory_sampled").get("samples") or []
        return [s.get("raw") or {} for s in samples]

    def state(self, when: str) -> dict[str, Any]:
        """The device's state `before` or `after` the job: thermal_c, cpufreq_khz,
        governors, throttled, nvpmodel, battery."""
        value = self._part("state").get(when)
        return value if isinstance(value, dict) else {}

    def thermal_c(self, when: str) -> dict[str, Any]:
        """Zone temperatures `before` or `after` (records before the state snapshots kept
        them under `thermal_c`)."""
        older = self._part("thermal_c").get(when)
        return older if isinstance(older, dict) else (self.state(when).get("thermal_c") or {})

    @property
    def preparation(self) -> dict[str, Any]:
        """What the runner changed for the job: cpu_affinity, governor ({applied, error})."""
        return self._part("preparation")

    @property
    def power(self) -> dict[str, Any]:
        """source, interval_s, idle_window_ns, timed_window_ns, iterations, samples,
        error, window (empty where the device has no power source)."""
        return self._part("power")

    @property
    def fidelity(self) -> dict[str, Any]:
        """n, source (eval set, input file, seeded random inputs), outputs: per sample,
        every output's values flattened; shapes: each output's shape (first sample);
        classification: the job said its outputs are class scores."""
        return self._part("fidelity")

    @property
    def paired_processes(self) -> list[dict[str, Any]]:
        """A paired job's processes (the controller's pooled record): each one's blocks
        ({"v": "ref" | "variant", "ns": [...]}), block_size, band, looks, decision,
        stopped, elapsed_s."""
        return [p for p in self.raw.get("paired_processes") or [] if isinstance(p, dict)]

    @property
    def profile(self) -> dict[str, Any]:
        """A profile job's per-layer profile (op_profile.py): source, runs, node_count,
        run_us (median), mean_run_us, nodes [{node, op_type, provider, calls, us}] (per
        run; the top N and the rest summed), op_types {op: us per run}, providers {name:
        {nodes, us}}; for LiteRT op_counts, delegate_partitions and why there is no timing;
        from benchmark_model also tool_op_types, its own summary by node type."""
        return self._part("profile")

    @property
    def eval_error(self) -> str | None:
        """Why the eval pass failed after the timed loop (the latencies stand)."""
        value = self.raw.get("eval_error")
        return str(value) if value else None

    @property
    def eval(self) -> dict[str, Any]:
        """n, top_k (per sample), outputs (the first output's values, or None)."""
        return self._part("eval")

    @property
    def processes(self) -> list[dict[str, Any]]:
        """Per process of the job (the controller pools them): n, p50_ms, load_ms,
        stop_reason, peak_hwm_kb."""
        return list(self.raw.get("processes") or [])

    @property
    def reported_stats(self) -> dict[str, Any]:
        """A native tool's summary statistics (no samples)."""
        return self._part("reported_stats")

    @property
    def tool_name(self) -> str:
        return str(self._part("tool").get("name") or "the tool")
