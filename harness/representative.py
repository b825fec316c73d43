"""A manifest's representative inputs (`[data]`) read into one .npz keyed by input name:
the one loader behind calibration, the fidelity pass and `benchmarks/real_models.py`.

Images, WAV audio and raw files are decoded (harness/decoding.py) with the preprocessing
the manifest declares, one sample at a time into a memory-mapped array (memory bounded by
one sample, not the set; a WAV at another rate is resampled whole), and cached by what
they depend on (each file's content and the preprocessing), so a nightly run decodes
nothing twice. A file that cannot be decoded is named and left out; a set left with too
few samples, or a preprocessing that does not fit the model's input, is refused before
the first job. The model's other inputs (a state, a sample rate) are stored once from
their specs and passed whole with every sample.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import EvalSet, ModelManifest, RepresentativeData
from harness.data_files import dtypes_disagree, model_inputs, npz_problem, runtime_refusal
from harness.decoding import DECODE_ERRORS, Decoder, decoder, fitted_shape, sample_shape
from harness.errors import ConfigError

DATA_VERSION = "2"  # bump when decoding changes for the same files and settings


@dataclass(frozen=True)
class RepresentativeSet:
    """The set as the jobs and the builds take it: an .npz, what it holds, what was left out."""

    path: Path
    samples: int
    source: str  # "12 images from cache/data/photos/*.png"
    skipped: tuple[str, ...] = ()  # "name.png: cannot identify image file"
    classes: tuple[str, ...] = ()  # labels = "folders": the class of each label index
    whole: tuple[str, ...] = ()  # inputs stored once, passed whole with every sample


def representative_set(
    manifest: ModelManifest, cache_dir: Path, declared: list[tuple[str, str, list[Any]]]
) -> RepresentativeSet | None:
    """The manifest's `[data]` as an .npz (made now, or from the cache); None without one.
    `declared` is the model's [(input, dtype, shape)], to refuse a set that does not fit."""
    data = manifest.data
    if data is None:
        return None
    where = manifest.manifest_path or manifest.name
    if data.file is not None:
        return _given_npz(data.file, data.whole, where, declared)
    files = _files(data, manifest, where)
    name, fitted = _fed_input(data, declared, where)
    whole = _whole_inputs(manifest, [d for d in declared if d[0] != name], where)
    decode = decoder(data, fitted)
    key = _cache_key(data, files, whole)
    target = cache_dir / "data" / manifest.name / f"{key}.npz"
    report_path = target.with_suffix(".json")
    classes = sorted({p.parent.name for p in files}) if data.labels == "folders" else []
    if target.is_file() and report_path.is_file():
        report = json.loads(report_path.read_text())
        return RepresentativeSet(
            target, report["samples"], report["source"], tuple(report["skipped"]),
            tuple(classes), tuple(whole),
        )  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    label_of = (lambda path: classes.index(path.parent.name)) if classes else None
    samples, skipped = _write(target, name, decode, files, data.samples, label_of, whole)
    what = f"{samples} {_noun(data)} from {_pattern(data)}"
    if classes:
        what += f" in {len(classes)} labelled folders"
    if samples < data.min_samples:
        target.unlink(missing_ok=True)
        raise ConfigError(
            where,
            f"only {samples} of {len(files)} file(s) could be read, fewer than "
            f"min_samples = {data.min_samples}" + _skipped_text(skipped),
            "data",
        )
    report_path.write_text(json.dumps({"samples": samples, "source": what, "skipped": skipped}))
    return RepresentativeSet(target, samples, what, tuple(skipped), tuple(classes), tuple(whole))


def _given_npz(
    path: Path, whole: list[str], where: Path | str, declared: list[tuple[str, str, list[Any]]]
) -> RepresentativeSet:
    problem = npz_problem(path)
    if problem:
        raise ConfigError(where, problem, "data.file")
    names = [name for name, _, _ in declared]
    unknown = sorted(set(whole) - set(names))
    if unknown:
        raise ConfigError(where, f"data.whole names {unknown}, not inputs of {names}", "data.whole")
    with np.load(path) as arrays:
        missing = [name for name in names if name not in arrays.files]
        if missing:
            raise ConfigError(
                where, f"{path.name} has no array for input(s) {missing} (it has {arrays.files})",
                "data.file",
            )  # fmt: skip
        for name, dtype, _ in declared:
            _check_dtype(arrays[name].dtype, dtype, f"{path.name}'s array '{name}'", where)
        sliced = [name for name in names if name not in whole and arrays[name].ndim]
        count = min((len(arrays[name]) for name in sliced), default=1)
    return RepresentativeSet(path, count, f"{count} samples from {path.name}", whole=tuple(whole))


