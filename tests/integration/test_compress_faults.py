"""Compression that never takes the command down: each case one that crashed or explained
badly, built through `build_all` (what `run` and `compress` call), on ONNX graphs written
here with onnx.helper and on the bundled models, run by the real onnxruntime."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import MODELS_DIR, harness
from onnx import TensorProto, helper, numpy_helper

from harness.compress import BuildContext, CompressionFailed, build_all, build_variant
from harness.compress.isolated import build_isolated
from harness.config import ModelManifest, Variant, load_manifest

RNG = np.random.default_rng(0)


FP16_AND_INT8 = (
    '[[variants]]\nname = "fp16"\nstrategy = "fp16"\n'
    '[[variants]]\nname = "int8"\nstrategy = "int8-dynamic"\n'
)


def save(
    tmp_path: Path, name: str, nodes: list, inits: list, shape: list[int], out: str,
    domains: tuple[str, ...] = (),
) -> Path:  # fmt: skip
    """The graph as an .onnx file: input `x` of `shape`, output `out`, opset 13 (and each
    custom domain at version 1)."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        inits,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 13), *(helper.make_opsetid(d, 1) for d in domains)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def manifest(tmp_path: Path, model: Path, variants: str, shape: list[int]) -> ModelManifest:
    text = (
        f'file = "{model}"\n[[inputs]]\nname = "x"\nshape = {shape}\n'
        + variants
    )  # fmt: skip
    path = tmp_path / f"{model.stem}.toml"
    path.write_text(text)
    return load_manifest(path)


def built(tmp_path: Path, manifests: list[ModelManifest]) -> dict[str, object]:
    said: list[str] = []
    files = build_all(
        manifests, None, tmp_path / "cache", lambda m: BuildContext(m, {}), said.append
    )
    return {"files": files, "log": "\n".join(said)}


def conv(name: str, x: str, c_in: int, c_out: int, out: str) -> tuple[list, list]:
    weight = numpy_helper.from_array(
        RNG.normal(0, 0.3, (c_out, c_in, 3, 3)).astype(np.float32), f"{name}_w"
    )
    bias = numpy_helper.from_array(np.zeros(c_out, np.float32), f"{name}_b")
    node = helper.make_node(
        "Conv", [x, weight.name, bias.name], [out], name=name, pads=[1, 1, 1, 1]
    )
    return [node], [weight, bias]


def test_strategies_of_the_other_format_fail_that_variant_not_the_command(tmp_path: Path) -> None:
    """Pruning on a TFLite manifest, int8-weight-only on ONNX: a pydantic traceback
    ("BaseModel cannot be instantiated directly") ended compress and run before."""
    tflite = load_manifest(MODELS_DIR / "iris_landmark.toml").model_copy(
        update={"variants": [Variant(name="pruned", strategy="prune-structured")]}
    )
    onnx_model = load_manifest(MODELS_DIR / "digits_cnn.toml").model_copy(
        update={"variants": [Variant(name="w8", strategy="int8-weight-only")]}
    )
    files = built(tmp_path, [tflite, onnx_model])["files"]
    assert "works on ONNX models" in files[("iris_landmark", "pruned")].error  # type: ignore[index]
    assert "is for TFLite models" in files[("digits_cnn", "w8")].error  # type: ignore[index]
    assert files[("iris_landmark", "fp32")].error is None  # type: ignore[index]


