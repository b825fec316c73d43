"""Each compression strategy on real models, checked with onnx and onnxruntime."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import MODELS_DIR, bundled_model
from onnx import numpy_helper

from harness.compress import BuildContext, CompressionFailed, build_variant
from harness.config import ModelManifest, Variant, load_manifest
from harness.errors import ConfigError

EVAL = np.load(MODELS_DIR / "zoo" / "digits_eval.npz")


@pytest.fixture(scope="module")
def digits() -> ModelManifest:
    return load_manifest(MODELS_DIR / "digits_cnn.toml")


def build(manifest: ModelManifest, tmp_path: Path, strategy: str, **params: object):
    variant = Variant(name="v", strategy=strategy, params=params)  # type: ignore[arg-type]
    return build_variant(
        manifest, variant, tmp_path / "cache", BuildContext(manifest, {"batch": 1})
    )


def accuracy(path: Path) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": EVAL["input"]})[0]
    return float((logits.argmax(1) == EVAL["labels"]).mean())


def weights(path: Path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def test_fp32_reference_accuracy_is_what_the_manifest_says(digits: ModelManifest) -> None:
    assert digits.eval is not None
    assert accuracy(digits.file) == pytest.approx(digits.eval.reference_accuracy, abs=1e-3)


def test_fp16_halves_the_weights_and_keeps_accuracy(digits: ModelManifest, tmp_path: Path) -> None:
    built = build(digits, tmp_path, "fp16", keep_io_types=True)
    onnx.checker.check_model(str(built.path))
    model = onnx.load(str(built.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_weights = [w for n, w in weights(built.path).items() if w.ndim == 4]
    assert conv_weights and all(w.dtype == np.float16 for w in conv_weights)
    assert built.path.stat().st_size < 0.6 * digits.file.stat().st_size
    assert abs(accuracy(built.path) - accuracy(digits.file)) <= 0.01


def test_int8_dynamic_quantizes_weights(digits: ModelManifest, tmp_path: Path) -> None:
    built = build(digits, tmp_path, "int8-dynamic")
    ops = {n.op_type for n in onnx.load(str(built.path)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops or "ConvInteger" in ops
    assert any(w.dtype == np.int8 for w in weights(built.path).values())
    assert abs(accuracy(built.path) - accuracy(digits.file)) <= 0.02


def test_int8_static_is_qdq_calibrated_and_keeps_accuracy(
    digits: ModelManifest, tmp_path: Path
) -> None:
    built = build(
        digits, tmp_path, "int8-static", calibrate_method="MinMax", calibration_samples=128
    )
    ops = [n.op_type for n in onnx.load(str(built.path)).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert built.report["calibration"] == "calibration set digits_calib.npz (128 samples)"
    assert abs(accuracy(built.path) - accuracy(digits.file)) <= 0.02
    entropy = build(
        digits, tmp_path, "int8-static", calibrate_method="Entropy", calibration_samples=32
    )
    assert entropy.path != built.path  # other parameters, other cache key


def test_int8_static_without_real_inputs_says_it_used_random_inputs(tmp_path: Path) -> None:
    manifest = load_manifest(MODELS_DIR / "tiny_mbv2.toml").model_copy(update={"data": None})
    bundled_model("tiny_mbv2.onnx")
    built = build(manifest, tmp_path, "int8-static", calibration_samples=4)
    assert built.report["calibration"].startswith(
        "seeded random inputs (4 samples; no [data] or eval set"
    )


def test_unstructured_pruning_reaches_its_sparsity(digits: ModelManifest, tmp_path: Path) -> None:
    built = build(digits, tmp_path, "prune-unstructured", sparsity=0.7, scope="layer")
    assert built.report["sparsity"] == pytest.approx(0.7, abs=0.01)
    pruned = weights(built.path)
    for name, layer_sparsity in built.report["layer_sparsity"].items():
        assert float((pruned[name] == 0).mean()) == pytest.approx(layer_sparsity, abs=1e-4)
    assert built.report["gzip_bytes"] < 0.7 * len(gzip.compress(digits.file.read_bytes()))
    global_scope = build(digits, tmp_path, "prune-unstructured", sparsity=0.7, scope="global")
    assert global_scope.report["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert global_scope.report["layer_sparsity"] != built.report["layer_sparsity"]


def test_structured_pruning_removes_channels_for_real(
    digits: ModelManifest, tmp_path: Path
) -> None:
    built = build(digits, tmp_path, "prune-structured", ratio=0.5)
    onnx.checker.check_model(str(built.path))
    before, after = weights(digits.file), weights(built.path)
    conv_shapes_before = sorted(w.shape[0] for w in before.values() if w.ndim == 4)
    conv_shapes_after = sorted(w.shape[0] for w in after.values() if w.ndim == 4)
    assert conv_shapes_after == [c // 2 for c in conv_shapes_before]
    assert built.report["params_after"] < 0.5 * built.report["params_before"]
    assert built.path.stat().st_size < 0.6 * digits.file.stat().st_size
    session = ort.InferenceSession(str(built.path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": EVAL["input"][:3]})[0].shape == (3, 10)


def test_structured_pruning_leaves_residual_layers_alone_and_lists_them(tmp_path: Path) -> None:
    bundled_model("tiny_mbv2.onnx")
    manifest = load_manifest(MODELS_DIR / "tiny_mbv2.toml")
    built = build(manifest, tmp_path, "prune-structured", ratio=0.25)
    assert built.report["pruned_layers"]  # the expand convs (through depthwise) are pruned
    reasons = {s["reason"] for s in built.report["left_alone"]}
    assert any("Add" in reason for reason in reasons)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 128, 128)).astype(np.float32)
    out = ort.InferenceSession(str(built.path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]
    assert out.shape == (1, 10)


def test_low_rank_factorises_and_approximates(digits: ModelManifest, tmp_path: Path) -> None:
    built = build(digits, tmp_path, "low-rank", energy=0.98)
    assert built.report["factored"]
    for layer in built.report["factored"]:
        before, after = (int(v) for v in layer["params"].split(" -> "))
        assert after < before
    x = EVAL["input"]
    reference = ort.InferenceSession(str(digits.file)).run(None, {"input": x})[0]

    def relative_error(path: Path) -> float:
        approximated = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
        return float(np.abs(reference - approximated).max() / np.abs(reference).max())

    assert relative_error(built.path) < 0.05
    low = build(digits, tmp_path, "low-rank", rank=2)
    assert {layer["rank"] for layer in low.report["factored"]} == {2}
    assert low.path.stat().st_size < built.path.stat().st_size
    assert relative_error(low.path) > relative_error(built.path)


def test_inapplicable_strategies_fail_with_a_reason(digits: ModelManifest, tmp_path: Path) -> None:
    with pytest.raises(CompressionFailed, match="saves nothing"):
        build(digits, tmp_path, "low-rank", rank=1000)
    tflite = load_manifest(MODELS_DIR / "face_detection_short_range.toml")
    with pytest.raises(CompressionFailed, match="works on ONNX models.*'external' variant"):
        build(tflite, tmp_path, "prune-unstructured")  # TFLite takes the quantizers only
    with pytest.raises(CompressionFailed, match="'int8-weight-only' is for TFLite models"):
        build(digits, tmp_path, "int8-weight-only")
    with pytest.raises(ConfigError, match="exactly one of 'rank' or 'energy'"):
        build(digits, tmp_path, "low-rank")
    with pytest.raises(ConfigError, match=r"variants\.v\.params\.sparsty"):
        build(digits, tmp_path, "prune-unstructured", sparsty=0.5)


def test_variants_are_cached_by_content(digits: ModelManifest, tmp_path: Path) -> None:
    first = build(digits, tmp_path, "fp16")
    again = build(digits, tmp_path, "fp16")
    assert not first.cached and again.cached and again.path == first.path
    # a changed base model gives a new key: nothing stale is reused
    changed_dir = tmp_path / "changed"
    changed_dir.mkdir()
    shutil.copy(digits.file, changed_dir / "m.onnx")
    model = onnx.load(str(changed_dir / "m.onnx"))
    model.producer_version = "retrained"
    onnx.save(model, str(changed_dir / "m.onnx"))
    changed = digits.model_copy(update={"file": changed_dir / "m.onnx"})
    assert build(changed, tmp_path, "fp16").path != first.path


def test_harness_compress_says_which_variants_came_from_the_cache(workspace: Path) -> None:
    from conftest import harness

    models = workspace / "models"
    first = harness(
        "compress", "tiny_mbv2", "--models-dir", models, "--dims", "batch=1", timeout=600
    )
    assert first.returncode == 0, first.stdout + first.stderr
    again = harness(
        "compress", "tiny_mbv2", "--models-dir", models, "--dims", "batch=1", timeout=600
    )
    assert again.returncode == 0, again.stdout + again.stderr
    rows = {line.split()[0]: line.split()[1] for line in again.stdout.splitlines()
            if line.strip() and line.split()[0] in ("fp32", "fp16", "int8-static")}  # fmt: skip
    assert rows == {"fp32": "as", "fp16": "cached", "int8-static": "cached"}
    assert "rebuilt" in first.stdout and "rebuilt" not in again.stdout
    assert max(len(line) for line in again.stdout.splitlines()) <= 120