def _check_dtype(found: np.dtype, wanted: str, what: str, where: Path | str) -> None:
    """Refuse a float set for an integer input and the reverse (data_files.dtypes_disagree)."""
    if dtypes_disagree(found, wanted):
        raise ConfigError(
            where, f"{what} is {found}, the model's input takes {wanted}: convert the data",
            "data",
        )  # fmt: skip


def _files(data: RepresentativeData, manifest: ModelManifest, where: Path | str) -> list[Path]:
    base = (manifest.manifest_path or Path(".")).parent
    pattern = _pattern(data)
    target = base / pattern
    if data.labels == "folders":  # one folder per class under `target`, taken in turn
        by_class = [sorted(p for p in folder.iterdir() if p.is_file())
                    for folder in sorted(target.iterdir()) if folder.is_dir()]  # fmt: skip
        found = [p for turn in itertools.zip_longest(*by_class) for p in turn if p is not None]
    elif target.is_dir():
        found = sorted(p for p in target.iterdir() if p.is_file())
    else:
        found = [Path(p) for p in sorted(glob.glob(str(target))) if Path(p).is_file()]
    if not found:
        hint = " (run `make models` to fetch the bundled sample data)" if "cache" in pattern else ""
        raise ConfigError(where, f"no file matches {target}{hint}", f"data.{_noun(data)}")
    return found


def _pattern(data: RepresentativeData) -> str:
    return str(data.images or data.audio or data.binary)


def _noun(data: RepresentativeData) -> str:
    return "images" if data.images else "audio" if data.audio else "binary"


def _fed_input(
    data: RepresentativeData, declared: list[tuple[str, str, list[Any]]], where: Path | str
) -> tuple[str, list[int]]:
    """The input the data feeds and the shape of one of its samples (the decoded sample
    reshaped where the model adds axes of 1: a [batch, 43844, 1] input takes frames)."""
    names = [name for name, _, _ in declared]
    if data.input is None and len(declared) != 1:
        raise ConfigError(
            where, f"the model has inputs {names}: name the one the data feeds", "data.input"
        )
    chosen = [d for d in declared if data.input in (None, d[0])]
    if not chosen:
        raise ConfigError(
            where, f"data.input '{data.input}' is not an input of {names}", "data.input"
        )
    name, dtype, shape = chosen[0]
    _check_dtype(np.dtype(data.dtype), dtype, f"[data] dtype = {data.dtype}", where)
    expected = sample_shape(data)
    model = [d if isinstance(d, int) and d > 0 else None for d in shape[1:]]
    fitted = fitted_shape(model, expected)
    if fitted is None:
        raise ConfigError(
            where,
            f"[data] makes samples of shape {['batch', *expected]}; "
            f"input '{name}' takes {shape}: change size, layout or channels",
            "data",
        )  # fmt: skip
    return name, fitted


def _whole_inputs(
    manifest: ModelManifest, others: list[tuple[str, str, list[Any]]], where: Path | str
) -> dict[str, np.ndarray]:
    """The inputs the data does not feed, each one array passed whole with every sample:
    its `values` (a sample rate) or its constant (low = high: a zero state) from
    [[inputs]], batch axes 1."""
    specs = {spec.name: spec for spec in manifest.inputs}
    filled: dict[str, np.ndarray] = {}
    for name, dtype, shape in others:
        spec = specs.get(name)
        if spec is None or (not spec.values and spec.low != spec.high):
            raise ConfigError(
                where,
                f"input '{name}' is not fed by [data] and has no fixed value: give it one in "
                f"[[inputs]] (values = [...], or low = high for a constant), or an .npz",
                "data",
            )  # fmt: skip
        value = spec.values[0] if spec.values else spec.low
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
        filled[name] = np.full(dims, value, dtype=np.dtype(dtype))
    return filled


