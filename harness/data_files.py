"""The data files a plan and its manifests point at (eval and calibration sets, input
files), checked before the first job so that no run loses its jobs to a bad one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.config import ModelManifest, model_format
from harness.errors import ConfigError


def eval_problem(manifest: ModelManifest) -> tuple[str, str | None]:
    """Why the manifest's eval (or calibration) set cannot serve its model, and the key to
    fix; checked before the first job, so that no run loses its jobs to it."""
    import numpy as np

    evaluation = manifest.eval
    assert evaluation is not None
    try:
        declared = {name: dtype for name, dtype, _ in model_inputs(manifest.file)}
    except Exception:  # a base the runtime cannot load: its jobs and builds say so
        return "", None
    inputs = list(declared)
    for key, path, labels in (
        ("eval.file", evaluation.file, evaluation.labels or None),
        ("eval.calibration_file", evaluation.calibration_file, None),
    ):
        if path is None:
            continue
        problem = npz_problem(path)
        if problem:
            return key, problem
        with np.load(path) as data:
            names = sorted(data.files)
            if labels is not None and labels not in names:
                return "eval.labels", (
                    f"{path.name} has no labels array '{labels}' (it has {names}); "
                    'set eval.labels to the array that holds them, or eval.labels = "" for '
                    "an eval set without labels (fidelity and agreement, no accuracy)"
                )
            arrays = {name: evaluation.input_key(name) for name in inputs}
            missing = {name: array for name, array in arrays.items() if array not in names}
            if missing:
                return "eval.inputs", (
                    f"{path.name} has no array for model input(s) {sorted(missing)} (it has "
                    f"{names}); name the arrays after the inputs or map them with "
                    'eval.inputs = { input = "array" }'
                )
            unknown = sorted(set(evaluation.whole) - set(inputs))
            if unknown:
                return "eval.whole", f"eval.whole names {unknown}, not inputs of the model {inputs}"
            sliced = {n: a for n, a in arrays.items() if n not in evaluation.whole}
            scalars = sorted(n for n, a in sliced.items() if data[a].ndim == 0)
            if scalars:
                return "eval.whole", (
                    f"{path.name} holds input(s) {scalars} as a scalar, which has no samples "
                    f"to slice: name them in eval.whole = {scalars} to pass them as stored"
                )
            for name, array in arrays.items():
                found, wanted = data[array].dtype, declared[name]
                if dtypes_disagree(found, wanted):
                    return key, (
                        f"{path.name}'s array '{array}' is {found}, and the model's input "
                        f"'{name}' takes {wanted}: convert the array"
                    )
            counts = {array: len(data[array]) for array in sliced.values()}
            if labels is not None:
                counts[labels] = len(data[labels]) if data[labels].ndim else 1
            if len(set(counts.values())) > 1:
                return key, (
                    f"{path.name}'s arrays hold different numbers of samples: {counts}; an "
                    "input passed whole with every sample (a recurrent state, a sample rate) "
                    "belongs in eval.whole"
                )
    return "", None


def model_inputs(path: Path) -> list[tuple[str, str, list[Any]]]:
    """The inputs of the model file as the controller's runtime reads them; its error
    when it cannot."""
    from harness.runner.runtimes import OnnxRuntimeSession, TFLiteSession

    session = (
        TFLiteSession(str(path), "xnnpack", 1)
        if model_format(path) == "tflite"
        else OnnxRuntimeSession(str(path), "CPUExecutionProvider", 1)
    )
    return session.declared_inputs()


def runtime_refusal(path: Path, exc: BaseException) -> str:
    return (
        f"the runtime cannot load the model {path}: {type(exc).__name__}: {str(exc)[:300]}; "
        "check that the file is whole (fetch it again) and that its operators are ones the "
        "runtime has"
    )


def dtypes_disagree(found: Any, wanted: str) -> bool:
    """Float data for an integer input or the reverse: refused, never converted silently
    (an int64 calibration array for a float input once was); widths within a family are
    converted."""
    import numpy as np

    return bool(
        np.issubdtype(np.dtype(found), np.floating) != np.issubdtype(np.dtype(wanted), np.floating)
    )


def npz_problem(path: Path) -> str | None:
    """Why `path` is not a numpy .npz archive of arrays (None when it is one)."""
    import zipfile

    import numpy as np

    if not path.is_file():
        return f"input file {path} does not exist"
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            return f"{path} holds one array, not an .npz archive (numpy.savez) of arrays"
        with data:
            for name in data.files:
                data[name]  # noqa: B018 -- reading each array is the check
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        reason = "it is neither .npz nor .npy data" if "pickled" in str(exc) else str(exc)
        return f"{path} is not a readable .npz archive of arrays (numpy.savez): {reason}"
    return None


def eval_labels(path: Path, key: str) -> Any:
    """The eval set's labels (array `key` of `path`)."""
    import numpy as np

    with np.load(path) as data:
        return data[key]


def check_files(
    plan_path: Path | str, inputs: dict[Path, str], manifests: list[ModelManifest]
) -> None:
    """Every input file (`inputs`: file -> the model it feeds) and eval set the jobs read
    can be read, before the first job: a ConfigError naming the file and the key."""
    for path, model in inputs.items():
        problem = npz_problem(path)
        if problem:
            raise ConfigError(plan_path, problem, f"inputs.files.{model}")
    for manifest in {m.name: m for m in manifests if m.eval is not None}.values():
        key, problem = eval_problem(manifest)
        if problem:
            raise ConfigError(manifest.manifest_path or manifest.name, problem, key)