def test_a_corrupt_base_is_one_clear_error_naming_the_file(tmp_path: Path) -> None:
    whole = (MODELS_DIR / "zoo" / "digits_cnn.onnx").read_bytes()
    truncated = tmp_path / "digits_truncated.onnx"
    truncated.write_bytes(whole[: len(whole) // 3])
    broken = manifest(tmp_path, truncated, FP16_AND_INT8, [1, 1, 8, 8])
    result = built(tmp_path, [broken])
    errors = {v: f.error for (_, v), f in result["files"].items()}  # type: ignore[attr-defined]
    assert f"the base model {truncated} is not a readable ONNX file" in errors["fp16"]
    assert errors["fp16"].endswith("not built: " + errors["fp16"].split("not built: ")[1])
    assert result["log"].count("cannot build the variants of digits_truncated") == 1
    done = harness("compress", tmp_path / "digits_truncated.toml")
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert "2 variant(s) not built" in done.stdout + done.stderr


def test_a_build_that_dies_fails_that_variant_with_the_signal(tmp_path: Path) -> None:
    """A segfault in native code (ai-edge-quantizer calibrating a pre-quantized model did
    this) ends the child process, not the command."""
    digits = load_manifest(MODELS_DIR / "digits_cnn.toml")
    variant = Variant(name="int8", strategy="int8-static")

    def segfaulting(*_: object) -> object:
        os.kill(os.getpid(), signal.SIGSEGV)
        return None

    with pytest.raises(CompressionFailed) as died:
        build_isolated(segfaulting, digits, variant, tmp_path, BuildContext(digits))
    assert "the build process died (SIGSEGV) inside onnxruntime.quantization" in str(died.value)
    # and the same build through the child, for real, comes back whole
    good = build_isolated(build_variant, digits, variant, tmp_path, BuildContext(digits))
    assert good.path.is_file() and good.report["effect"]["changed"] > 0


def test_fp16_keeps_in_float32_the_node_onnxruntime_refuses(tmp_path: Path) -> None:
    """A `Cast` to float (here after one to int32, as an index path has it) that the
    converter leaves typed float16: onnxruntime refuses the model at load; the build
    retries with that node in node_block_list and says so."""
    weight = numpy_helper.from_array(RNG.normal(size=(4, 4)).astype(np.float32), "w")
    offset = numpy_helper.from_array(np.ones((1, 4), np.float32), "c")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Cast", ["h"], ["hi"], to=TensorProto.INT32, name="cast_to_int"),
        helper.make_node("Cast", ["hi"], ["hc"], to=TensorProto.FLOAT, name="cast_to_float"),
        helper.make_node("Add", ["hc", "c"], ["y"], name="add"),
    ]
    path = save(tmp_path, "casting", nodes, [weight, offset], [1, 4], "y")
    model = manifest(tmp_path, path, '[[variants]]\nname = "fp16"\nstrategy = "fp16"\n', [1, 4])
    result = built(tmp_path, [model])["files"][("casting", "fp16")]  # type: ignore[index]
    assert result.error is None, result.error
    assert result.report["kept_in_float32"] == ["cast_to_float"]
    x = RNG.normal(size=(1, 4)).astype(np.float32)
    ours = ort.InferenceSession(str(result.path)).run(None, {"x": x})[0]
    reference = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert np.allclose(ours, reference, atol=1e-2)


def test_structured_pruning_passes_through_silu_and_spatial_padding(tmp_path: Path) -> None:
    """A SiLU network (x * sigmoid(x)) and TF "SAME" padding (a Pad of H and W only) were
    refused layer by layer; both are channel-wise."""
    first, first_inits = conv("conv1", "x", 3, 16, "a")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    second_w = numpy_helper.from_array(
        RNG.normal(0, 0.3, (8, 16, 3, 3)).astype(np.float32), "conv2_w"
    )
    nodes = first + [
        helper.make_node("Sigmoid", ["a"], ["s"], name="sig"),
        helper.make_node("Mul", ["a", "s"], ["silu"], name="silu"),
        helper.make_node("Pad", ["silu", "pads"], ["padded"], name="same_pad"),
        helper.make_node("Conv", ["padded", "conv2_w"], ["y"], name="conv2"),
    ]
    path = save(tmp_path, "silu", nodes, [*first_inits, pads, second_w], [1, 3, 16, 16], "y")
    model = manifest(
        tmp_path, path,
        '[[variants]]\nname = "channels"\nstrategy = "prune-structured"\n'
        "params = { ratio = 0.25 }\n",
        [1, 3, 16, 16],
    )  # fmt: skip
    result = built(tmp_path, [model])["files"][("silu", "channels")]  # type: ignore[index]
    assert result.error is None, result.error
    assert result.report["pruned_layers"] == [{"layer": "conv1", "channels": "16 -> 12"}]
    output = ort.InferenceSession(str(result.path)).run(
        None, {"x": np.ones((1, 3, 16, 16), np.float32)}
    )[0]
    assert output.shape == (1, 8, 16, 16)


def test_low_rank_says_it_does_not_look_inside_subgraphs(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(RNG.normal(size=(64, 64)).astype(np.float32), "w")
    branch = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["inner"], name="mm_in_branch")], "branch", [],
        [helper.make_tensor_value_info("inner", TensorProto.FLOAT, None)],
    )  # fmt: skip
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    nodes = [  # a condition computed from the input: no optimiser can fold the If away
        helper.make_node("ReduceSum", ["x"], ["total"], name="sum", keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["cond"], name="positive"),
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=branch, else_branch=branch),
    ]
    path = save(tmp_path, "branchy", nodes, [weight, zero], [1, 64], "y")
    model = manifest(
        tmp_path,
        path,
        '[[variants]]\nname = "lr"\nstrategy = "low-rank"\nparams = { energy = 0.9 }\n',
        [1, 64],
    )
    error = built(tmp_path, [model])["files"][("branchy", "lr")].error  # type: ignore[index]
    assert "inside If/Loop/Scan subgraphs, which low-rank does not look into" in error


