"""The inference runtimes as the runner drives them (ONNX Runtime, LiteRT/TFLite) and the
inputs it feeds them. Standard library + the runtime; Python 3.8+."""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict

try:  # imported as harness.runner.contract (the controller, the tests)
    from .contract import InputSpecDoc, JobError, JobSpec
except ImportError:  # run on the device, where this file's folder is on sys.path
    from contract import InputSpecDoc, JobError, JobSpec  # type: ignore[no-redef]

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


# numpy arrays by input name (numpy is passed in as `np`, so their type is not known here)
Arrays = Dict[str, Any]


def toml_key(key: str) -> str:
    """A key as TOML reads it back: bare when it can be, else quoted (a dot or colon in a
    bare key would make it a dotted key)."""
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else '"%s"' % key.replace('"', '\\"')


def resolve_shape(input_name: str, shape: list[Any], dims: dict[str, int]) -> list[int]:
    """Fill dynamic dimensions from the plan's `dims` (by symbolic name or 'input:axis')."""
    resolved: list[int] = []
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
                % (input_name, axis, label, toml_key(keys[0]))
            )
    return resolved


def make_inputs(
    np: Any,
    declared: list[tuple[str, str, list[Any]]],
    specs: dict[str, InputSpecDoc],
    dims: dict[str, int],
    seed: int,
    input_file: str | None,
) -> Arrays:
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
        arrays: Arrays = {}
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
        if spec.get("values"):  # an input that is not a range: a sample rate, a mode
            values = rng.choice(np.asarray(spec["values"]), size=shape)
        elif dtype == "bool":
            values = rng.integers(0, 2, size=shape).astype(bool)
        elif np.issubdtype(np.dtype(dtype), np.integer):
            values = rng.integers(int(low), max(int(high), int(low) + 1), size=shape)
        else:
            values = rng.uniform(low, high, size=shape)
        # reshaped: ascontiguousarray turns a scalar input (shape []) into shape [1]
        arrays[name] = np.ascontiguousarray(values, dtype=dtype).reshape(shape)
    return arrays


def integer_inputs_hint(
    declared: list[tuple[str, str, list[Any]]], specs: dict[str, InputSpecDoc]
) -> str:
    """When a model fails on seeded inputs: the integer inputs that were drawn from a
    range, named, since one that is not a range (a sample rate, a mode) fails deep inside
    the graph with a message that names some other tensor."""
    drawn = [
        "'%s' (%s, drawn from [%d, %d))"
        % (name, dtype, int(specs.get(name, {}).get("low", 0)),
           max(int(specs.get(name, {}).get("high", 1)), int(specs.get(name, {}).get("low", 0)) + 1))
        for name, dtype, _ in declared
        if dtype.startswith(("int", "uint")) and not specs.get(name, {}).get("values")
    ]  # fmt: skip
    if not drawn:
        return ""
    return (
        "; the integer input(s) %s were fed random values: if one is not a range (a sample "
        "rate, a mode, an index), give it its values in the model manifest, e.g. "
        "[[inputs]] name = %s ... values = [16000]" % (", ".join(drawn), drawn[0].split(" ")[0])
    )


def eval_feeds(
    np: Any,
    path: str,
    declared: list[tuple[str, str, list[Any]]],
    keys: dict[str, str],
    whole: list[str],
    limit: int | None = None,
) -> list[Arrays]:
    """The eval (or calibration) set's samples, one feed each: a per-sample input gets its
    array's slice [k:k+1]; an input named in `whole` (a recurrent state, a sample rate) gets
    its array as stored, in every feed."""
    data = np.load(path, allow_pickle=False)
    arrays: Arrays = {}
    for name, _, _ in declared:
        key = keys.get(name, name)
        if key not in data.files:
            raise JobError(
                "eval set %s has no array '%s' for input '%s' (it has %s)"
                % (os.path.basename(path), key, name, data.files)
            )
        arrays[name] = data[key]
    counts = [len(a) for name, a in arrays.items() if name not in whole and a.ndim]
    count = min(counts) if counts else 1
    if limit is not None:
        count = min(count, limit)
    return [
        {
            name: np.ascontiguousarray(
                arrays[name] if name in whole else arrays[name][k : k + 1], dtype=dtype
            )
            for name, dtype, _ in declared
        }
        for k in range(count)
    ]


# ----------------------------------------------------------------------------- runtimes


