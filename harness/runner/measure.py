"""One job measured: samplers beside the runner, the idle baseline, load, warm-up, the timed
loop with its stop rule, the eval pass. Standard library + the runtime; Python 3.8+."""

from __future__ import annotations

import gc
import json
import math
import os
import time
from typing import IO, Any, Callable, Mapping, Sequence

try:  # imported as harness.runner.contract (the controller, the tests)
    from .contract import JobError, JobSpec, ResultDoc, SampledDoc, StopRule
except ImportError:  # run on the device, where this file's folder is on sys.path
    from contract import (  # type: ignore[no-redef]
        JobError,
        JobSpec,
        ResultDoc,
        SampledDoc,
        StopRule,
    )

try:  # imported as harness.runner.device (the controller, the tests)
    from .device import Preparation, device_state, read_memory_kb
except ImportError:  # run on the device, where this file's folder is on sys.path
    from device import Preparation, device_state, read_memory_kb  # type: ignore[no-redef]

try:  # imported as harness.runner.sampler (the controller, the tests)
    from .sampler import ForkedSampler
except ImportError:  # run on the device, where this file's folder is on sys.path
    from sampler import ForkedSampler  # type: ignore[no-redef]

try:  # imported as harness.runner.runtimes (the controller, the tests)
    from .outputs import profile_of, run_eval, run_fidelity
    from .runtimes import integer_inputs_hint, make_inputs, open_session
except ImportError:  # run on the device, where this file's folder is on sys.path
    from outputs import profile_of, run_eval, run_fidelity  # type: ignore[no-redef]
    from runtimes import integer_inputs_hint, make_inputs, open_session  # type: ignore[no-redef]

Z_95 = 1.959963984540054
MIN_CI_SAMPLES = 5  # the fewest samples an order-statistic CI of the median takes

# ----------------------------------------------------------------------------- statistics


def median_ci_order_statistic(
    sorted_values: Sequence[float], z: float = Z_95
) -> tuple[float, float] | None:
    """Distribution-free CI of the median from order statistics (normal approximation
    to the binomial; Conover, Practical Nonparametric Statistics). Ranks are rounded
    outwards, so the interval is conservative. Returns (low, high) or None when n < 5."""
    n = len(sorted_values)
    if n < 5:
        return None
    half = z * math.sqrt(n) / 2.0
    low_rank = max(1, int(math.floor(n / 2.0 - half)))
    high_rank = min(n, int(math.ceil(1 + n / 2.0 + half)))
    return sorted_values[low_rank - 1], sorted_values[high_rank - 1]