def test_a_base_with_custom_operators_is_reported_once_with_their_names(tmp_path: Path) -> None:
    nodes = [helper.make_node("FancyGelu", ["x"], ["y"], name="custom", domain="com.example")]
    path = save(tmp_path, "custom", nodes, [], [1, 4], "y", domains=("com.example",))
    custom = manifest(tmp_path, path, FP16_AND_INT8, [1, 4])
    result = built(tmp_path, [custom])
    assert result["log"].count("custom operator(s) com.example::FancyGelu") == 1
    for variant in ("fp16", "int8"):
        error = result["files"][("custom", variant)].error  # type: ignore[index]
        assert "custom operator(s) com.example::FancyGelu are not in onnxruntime" in error


def test_an_int8_base_is_not_calibrated_again(tmp_path: Path) -> None:
    """The already-quantized check runs before any calibration."""
    digits = load_manifest(MODELS_DIR / "digits_cnn.toml")
    once = build_variant(
        digits, Variant(name="q", strategy="int8-dynamic"), tmp_path / "one", BuildContext(digits)
    )
    quantized = manifest(
        tmp_path, once.path,
        '[[variants]]\nname = "again"\nstrategy = "int8-static"\n',
        [1, 1, 8, 8],
    )  # fmt: skip
    files = built(tmp_path, [quantized])["files"]
    again = files[(quantized.name, "again")]  # type: ignore[index]
    assert again.status == "no-effect", again.error
    assert "the model is int8 already" in again.error


def test_per_channel_int8_that_onnxruntime_cannot_build_falls_back_to_per_tensor(
    tmp_path: Path,
) -> None:
    """Magika's classifier: onnxruntime's per-channel quantizer raises a bare "truth value
    of an array is ambiguous"; the variant is built per-tensor, runs, and says why."""
    manifest = load_manifest(MODELS_DIR / "magika_v3_3.toml")
    [variant] = manifest.variants
    assert variant.params.get("per_channel", True)  # the default: per-channel first
    context = BuildContext(manifest, {"batch": 1})
    files = build_all([manifest], None, tmp_path / "cache", lambda m: context)
    made = files[("magika_v3_3", "int8-static")]
    assert made.error is None and made.path is not None
    note = made.report["per_channel"]
    assert note.startswith("per-channel failed (ValueError: The truth value of an array")
    assert note.endswith("built per-tensor")
    session = ort.InferenceSession(str(made.path), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"bytes": np.full((1, 2048), 256, np.int32)})[0]
    assert np.isfinite(scores).all()
    quantized = onnx.load(str(made.path))
    scales = [i for i in quantized.graph.initializer if i.name.endswith("_scale")]
    assert scales and all(int(np.prod(s.dims)) == 1 for s in scales)  # one per tensor
