#!/usr/bin/env python3
"""The on-device runner: load one model, time it, print one JSON document.

Copied to `<workdir>/runner/<hash>/` on the device and started as
`python3 run.py JOB.json` (or `run.py --facts WORKDIR` for `harness devices check`).
Standard library + the inference runtime (and the numpy it needs) only; Python 3.8+.
It never imports `harness`.

Output: exactly one JSON document on stdout (schema `harness.result/1`); everything else,
including what native libraries print, goes to stderr.

Format history:
  harness.result/1 -- first version.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import json
import math
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import time
import traceback

RESULT_SCHEMA = "harness.result/1"
FACTS_SCHEMA = "harness.facts/1"
JOB_SCHEMA = "harness.job/1"
Z_95 = 1.959963984540054
MAX_EVAL_VALUES = 2000000  # raw outputs returned for deviation checks, at most this many

ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


class JobError(Exception):
    """A failure of this job with a message meant for the user."""


# ----------------------------------------------------------------------------- statistics


def median_ci_order_statistic(sorted_values, z=Z_95):
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


def median_of_sorted(sorted_values):
    n = len(sorted_values)
    mid = n // 2
    if n % 2:
        return float(sorted_values[mid])
    return (sorted_values[mid - 1] + sorted_values[mid]) / 2.0


def ci_relative_half_width(values):
    ordered = sorted(values)
    median, ci = median_of_sorted(ordered), median_ci_order_statistic(ordered)
    if ci is None or median <= 0:
        return float("inf")
    return (ci[1] - ci[0]) / 2.0 / median


# ----------------------------------------------------------------------------- device state


MEMORY_FIELDS = {"VmRSS": "rss_kb", "VmHWM": "hwm_kb", "VmSwap": "swap_kb"}


def read_memory_kb():
    """VmRSS, VmHWM, VmSwap and PSS (smaps_rollup: shared, memory-mapped weights counted
    once across processes) of this process in kB (Linux); HWM from getrusage elsewhere."""
    memory = dict.fromkeys(list(MEMORY_FIELDS.values()) + ["pss_kb"])
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name in MEMORY_FIELDS:
                    memory[MEMORY_FIELDS[name]] = int(value.split()[0])
    except OSError:
        try:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            memory["hwm_kb"] = peak // 1024 if sys.platform == "darwin" else peak
        except (ImportError, OSError):
            pass
    try:
        with open("/proc/self/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    memory["pss_kb"] = int(line.split()[1])
    except OSError:
        pass  # kernels before 4.14, or not Linux
    return memory


def read_thermal_c(sysfs="/sys"):
    """Every thermal zone's temperature in °C, keyed by zone type (empty where none)."""
    zones = {}
    root = os.path.join(sysfs, "class", "thermal")
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return zones
    for name in names:
        if not name.startswith("thermal_zone"):
            continue
        try:
            with open(os.path.join(root, name, "temp")) as handle:
                milli = int(handle.read().strip())
            with open(os.path.join(root, name, "type")) as handle:
                kind = handle.read().strip()
        except (OSError, ValueError):
            continue
        zones["%s:%s" % (name, kind)] = milli / 1000.0
    return zones


def read_cpufreq_khz(sysfs="/sys"):
    """Each CPU's [current, maximum] frequency in kHz, where cpufreq exists."""
    freqs = {}
    root = os.path.join(sysfs, "devices", "system", "cpu")
    try:
        names = sorted(n for n in os.listdir(root) if n[3:].isdigit() and n.startswith("cpu"))
    except OSError:
        return freqs
    for name in names:
        folder = os.path.join(root, name, "cpufreq")
        try:
            with open(os.path.join(folder, "scaling_cur_freq")) as handle:
                current = int(handle.read().strip())
            with open(os.path.join(folder, "cpuinfo_max_freq")) as handle:
                maximum = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        freqs[name] = [current, maximum]
    return freqs


def read_governors(sysfs="/sys"):
    """Each CPU's cpufreq governor, where cpufreq exists."""
    governors = {}
    for path in sorted(glob.glob(os.path.join(sysfs, "devices/system/cpu/cpu*/cpufreq"))):
        try:
            with open(os.path.join(path, "scaling_governor")) as handle:
                governors[os.path.basename(os.path.dirname(path))] = handle.read().strip()
        except OSError:
            continue
    return governors