def _write(
    target: Path,
    name: str,
    decode: Decoder,
    files: list[Path],
    limit: int,
    label_of: Callable[[Path], int] | None = None,
    whole: dict[str, np.ndarray] | None = None,
) -> tuple[int, list[str]]:
    """Decode sample by sample into a memory-mapped .npy, then store it as the .npz
    (numpy writes it in buffered chunks: memory stays bounded by a chunk), with each
    sample's label (`label_of` its file) as the array `labels` and the inputs passed
    whole beside it."""
    skipped: list[str] = []
    labels: list[int] = []
    count = 0
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        array_path = Path(scratch) / f"{name}.npy"
        out: Any = None
        for path in files:
            try:
                for sample in decode(path):
                    if count == limit:
                        break
                    if out is None:
                        out = np.lib.format.open_memmap(
                            array_path, mode="w+", dtype=np.float32, shape=(limit, *sample.shape)
                        )
                    elif sample.shape != out.shape[1:]:
                        raise ValueError(f"decoded to {sample.shape}, not {out.shape[1:]}")
                    out[count] = sample
                    count += 1
                    if label_of is not None:
                        labels.append(label_of(path))
            except DECODE_ERRORS as exc:
                skipped.append(f"{path.name}: {exc}")
        if out is None:
            return 0, skipped
        out.flush()
        del out
        decoded = np.load(array_path, mmap_mode="r")[:count]
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w") as archive:
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, decoded)
            if label_of is not None:
                with archive.open("labels.npy", "w") as member:
                    np.lib.format.write_array(member, np.asarray(labels, dtype=np.int64))
            for other, array in (whole or {}).items():
                with archive.open(f"{other}.npy", "w") as member:
                    np.lib.format.write_array(member, array)
        os.replace(partial, target)
    return count, skipped


def _cache_key(data: RepresentativeData, files: list[Path], whole: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    digest.update(DATA_VERSION.encode())
    digest.update(data.model_dump_json(exclude={"file"}).encode())
    for name, array in sorted(whole.items()):
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    for path in files:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _skipped_text(skipped: list[str]) -> str:
    if not skipped:
        return ""
    return (
        "; left out: "
        + "; ".join(skipped[:5])
        + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    )


def with_representative_sets(
    manifests: list[ModelManifest], cache_dir: Path, log: Callable[[str], None] = lambda _: None
) -> list[ModelManifest]:
    """The manifests with each `[data]` set read into its .npz (`data.file`), so that
    calibration and the jobs take one file; a set that cannot serve is a ConfigError
    before anything is built or run."""
    ready = []
    for manifest in manifests:
        if manifest.data is None:
            ready.append(manifest)
            continue
        made = representative_set(manifest, cache_dir, declared_inputs(manifest))
        assert made is not None
        if made.skipped:
            left_out = _skipped_text(list(made.skipped))
            log(f"{manifest.name}: [data] left out {len(made.skipped)} file(s){left_out}")
        data = manifest.data.model_copy(update={"file": made.path, "whole": list(made.whole)})
        update: dict[str, Any] = {"data": data}
        if made.classes:  # labelled folders: the set is the eval set too
            if manifest.eval is not None:
                raise ConfigError(
                    manifest.manifest_path or manifest.name,
                    '[data] labels = "folders" makes an eval set, and the manifest has '
                    "[eval] too: keep one",
                    "data.labels",
                )
            top_k = min(5, len(made.classes))
            update["eval"] = EvalSet(
                file=made.path, labels="labels", whole=list(made.whole), top_k=top_k
            )
            classes = list(made.classes)
            log(f"{manifest.name}: [data] classes {classes} (labels 0..{len(classes) - 1})")
        ready.append(manifest.model_copy(update=update))
    return ready


def declared_inputs(manifest: ModelManifest) -> list[tuple[str, str, list[Any]]]:
    """The model's inputs [(name, dtype, shape)] as the runtime states them; a file the
    runtime cannot read is a ConfigError naming it."""
    try:
        return model_inputs(manifest.file)
    except Exception as exc:  # the runtime's own error: a corrupt or unsupported file
        raise ConfigError(
            manifest.manifest_path or manifest.name, runtime_refusal(manifest.file, exc), "file"
        ) from None