def import_tflite() -> tuple[Any, Any, Any, str, str]:
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
    def __init__(
        self,
        model_path: str,
        provider: str,
        threads: int,
        spinning: bool = True,
        profile_prefix: str | None = None,
    ) -> None:
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
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if profile_prefix:  # a profile job: the trace goes to <prefix>_<date>.json
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.version = ort.__version__
        self.module = "onnxruntime"
        self.session = ort.InferenceSession(model_path, sess_options=options, providers=[provider])
        self.providers = self.session.get_providers()
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.feeds: Arrays = {}

    def declared_inputs(self) -> list[tuple[str, str, list[Any]]]:
        return [
            (i.name, ORT_DTYPES.get(i.type, "float32"), list(i.shape))
            for i in self.session.get_inputs()
        ]

    def set_inputs(self, arrays: Arrays) -> None:
        self.feeds = arrays

    def infer_callable(self) -> Callable[[], object]:
        run, names, feeds = self.session.run, self.output_names, self.feeds
        return lambda: run(names, feeds)

    def outputs(self) -> list[Any]:
        outputs: list[Any] = self.session.run(self.output_names, self.feeds)
        return outputs

    def end_profiling(self) -> str:
        path: str = self.session.end_profiling()
        return path


class TFLiteSession:
    def __init__(self, model_path: str, delegate: str, threads: int) -> None:
        interpreter_cls, load_delegate, resolver, self.module, self.version = import_tflite()
        kwargs: dict[str, Any] = {"model_path": model_path, "num_threads": threads}
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
        self.output_names = [d["name"] for d in self.interpreter.get_output_details()]

    def declared_inputs(self) -> list[tuple[str, str, list[Any]]]:
        """A quantized input (a full-integer model's int8/uint8 with a scale) is declared
        float32: it takes real values, quantized at the boundary outside the timed call."""
        declared = []
        for detail in self.details:
            signature = detail.get("shape_signature", detail["shape"])
            shape = [int(d) if int(d) > 0 else None for d in signature]
            dtype = "float32" if quantization(detail) else detail["dtype"].__name__
            declared.append((detail["name"], dtype, shape))
        return declared

    def set_inputs(self, arrays: Arrays) -> None:
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
            array, scale_zero = arrays[detail["name"]], quantization(detail)
            if scale_zero:
                array = quantize(array, scale_zero, detail["dtype"])
            self.interpreter.set_tensor(detail["index"], array)

    def infer_callable(self) -> Callable[[], object]:
        invoke: Callable[[], object] = self.interpreter.invoke
        return invoke

    def outputs(self) -> list[Any]:
        """One inference on the inputs set, as OnnxRuntimeSession.outputs runs one; real
        values: a quantized output is dequantized, so fidelity compares like with like.
        (Reading the tensors without invoking returned whatever the arena held after
        `allocate_tensors`: every TFLite fidelity and eval pass was that, not the model.)"""
        self.interpreter.invoke()
        values = []
        for detail in self.interpreter.get_output_details():
            value, scale_zero = self.interpreter.get_tensor(detail["index"]), quantization(detail)
            if scale_zero:
                value = (value.astype("float32") - scale_zero[1]) * scale_zero[0]
            values.append(value)
        return values


def quantization(detail: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero point) of a quantized integer tensor; None for a real-valued one."""
    scale, zero_point = detail.get("quantization") or (0.0, 0)
    if scale and detail["dtype"].__name__ in ("int8", "uint8", "int16"):
        return float(scale), int(zero_point)
    return None


def quantize(array: Any, scale_zero: tuple[float, int], dtype: Any) -> Any:
    import numpy as np

    limits = np.iinfo(dtype)
    scaled = np.round(np.asarray(array, dtype=np.float64) / scale_zero[0]) + scale_zero[1]
    return np.clip(scaled, limits.min, limits.max).astype(dtype)


def open_session(
    job: JobSpec, path: str, spinning: bool = True, profile_prefix: str | None = None
) -> OnnxRuntimeSession | TFLiteSession:
    """`spinning` False: onnxruntime's pool threads sleep after a run instead of spinning,
    so two sessions of one process never steal the CPU from each other. `profile_prefix`:
    onnxruntime writes its profiling trace there."""
    if job["runtime"] == "onnxruntime":
        return OnnxRuntimeSession(
            path, job["provider"], int(job["threads"]), spinning, profile_prefix
        )
    if job["runtime"] == "tflite":
        return TFLiteSession(path, job["provider"], int(job["threads"]))
    raise JobError("unknown runtime '%s'" % job["runtime"])