def command_text(argv):
    """What a device tool prints (None where it is not installed or fails to start)."""
    if not shutil.which(argv[0]):
        return None
    try:
        done = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode(errors="replace").strip()


def device_state(sysfs):
    """What says whether this job's numbers are comparable: temperatures, clocks and their
    governors, throttling (a Pi's get_throttled), a Jetson's power mode (nvpmodel -q)."""
    return {
        "thermal_c": read_thermal_c(sysfs),
        "cpufreq_khz": read_cpufreq_khz(sysfs),
        "governors": read_governors(sysfs),
        "throttled": command_text(["vcgencmd", "get_throttled"]),
        "nvpmodel": command_text(["nvpmodel", "-q"]),
    }


class Preparation:
    """What the device file allows the runner to change for a job, undone afterwards: CPU
    affinity (this process only) and the `performance` cpufreq governor (restored in
    `undo`). Each change is recorded with whether it took, so a result says how it ran."""

    def __init__(self, spec, sysfs):
        self.spec = spec or {}
        self.sysfs = sysfs
        self.previous_governors = {}

    def apply(self):
        done = {}
        cores = self.spec.get("cores")
        if cores:
            try:
                os.sched_setaffinity(0, set(cores))
                done["cpu_affinity"] = {"applied": True, "cpus": sorted(os.sched_getaffinity(0))}
            except (AttributeError, OSError, ValueError) as exc:
                done["cpu_affinity"] = {"applied": False, "cpus": cores, "error": str(exc)}
        governor = self.spec.get("governor")
        if governor:
            done["governor"] = self._set_governor(governor)
        return done

    def _set_governor(self, governor):
        current = read_governors(self.sysfs)
        if not current:
            return {"applied": False, "governor": governor, "error": "no cpufreq governors"}
        errors = []
        for cpu, old in current.items():
            if old == governor:
                continue
            path = os.path.join(self.sysfs, "devices/system/cpu", cpu, "cpufreq/scaling_governor")
            try:
                with open(path, "w") as handle:
                    handle.write(governor)
                self.previous_governors[path] = old
            except OSError as exc:
                errors.append("%s: %s" % (cpu, exc.strerror or exc))
        record = {"applied": not errors, "governor": governor, "previous": current}
        if errors:
            record["error"] = "; ".join(errors[:4])
        return record

    def undo(self):
        for path, old in self.previous_governors.items():
            try:
                with open(path, "w") as handle:
                    handle.write(old)
            except OSError:
                sys.stderr.write("could not restore the governor %s in %s\n" % (old, path))


# ----------------------------------------------------------------------------- inputs


def resolve_shape(input_name, shape, dims):
    """Fill dynamic dimensions from the plan's `dims` (by symbolic name or 'input:axis')."""
    resolved = []
    for axis, dim in enumerate(shape):
        if isinstance(dim, int) and dim > 0:
            resolved.append(dim)
            continue
        keys = ([dim] if isinstance(dim, str) and dim else []) + ["%s:%d" % (input_name, axis)]
        for key in keys:
            if key in dims:
                resolved.append(int(dims[key]))
                break
        else:
            label = "'%s'" % dim if isinstance(dim, str) and dim else "unnamed"
            raise JobError(
                "input '%s' axis %d is dynamic (%s) and the plan gives no value for it: add "
                "`dims = { %s = N }` under [inputs] in the plan"
                % (input_name, axis, label, '"%s"' % keys[0] if ":" in keys[0] else keys[0])
            )
    return resolved