def median_of_sorted(sorted_values: Sequence[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    if n % 2:
        return float(sorted_values[mid])
    return (sorted_values[mid - 1] + sorted_values[mid]) / 2.0


def ci_relative_half_width(values: Sequence[float]) -> float:
    ordered = sorted(values)
    median, ci = median_of_sorted(ordered), median_ci_order_statistic(ordered)
    if ci is None or median <= 0:
        return float("inf")
    return (ci[1] - ci[0]) / 2.0 / median


# ----------------------------------------------------------------------------- timing


def timed_loop(
    infer: Callable[[], object],
    stop: StopRule,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> tuple[list[int], str]:
    """Time `infer()` alone between two `clock()` reads (perf_counter_ns; a test's own
    counter); apply the stop rule outside the timed window. Returns (latencies_ns,
    stop_reason)."""
    latencies: list[int] = []
    append = latencies.append
    if "iterations" in stop:
        for _ in range(int(stop["iterations"])):
            start = clock()
            infer()
            end = clock()
            append(end - start)
        return latencies, "fixed"
    min_iterations = int(stop["min_iterations"])
    max_iterations = int(stop["max_iterations"])
    target = float(stop["target_ci"])
    deadline = clock() + int(float(stop["max_seconds"]) * 1e9)
    next_check = min_iterations
    while True:
        start = clock()
        infer()
        end = clock()
        append(end - start)
        count = len(latencies)
        if count >= next_check:
            if ci_relative_half_width(latencies) <= target:
                return latencies, "ci"
            next_check = count + max(10, count // 10)
        # the budget bounds the job: at its end it stops, below min_iterations too (as
        # soon as a median's CI can be had), and says so
        if end >= deadline and count >= MIN_CI_SAMPLES:
            return latencies, "time" if count >= min_iterations else "time-before-min"
        if count >= max_iterations:
            return latencies, "max_iterations"


def slowed(infer: Callable[[], object], fraction: float) -> Callable[[], None]:
    """For testing regression detectors only: each call busy-waits `fraction` of its own
    duration more (a sleep is too coarse at these scales)."""
    clock = time.perf_counter_ns

    def slower() -> None:
        start = clock()
        infer()
        until = clock() + int((clock() - start) * fraction)
        while clock() < until:
            pass

    return slower


class Sampler:
    """sampler.py in a process of its own (power, or this runner's memory), from before
    the idle baseline and the model load until after the timed loop; its raw readings go
    back in the result document."""

    def __init__(self, spec: Mapping[str, Any], what: str) -> None:
        self.spec = spec
        self.what = what
        self.out = spec["out"]
        self.proc: ForkedSampler | None = None
        self.log: IO[str] | None = None

    def start(self) -> None:
        with open(self.out, "w"):
            pass  # a fresh file per process
        self.log = open(self.out + ".stderr", "w+")  # noqa: SIM115 -- lives as long as the sampler
        self.proc = ForkedSampler(json.dumps(self.spec), self.out, self.log.fileno())
        deadline = time.monotonic() + 10
        while os.path.getsize(self.out) == 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                exit_code = self.proc.poll()
                self.stop()
                said = self.error_text() or (
                    "it exited with status %s and said nothing" % exit_code
                    if exit_code is not None
                    else "no reading within 10 s"
                )
                raise JobError("the %s sampler did not start: %s" % (self.what, said))
            time.sleep(0.001)  # its first reading comes within milliseconds of its fork

    def readings_ns(self) -> list[int]:
        """The timestamps of the readings written so far (a line cut short is not one)."""
        stamps: list[int] = []
        with open(self.out) as handle:
            for line in handle:
                try:
                    stamps.append(int(json.loads(line)["t_ns"]))
                except (ValueError, KeyError):
                    break
        return stamps

    def idle_window(self, idle_s: float, min_readings: int, after_ns: int) -> list[int]:
        """[start, end] on the readings' clock: from the sampler's first reading at or
        after `after_ns` (so no reading lands a hair before it, and nothing the runner did
        before then is in it), at least `idle_s` long and held open until `min_readings`
        readings are inside it, whatever the interval."""
        interval_s = float(self.spec.get("interval_s", 0.05))
        give_up = after_ns + int((idle_s + (min_readings + 3) * interval_s + 10) * 1e9)
        while True:
            later = [t for t in self.readings_ns() if t >= after_ns]
            dead = self.proc is None or self.proc.poll() is not None
            if later or dead or time.monotonic_ns() > give_up:
                break
            time.sleep(min(interval_s / 4, 0.01))
        start = later[0] if later else after_ns
        while True:
            now = time.monotonic_ns()
            enough = len([t for t in self.readings_ns() if t >= start]) >= min_readings
            if (now - start >= idle_s * 1e9 and enough) or now > give_up:
                return [start, now]
            if self.proc is None or self.proc.poll() is not None:  # it died: the record says so
                return [start, now]
            time.sleep(min(interval_s / 2, 0.05))

    def stop(self) -> SampledDoc:
        """SIGTERM: a polled source then takes its last reading, after the window's end, at
        once; a streamed one (tegrastats) is given one more interval for its line first."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            if self.spec.get("source") == "tegrastats":
                time.sleep(float(self.spec.get("interval_s", 0.05)))
            proc.terminate()
            try:
                proc.wait(5)
            except TimeoutError:
                proc.kill()
                proc.wait()
        samples: list[Any] = []
        with open(self.out) as handle:
            for line in handle:
                try:
                    samples.append(json.loads(line))
                except ValueError:
                    break  # a line cut short by the stop
        return {"samples": samples, "error": self.error_text() or None}

    def error_text(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().strip()[-500:]


def run_job(job: JobSpec, doc: ResultDoc, started_ns: int | None = None) -> None:
    """Everything for one job; fills `doc` as it goes so a failure keeps what was measured.
    `started_ns` (perf_counter_ns) is when the process began the job: its exec or fork.
    The samplers are forked before numpy is imported (a runner process per job), so they
    share none of its pages (which would halve them in its PSS)."""
    preparation = Preparation(job.get("prepare"), job.get("sysfs_root") or "/sys")
    power = job.get("power") or {}
    sampler = Sampler(power, "power") if power else None
    memory = job.get("memory_sampler")
    memory_sampler = Sampler(dict(memory, pid=os.getpid()), "memory") if memory else None
    try:
        doc["preparation"] = preparation.apply()
        if memory_sampler is not None:
            memory_sampler.start()
        if sampler is not None:
            doc["power"] = {"source": power["source"], "interval_s": power.get("interval_s")}
            sampler.start()
        try:
            import numpy as np
        except Exception as exc:
            raise JobError("numpy cannot be imported: %s: %s" % (type(exc).__name__, exc))
        if started_ns is not None:  # the runner's own start (the idle baseline is the job's)
            doc["start_ms"] = (time.perf_counter_ns() - started_ns) / 1e6
        if sampler is not None and float(power.get("idle_s", 0)) > 0:
            # the baseline: nothing loaded, nothing running, from a reading after the import
            doc["power"]["idle_window_ns"] = sampler.idle_window(
                float(power["idle_s"]), int(power.get("min_readings", 3)), time.monotonic_ns()
            )
        measure_job(job, np, doc)
    finally:
        if sampler is not None and sampler.proc is not None:
            sampled = sampler.stop()
            doc["power"]["samples"] = sampled.get("samples") or []
            doc["power"]["error"] = sampled.get("error")
        if memory_sampler is not None and memory_sampler.proc is not None:
            doc["memory_sampled"] = memory_sampler.stop()
        preparation.undo()


def measure_job(job: JobSpec, np: Any, doc: ResultDoc) -> None:
    sysfs = job.get("sysfs_root") or "/sys"
    before = device_state(sysfs)
    doc["state"] = {"before": before}
    doc["memory_kb"] = {"before_load": read_memory_kb()}
    paired, profile = job.get("paired"), job.get("profile")
    load_start = time.perf_counter_ns()
    session = open_session(
        job, job["model_path"], not paired, profile["prefix"] if profile else None
    )
    doc["load_ms"] = (time.perf_counter_ns() - load_start) / 1e6
    doc["runtime"] = {
        "name": job["runtime"],
        "module": session.module,
        "version": session.version,
        "providers": session.providers,
    }
    declared = session.declared_inputs()
    specs = job.get("input_specs") or {}
    arrays = make_inputs(
        np,
        declared,
        specs,
        job.get("dims") or {},
        int(job.get("seed", 0)),
        job.get("input_file"),
    )
    session.set_inputs(arrays)
    doc["inputs"] = [
        {"name": name, "dtype": str(arrays[name].dtype), "shape": list(arrays[name].shape)}
        for name, _, _ in declared
    ]
    doc["memory_kb"]["after_load"] = read_memory_kb()
    infer = session.infer_callable()
    if job.get("inject_slowdown"):
        infer = slowed(infer, float(job["inject_slowdown"]))
        doc["inject_slowdown"] = float(job["inject_slowdown"])
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        try:
            infer()
        except Exception as exc:
            hint = "" if job.get("input_file") else integer_inputs_hint(declared, specs)
            raise JobError("the first inference failed: %s: %s%s" % (type(exc).__name__, exc, hint))
        doc["first_ms"] = (time.perf_counter_ns() - start) / 1e6
        for _ in range(int(job.get("warmup", 0))):
            infer()
        window_start = time.monotonic_ns()
        if paired:  # the variant and its reference in this process, block by block
            reference = open_session(job, paired["reference_path"], spinning=False)
            reference.set_inputs(arrays)
            for _ in range(int(job.get("warmup", 0)) + 1):
                reference.infer_callable()()
            try:  # here: only a paired job needs it (a runner starts faster without)
                from .paired import run_paired
            except ImportError:  # run on the device, where this file's folder is on sys.path
                from paired import run_paired  # type: ignore[no-redef]

            doc["paired"] = run_paired(  # each process draws its own block orders
                reference.infer_callable(), infer, paired, int(job.get("seed", 0)) + os.getpid()
            )
            latencies: list[int] = []
            reason = "paired: " + doc["paired"]["stopped"]
        elif profile:  # a process of its own: profiling never touches the latencies
            for _ in range(int(profile["runs"])):
                infer()
            doc["profile"] = profile_of(session, profile)
            latencies, reason = [], "profiled"
        else:
            latencies, reason = timed_loop(infer, job["stop"])
        if "power" in doc:
            doc["power"]["timed_window_ns"] = [window_start, time.monotonic_ns()]
            doc["power"]["iterations"] = len(latencies)
    finally:
        gc.enable()
    doc["latencies_ns"] = latencies
    doc["stop_reason"] = reason
    doc["memory_kb"]["after_run"] = read_memory_kb()
    doc["state"]["after"] = device_state(sysfs)
    eval_spec = job.get("eval")
    if eval_spec:
        try:
            doc["eval"] = run_eval(np, session, declared, eval_spec)
        except Exception as exc:  # the timed result stands; the eval's failure goes beside it
            doc["eval_error"] = "%s: %s" % (type(exc).__name__, exc)
    fidelity = job.get("fidelity")
    if fidelity and int(fidelity.get("samples", 0)):
        try:
            doc["fidelity"] = run_fidelity(np, session, declared, job)
        except Exception as exc:  # as for the eval: the latencies stand
            doc["fidelity_error"] = "%s: %s" % (type(exc).__name__, exc)