def make_inputs(np, declared, specs, dims, seed, input_file):
    """Arrays for each model input: from the given .npy/.npz, else seeded uniform values.

    `declared` is [(name, dtype, shape)] as the model states it; `specs` the manifest's
    optional overrides {name: {shape, low, high}}."""
    if input_file:
        loaded = np.load(input_file, allow_pickle=False)
        if input_file.endswith(".npy"):
            if len(declared) != 1:
                raise JobError(
                    "a .npy input file fits a single-input model; this one has inputs %s: "
                    "give an .npz keyed by input name" % [d[0] for d in declared]
                )
            return {declared[0][0]: np.ascontiguousarray(loaded, dtype=declared[0][1])}
        arrays = {}
        for name, dtype, _ in declared:
            if name not in loaded.files:
                raise JobError(
                    "input file %s has no array named '%s' (it has %s)"
                    % (os.path.basename(input_file), name, loaded.files)
                )
            arrays[name] = np.ascontiguousarray(loaded[name], dtype=dtype)
        return arrays
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, dtype, shape in declared:
        spec = specs.get(name, {})
        shape = resolve_shape(name, spec.get("shape") or shape, dims)
        low, high = float(spec.get("low", 0.0)), float(spec.get("high", 1.0))
        if dtype == "bool":
            values = rng.integers(0, 2, size=shape).astype(bool)
        elif np.issubdtype(np.dtype(dtype), np.integer):
            values = rng.integers(int(low), max(int(high), int(low) + 1), size=shape)
        else:
            values = rng.uniform(low, high, size=shape)
        arrays[name] = np.ascontiguousarray(values, dtype=dtype)
    return arrays


# ----------------------------------------------------------------------------- runtimes


def import_tflite():
    """(Interpreter, load_delegate, op_resolver_types, module_name, version)."""
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter as lite

        return (
            lite.Interpreter,
            lite.load_delegate,
            lite.OpResolverType,
            "ai_edge_litert",
            getattr(ai_edge_litert, "__version__", "unknown"),
        )
    except ImportError:
        pass
    try:
        import tflite_runtime
        from tflite_runtime import interpreter as lite

        return (
            lite.Interpreter,
            lite.load_delegate,
            lite.OpResolverType,
            "tflite_runtime",
            getattr(tflite_runtime, "__version__", "unknown"),
        )
    except ImportError:
        pass
    try:
        import tensorflow as tf

        lite = tf.lite
        return (
            lite.Interpreter,
            lite.experimental.load_delegate,
            lite.experimental.OpResolverType,
            "tensorflow.lite",
            tf.__version__,
        )
    except ImportError:
        raise JobError(
            "no TFLite runtime on this device: install ai-edge-litert (pip install "
            "ai-edge-litert) or tflite-runtime"
        )


class OnnxRuntimeSession:
    def __init__(self, model_path, provider, threads):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if provider not in available:
            raise JobError(
                "execution provider %s is not available on this device (available: %s)"
                % (provider, ", ".join(available))
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.version = ort.__version__
        self.module = "onnxruntime"
        self.session = ort.InferenceSession(model_path, sess_options=options, providers=[provider])
        self.providers = self.session.get_providers()
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.feeds = None

    def declared_inputs(self):
        return [
            (i.name, ORT_DTYPES.get(i.type, "float32"), list(i.shape))
            for i in self.session.get_inputs()
        ]

    def set_inputs(self, arrays):
        self.feeds = arrays

    def infer_callable(self):
        run, names, feeds = self.session.run, self.output_names, self.feeds
        return lambda: run(names, feeds)

    def outputs(self):
        return self.session.run(self.output_names, self.feeds)


class TFLiteSession:
    def __init__(self, model_path, delegate, threads):
        interpreter_cls, load_delegate, resolver, self.module, self.version = import_tflite()
        kwargs = {"model_path": model_path, "num_threads": threads}
        if delegate == "builtin":
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif delegate.startswith("delegate:"):
            library = delegate[len("delegate:") :]
            try:
                kwargs["experimental_delegates"] = [load_delegate(library)]
            except (ValueError, OSError) as exc:
                raise JobError("cannot load TFLite delegate %s: %s" % (library, exc))
        elif delegate in ("gpu", "nnapi"):
            raise JobError(
                'the %s delegate is measured by benchmark_model: set runner = "native" and '
                "binaries.benchmark_model in the device file" % delegate
            )
        elif delegate != "xnnpack":
            raise JobError("unknown TFLite delegate '%s'" % delegate)
        self.interpreter = interpreter_cls(**kwargs)
        self.providers = [delegate]
        self.details = self.interpreter.get_input_details()

    def declared_inputs(self):
        declared = []
        for detail in self.details:
            signature = detail.get("shape_signature", detail["shape"])
            shape = [int(d) if int(d) > 0 else None for d in signature]
            declared.append((detail["name"], detail["dtype"].__name__, shape))
        return declared

    def set_inputs(self, arrays):
        resized = False
        for detail in self.details:
            array = arrays[detail["name"]]
            if list(detail["shape"]) != list(array.shape):
                self.interpreter.resize_tensor_input(detail["index"], list(array.shape))
                resized = True
        self.interpreter.allocate_tensors()
        if resized:
            self.details = self.interpreter.get_input_details()
        for detail in self.details:
            self.interpreter.set_tensor(detail["index"], arrays[detail["name"]])

    def infer_callable(self):
        return self.interpreter.invoke

    def outputs(self):
        return [
            self.interpreter.get_tensor(d["index"]) for d in self.interpreter.get_output_details()
        ]


# ----------------------------------------------------------------------------- timing


def timed_loop(infer, stop):
    """Time `infer()` alone between two perf_counter_ns reads; apply the stop rule
    outside the timed window. Returns (latencies_ns, stop_reason)."""
    clock = time.perf_counter_ns
    latencies = []
    append = latencies.append
    if stop.get("iterations"):
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
        if count >= min_iterations and end >= deadline:
            return latencies, "time"
        if count >= max_iterations:
            return latencies, "max_iterations"


def slowed(infer, fraction):
    """For testing regression detectors only: each call busy-waits `fraction` of its own
    duration more (a sleep is too coarse at these scales)."""
    clock = time.perf_counter_ns

    def slower():
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

    def __init__(self, spec, what):
        self.spec = spec
        self.what = what
        self.out = spec["out"]
        self.proc = None
        self.log = None

    def start(self):
        with open(self.out, "w"):
            pass  # a fresh file per process
        self.log = open(self.out + ".stderr", "w+")  # noqa: SIM115 -- lives as long as the sampler
        sampler = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sampler.py")
        self.proc = subprocess.Popen(
            [sys.executable, sampler, json.dumps(self.spec), self.out],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 10
        while os.path.getsize(self.out) == 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise JobError("the %s sampler did not start: %s" % (self.what, self.error_text()))
            time.sleep(0.005)

    def readings_ns(self):
        """The timestamps of the readings written so far (a line cut short is not one)."""
        stamps = []
        with open(self.out) as handle:
            for line in handle:
                try:
                    stamps.append(int(json.loads(line)["t_ns"]))
                except (ValueError, KeyError):
                    break
        return stamps

    def idle_window(self, idle_s, min_readings):
        """[start, end] on the readings' clock: from the sampler's first reading (so no
        reading lands a hair before it), at least `idle_s` long and held open until
        `min_readings` readings are inside it, whatever the interval."""
        interval_s = float(self.spec.get("interval_s", 0.05))
        start = self.readings_ns()[0]
        give_up = start + int((idle_s + (min_readings + 2) * interval_s + 10) * 1e9)
        while True:
            now = time.monotonic_ns()
            enough = len(self.readings_ns()) >= min_readings
            if (now - start >= idle_s * 1e9 and enough) or now > give_up:
                return [start, now]
            if self.proc.poll() is not None:  # the sampler died: the controller says so
                return [start, now]
            time.sleep(min(interval_s / 2, 0.05))

    def stop(self):
        """One more interval (a reading after the window's end), then SIGTERM."""
        if self.proc.poll() is None:
            time.sleep(float(self.spec.get("interval_s", 0.05)))
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        samples = []
        with open(self.out) as handle:
            for line in handle:
                try:
                    samples.append(json.loads(line))
                except ValueError:
                    break  # a line cut short by the stop
        return {"samples": samples, "error": self.error_text() or None}

    def error_text(self):
        self.log.seek(0)
        return self.log.read().strip()[-500:]


def run_job(job, np, doc):
    """Everything for one job; fills `doc` as it goes so a failure keeps what was measured."""
    preparation = Preparation(job.get("prepare"), job.get("sysfs_root") or "/sys")
    power = job.get("power")
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
        if sampler is not None and float(power.get("idle_s", 0)) > 0:
            # the baseline: nothing loaded, nothing running
            doc["power"]["idle_window_ns"] = sampler.idle_window(
                float(power["idle_s"]), int(power.get("min_readings", 3))
            )
        measure_job(job, np, doc)
    finally:
        if sampler is not None and sampler.proc is not None:
            doc["power"].update(sampler.stop())
        if memory_sampler is not None and memory_sampler.proc is not None:
            doc["memory_sampled"] = memory_sampler.stop()
        preparation.undo()


def measure_job(job, np, doc):
    sysfs = job.get("sysfs_root") or "/sys"
    before = device_state(sysfs)
    doc["state"] = {"before": before}
    doc["memory_kb"] = {"before_load": read_memory_kb()}
    threads = int(job["threads"])
    load_start = time.perf_counter_ns()
    if job["runtime"] == "onnxruntime":
        session = OnnxRuntimeSession(job["model_path"], job["provider"], threads)
    elif job["runtime"] == "tflite":
        session = TFLiteSession(job["model_path"], job["provider"], threads)
    else:
        raise JobError("unknown runtime '%s'" % job["runtime"])
    doc["load_ms"] = (time.perf_counter_ns() - load_start) / 1e6
    doc["runtime"] = {
        "name": job["runtime"],
        "module": session.module,
        "version": session.version,
        "providers": session.providers,
    }
    declared = session.declared_inputs()
    arrays = make_inputs(
        np,
        declared,
        job.get("input_specs") or {},
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
        infer()
        doc["first_ms"] = (time.perf_counter_ns() - start) / 1e6
        for _ in range(int(job.get("warmup", 0))):
            infer()
        window_start = time.monotonic_ns()
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
    if job.get("eval"):
        doc["eval"] = run_eval(np, session, declared, job["eval"])


def run_eval(np, session, declared, spec):
    """Every eval sample, one at a time, after (never inside) the timed loop: the top-k
    indices of the first output, and its raw values while they stay under a cap."""
    data = np.load(spec["file"], allow_pickle=False)
    keys = spec.get("inputs") or {}
    arrays = {}
    for name, _, _ in declared:
        key = keys.get(name, name)
        if key not in data.files:
            raise JobError(
                "eval set %s has no array '%s' for input '%s' (it has %s)"
                % (os.path.basename(spec["file"]), key, name, data.files)
            )
        arrays[name] = data[key]
    count = min(len(a) for a in arrays.values())
    top_k = int(spec.get("top_k", 5))
    predictions, outputs, values = [], [], 0
    for index in range(count):
        session.set_inputs(
            {
                name: np.ascontiguousarray(arrays[name][index : index + 1], dtype=dtype)
                for name, dtype, _ in declared
            }
        )
        first = np.asarray(session.outputs()[0], dtype=np.float64).ravel()
        predictions.append(np.argsort(-first, kind="stable")[:top_k].tolist())
        values += first.size
        if outputs is not None and values <= MAX_EVAL_VALUES:
            outputs.append(first.tolist())
        else:
            outputs = None
    return {"n": count, "top_k": predictions, "outputs": outputs}


# ----------------------------------------------------------------------------- facts


def device_facts(workdir):
    """What `harness devices check` reports: platform, Python, runtimes, disk, CPUs."""
    facts = {
        "schema": FACTS_SCHEMA,
        "arch": platform.machine(),
        "os": os_pretty_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "identity": device_identity(),
        "runtimes": {},
    }
    try:
        facts["disk_free_bytes"] = shutil.disk_usage(workdir).free
    except OSError as exc:
        facts["disk_free_bytes"] = None
        facts["disk_error"] = str(exc)
    try:
        import onnxruntime as ort

        facts["runtimes"]["onnxruntime"] = {
            "version": ort.__version__,
            "providers": ort.get_available_providers(),
        }
    except Exception as exc:  # any import failure is a fact to report
        facts["runtimes"]["onnxruntime"] = {"error": "%s: %s" % (type(exc).__name__, exc)}
    for module in ("ai_edge_litert", "tflite_runtime"):
        try:
            imported = __import__(module + ".interpreter")
            facts["runtimes"][module] = {
                "version": getattr(imported, "__version__", "unknown"),
                "delegates": ["xnnpack", "builtin"],
            }
        except Exception as exc:
            facts["runtimes"][module] = {"error": "%s: %s" % (type(exc).__name__, exc)}
    try:
        import numpy

        facts["numpy"] = numpy.__version__
    except Exception as exc:
        facts["numpy"] = None
        facts["numpy_error"] = str(exc)
    return facts


def read_first_line(path):
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None
    return text.splitlines()[0].strip() if text else None


def device_identity():
    """The comparability keys every result carries: what CPU (and which core types), how
    much RAM, which OS and kernel, which board (device tree model; Jetson's L4T release)."""
    cpuinfo = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpuinfo = handle.read()
    except OSError:
        pass
    fields = {}
    parts = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        fields.setdefault(key, value)
        if key == "CPU part":
            parts.add(value)
    ram_mb = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    ram_mb = int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu_model": fields.get("model name")
        or fields.get("Model")
        or fields.get("Hardware")
        or platform.processor()
        or None,
        "cpu_parts": sorted(parts),
        "cpu_count": os.cpu_count(),
        "ram_mb": ram_mb,
        "os": os_pretty_name(),
        "kernel": platform.release(),
        "board": read_first_line("/proc/device-tree/model"),
        "l4t": read_first_line("/etc/nv_tegra_release"),
    }


def os_pretty_name():
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


# ----------------------------------------------------------------------------- entry point


def start_watchdog(deadline_s):
    """Fork a watchdog that ends this runner's whole process group (its samplers too) at
    the deadline, so a runner never outlives a controller that died or lost its link.
    It learns that the runner ended when the pipe's write end (held only by the runner)
    closes, so it never outlives a runner that finished. Forked before any runtime is
    imported: no threads yet."""
    read_end, write_end = os.pipe()
    runner_pid = os.getpid()
    if os.fork() != 0:
        os.close(read_end)
        return write_end
    try:  # the watchdog: no stdio of the runner's kept open (the controller waits for EOF)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, read_end)
        os.closerange(read_end + 1, 4096)
        ready, _, _ = select.select([read_end], [], [], deadline_s)
        if not ready:
            group = os.getpgid(runner_pid)
            os.killpg(group, signal.SIGTERM)
            for _ in range(20):
                time.sleep(0.1)
                try:
                    os.kill(runner_pid, 0)
                except OSError:
                    break
            os.killpg(group, signal.SIGKILL)
    finally:
        os._exit(0)


class RunningRecord:
    """`<job>.running` beside the job spec while the runner runs: pid, process group and
    job, so that the next controller to take the device ends what a dead one left."""

    def __init__(self, path, job_id):
        self.path = path
        if path:
            with open(path, "w") as handle:
                handle.write("%d %d %s\n" % (os.getpid(), os.getpgid(0), job_id))

    def remove(self):
        if self.path:
            with contextlib.suppress(OSError):
                os.remove(self.path)


def main(argv):
    started = time.perf_counter_ns()
    # Keep stdout for the one JSON document: native libraries that print go to stderr.
    result_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if len(argv) == 3 and argv[1] == "--facts":
        json.dump(device_facts(argv[2]), result_stream)
        result_stream.write("\n")
        result_stream.flush()
        return 0
    if len(argv) != 2:
        sys.stderr.write("usage: run.py JOB.json | run.py --facts WORKDIR\n")
        return 2
    doc = {
        "schema": RESULT_SCHEMA,
        "status": "error",
        "error": None,
        "python": platform.python_version(),
        "arch": platform.machine(),
        "device": device_identity(),
    }
    stage = "reading the job spec"
    try:
        with open(argv[1]) as handle:
            job = json.load(handle)
        if job.get("schema") != JOB_SCHEMA:
            raise JobError("job spec schema %r is not %s" % (job.get("schema"), JOB_SCHEMA))
        doc["job_id"] = job.get("job_id")
        doc["threads"] = job.get("threads")
        if job.get("deadline_s"):
            start_watchdog(float(job["deadline_s"]))
        running = RunningRecord(job.get("running_file"), job.get("job_id"))
        try:
            stage = "importing numpy"
            import numpy as np

            stage = "running the job"
            run_job(job, np, doc)
            doc["status"] = "ok"
        finally:
            running.remove()
    except Exception as exc:
        doc["error"] = {
            "type": type(exc).__name__,
            "message": str(exc) or repr(exc),
            "stage": stage,
            "traceback": traceback.format_exc(),
        }
    doc["wall_ms"] = (time.perf_counter_ns() - started) / 1e6
    json.dump(doc, result_stream)
    result_stream.write("\n")
    result_stream.flush()
    return 0 if doc["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
