"""Real pretrained models, as teams have them, from package files (models/*.toml with a
pip-wheel source: extracted by `make models`, pinned by sha256): PaddleOCR's detector and
classifier (paddle2onnx, opset 11-12, every weight a Constant node, dynamic dims), Silero
VAD (a recurrent model with a state input, an int64 sample-rate scalar and If branches),
openWakeWord's timer classifier (exported from PyTorch), and three TFLite models (MediaPipe's
iris landmarks and face detector, old flatbuffers without a signature, the face detector's
weights stored as float16; Basic Pitch, with TensorFlow's signature).
Every strategy builds, is verified (loads, runs, changed what it claims) and is measured,
or says exactly why not."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from conftest import MODELS_DIR, SSHServer, bundled_model
from device_files import local_device_file

from harness.compress import BuildContext, build_all
from harness.config import ModelManifest, Variant, load_manifest
from harness.records import JobRecord
from harness.scheduler import prepare_run, run_prepared

STRATEGIES = ["fp16", "int8-dynamic", "int8-static", "pruned-50", "channels-25", "low-rank"]
# model -> variant -> "built", or (status, words of the reason)
EXPECTED: dict[str, dict[str, object]] = {
    "ppocr_cls_v2": dict.fromkeys(STRATEGIES, "built"),
    "ppocr_det_v4": dict.fromkeys(STRATEGIES, "built"),
    # exported from PyTorch: three Gemm layers, nothing for channel pruning
    "openwakeword_timer": {
        **dict.fromkeys(STRATEGIES, "built"),
        "channels-25": ("error", "this model's 3 Gemm/MatMul layer(s) are for prune-"),
    },
    "silero_vad_v5": {
        # onnxruntime refused the converted branches; with the nodes it named kept in float32
        # (the retry), nothing was left converted: no effect, and why
        "fp16": ("no-effect", "(inside If/Loop subgraphs)"),
        "int8-dynamic": ("no-effect", "onnxruntime.quantization quantized no op"),
        "int8-static": ("no-effect", "onnxruntime.quantization quantized no op"),
        "pruned-50": ("error", "12 inside If/Loop subgraphs"),
        "channels-25": ("error", "12 more inside If/Loop subgraphs"),
        "low-rank": ("error", "inside If/Loop/Scan subgraphs, which low-rank does not look into"),
    },
}
TFLITE = ["fp16", "int8-weight-only", "int8-dynamic", "int8-static"]
EXPECTED.update(
    {
        # float32 weights, an old flatbuffer (operator codes fixed and a signature added by
        # the preparation: full-integer int8 calibrates through it)
        "iris_landmark": dict.fromkeys(TFLITE, "built"),
        # MediaPipe stores its weights as float16 behind DEQUANTIZE ops: the preparation
        # makes them float32 constants, so the int8 strategies apply; fp16 has nothing to do
        # written by TensorFlow's converter with its own signature
        "basic_pitch_nmp": dict.fromkeys(TFLITE, "built"),
        "face_detection_short_range": {
            "fp16": ("no-effect", "already stores its 74 weights as float16"),
            **dict.fromkeys(TFLITE[1:], "built"),
        },
    }
)
DIMS = {"batch": 1, "height": 96, "width": 192}


def with_variants(manifest: ModelManifest, names: list[str]) -> ModelManifest:
    """The manifest with a variant per strategy name, when it declares none."""
    if manifest.variants:
        return manifest
    variants = [Variant(name=name, strategy=name) for name in names]  # type: ignore[arg-type]
    return manifest.model_copy(update={"variants": variants})


@pytest.mark.parametrize("model", list(EXPECTED))
def test_every_strategy_is_built_and_verified_or_says_why(model: str, tmp_path: Path) -> None:
    manifest = with_variants(load_manifest(MODELS_DIR / f"{model}.toml"), TFLITE)
    bundled_model(manifest.file.name)  # `make models` extracted it
    logged: list[str] = []
    files = build_all([manifest], None, tmp_path, lambda m: BuildContext(m, DIMS), logged.append)
    for variant, expected in EXPECTED[model].items():
        result = files[(model, variant)]
        if expected == "built":
            assert result.error is None, result.error
            report = result.report
            assert report["effect"]["changed"] > 0, report["effect"]
            assert "runs one inference" in report["verified"]
            prepared = report["prepared"]
            if model.startswith("ppocr"):
                # paddle2onnx's Constant-node weights became initializers; opset 11/12 -> 13
                assert prepared["constants_folded"] > 300 and prepared["opset"][1] == 13
            elif model in ("iris_landmark", "face_detection_short_range"):
                # MediaPipe's old flatbuffers: CONV_2D and friends were in
                # deprecated_builtin_code only, and there was no signature
                assert prepared["operator_codes_fixed"] > 0
                assert prepared["signature_added"] == "serving_default"
        else:
            status, words = expected  # type: ignore[misc]
            assert (result.status, result.path) == (status, None), result.error
            assert words in str(result.error) and model in str(result.error)
    # the user's file is left as it was (the strategies started from a prepared copy)
    assert manifest.source is not None
    assert hashlib.sha256(manifest.file.read_bytes()).hexdigest() == manifest.source.sha256


def test_the_cache_key_follows_what_changes_a_calibrated_variant(tmp_path: Path) -> None:
    manifest = load_manifest(MODELS_DIR / "ppocr_cls_v2.toml")

    def static_file(dims: dict[str, int]) -> Path:
        files = build_all([manifest], ["int8-static"], tmp_path, lambda m: BuildContext(m, dims))
        path = files[("ppocr_cls_v2", "int8-static")].path
        assert path is not None
        return path

    first = static_file({"batch": 1, "width": 192})
    assert static_file({"batch": 1, "width": 192}) == first  # the same inputs: from the cache
    wider = static_file({"batch": 1, "width": 320})  # calibrated at other shapes: rebuilt
    assert wider != first and wider.is_file() and first.is_file()
    # a dynamic dim the plan does not give is never invented
    files = build_all([manifest], ["int8-static"], tmp_path, lambda m: BuildContext(m, {}))
    error = str(files[("ppocr_cls_v2", "int8-static")].error)
    assert "input 'x' axis 0 is dynamic ('batch')" in error and "dims = { batch = N }" in error


def test_real_models_run_on_local_and_ssh_devices(workspace: Path, sshd: SSHServer) -> None:
    """Built variants are measured on both devices; a variant that changed nothing is
    recorded `no-effect` and never measured; the recurrent model runs with its state and
    its sample rate (`values = [16000]` in the manifest)."""
    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "wd"))
    (workspace / "devices" / "loop.toml").write_text(sshd.device_toml("loop", workspace / "ssh"))
    plan = workspace / "plans" / "real.toml"
    plan.write_text(
        'name = "real"\ndevices = ["local", "loop"]\n'
        'models = ["ppocr_cls_v2", "ppocr_det_v4", "silero_vad_v5", "iris_landmark", '
        '"openwakeword_timer", "basic_pitch_nmp"]\n'
        "[measure]\nwarmup = 2\niterations = 20\n"
        "[inputs]\ndims = { batch = 1, height = 96, width = 192 }\n"
    )
    prepared = prepare_run(plan)
    records = run_prepared(prepared)
    by_key = {(r.device, r.model, r.variant): r for r in records}
    for device in ("local", "loop"):
        for variant in ["fp32", *STRATEGIES]:
            for paddle in ("ppocr_cls_v2", "ppocr_det_v4"):
                ocr = by_key[(device, paddle, variant)]
                assert ocr.status == "ok" and len(ocr.latencies_ns) == 20, ocr.error
        assert by_key[(device, "silero_vad_v5", "fp32")].status == "ok"
        for variant in ["fp32", *TFLITE]:  # TFLite variants from ai-edge-quantizer
            for tflite in ("iris_landmark", "basic_pitch_nmp"):
                record = by_key[(device, tflite, variant)]
                if (tflite, variant) == ("basic_pitch_nmp", "int8-static"):
                    # calibrated on real speech ([data]), its int8 DIV meets a quantized
                    # zero: LiteRT cannot run it, and the variant says so
                    assert record.status == "error" and "LiteRT cannot run it" in str(record.error)
                    continue
                assert record.status == "ok" and record.runtime == "tflite", record.error
        for variant in ["fp32", *STRATEGIES]:
            timer = by_key[(device, "openwakeword_timer", variant)]
            assert timer.status == ("error" if variant == "channels-25" else "ok"), timer.error
        for variant in ("int8-dynamic", "int8-static"):
            vad: JobRecord = by_key[(device, "silero_vad_v5", variant)]
            assert vad.status == "no-effect" and not vad.latencies_ns and not vad.runner
    results = pd.read_parquet(prepared.store.run_dir / "results.parquet")
    assert set(results["status"]) == {"ok", "error", "no-effect"}
    # a variant that was not built has no size of its own (never the base model's)
    assert results.loc[results["status"] != "ok", "model_bytes"].isna().all()
    built = results[(results["status"] == "ok") & (results["variant"] != "fp32")]
    assert built["variant_effect"].str.contains(r"\d").all()
    # fidelity: every output against fp32's on the same device and inputs; on the [data] of
    # the text detector (photographs), the direction classifier (rendered text lines), Basic
    # Pitch (real speech) and the wake-word classifier (its embeddings), else seeded inputs
    real = ["ppocr_det_v4", "ppocr_cls_v2", "basic_pitch_nmp", "openwakeword_timer"]
    with_data = built["model"].isin(real)
    assert (built.loc[with_data, "fidelity_source"] == "representative set").all()
    assert (built.loc[~with_data, "fidelity_source"] == "seeded random inputs").all()
    assert built["psnr_db"].notna().all()
    psnr = built[built["device"] == "loop"].set_index(["model", "variant"])["psnr_db"]
    assert psnr[("ppocr_cls_v2", "fp16")] > 40  # float16 weights: close to fp32
    # full-integer int8 takes and gives int8: the runner quantizes its real-valued inputs
    # and dequantizes its outputs at the boundary, so they compare with fp32's
    assert psnr[("iris_landmark", "int8-static")] > 25
    # a classifier (task = "classification") gets its agreement with fp32 without labels
    # (two classes: no top-5; the PyTorch-exported timer classifier has seven)
    classifiers = built["model"].isin(["ppocr_cls_v2", "openwakeword_timer"])
    assert built.loc[classifiers, "top1_agreement"].between(0, 1).all()
    assert built.loc[built["model"] == "ppocr_cls_v2", "top5_agreement"].isna().all()
    assert built.loc[built["model"] == "openwakeword_timer", "top5_agreement"].between(0, 1).all()
    assert built.loc[~classifiers, "top1_agreement"].isna().all()
    assert psnr[("ppocr_cls_v2", "pruned-50")] < psnr[("ppocr_cls_v2", "fp16")]
    assert results.loc[results["variant"] == "fp32", "psnr_db"].isna().all()  # the reference


def vad_manifest(workspace: Path) -> tuple[Path, str]:
    """The workspace's Silero manifest and its text without its real speech ([data]) and
    variants: fp32 alone, fed from its specs or an eval set."""
    path = workspace / "models" / "silero_vad_v5.toml"
    text = path.read_text()
    return path, text.split("[data]")[0] + text[text.index("[outputs.") :].split("[[variants]]")[0]


def run_vad_alone(workspace: Path) -> JobRecord:
    """Silero's fp32 on the local device: its one record."""
    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "wd"))
    plan = workspace / "plans" / "vad.toml"
    plan.write_text(
        'name = "vad"\ndevices = ["local"]\nmodels = ["silero_vad_v5"]\n'
        "[measure]\nwarmup = 1\niterations = 10\n[inputs]\ndims = { batch = 1 }\n"
    )
    [record] = run_prepared(prepare_run(plan))
    return record


def test_a_recurrent_models_eval_set_passes_its_state_whole(workspace: Path) -> None:
    """Silero VAD's eval set: one 512-sample chunk per row of `input`; its `state` and its
    `sr` are passed whole with every chunk (`eval.whole`), never sliced on axis 0."""
    import numpy as np

    from harness.data_files import eval_problem

    rng = np.random.default_rng(7)
    np.savez(
        workspace / "models" / "vad_eval.npz",
        input=rng.uniform(-1, 1, (6, 512)).astype(np.float32),
        state=np.zeros((2, 1, 128), np.float32),
        sr=np.array(16000, np.int64),
    )
    manifest_path, text = vad_manifest(workspace)
    sliced = text + '[eval]\nfile = "vad_eval.npz"\nlabels = ""\n'
    manifest_path.write_text(sliced)
    key, problem = eval_problem(load_manifest(manifest_path))
    assert key == "eval.whole" and "holds input(s) ['sr'] as a scalar" in str(problem)
    manifest_path.write_text(sliced + 'whole = ["state", "sr"]\n')
    assert eval_problem(load_manifest(manifest_path)) == ("", None)
    record = run_vad_alone(workspace)
    assert record.status == "ok", record.error
    from harness.runner.result_document import ResultDocument

    doc = ResultDocument(record.runner)
    assert doc.eval_error is None and doc.eval is not None and doc.eval.n == 6
    assert doc.fidelity is not None and doc.fidelity.source == "eval set"
    assert doc.fidelity.shapes == [[1, 1], [2, 1, 128]]


def test_an_integer_input_fed_random_values_is_named_when_the_model_fails(
    workspace: Path,
) -> None:
    """Without `values = [16000]`, Silero's sample rate is drawn from [0, 1): the model
    fails deep inside (an LSTM's rank); the error names the input to set."""
    manifest_path, text = vad_manifest(workspace)
    assert "values = [16000]\n" in text
    manifest_path.write_text(text.replace("values = [16000]\n", ""))
    record = run_vad_alone(workspace)
    assert record.status == "error", record.error
    assert "the first inference failed" in str(record.error)
    assert "'sr' (int64, drawn from [0, 1))" in str(record.error)
    assert "values = [16000]" in str(record.error)


def test_the_compression_libraries_output_goes_to_a_log_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """onnxruntime's quantizer logs a line per tensor it leaves alone (611 lines for one
    model once): into build.log beside the variants, with one line to the user saying so."""
    manifest = load_manifest(MODELS_DIR / "ppocr_cls_v2.toml")
    said: list[str] = []
    context = BuildContext(manifest, {"batch": 1, "width": 192})
    files = build_all([manifest], ["int8-dynamic"], tmp_path, lambda m: context, said.append)
    assert files[("ppocr_cls_v2", "int8-dynamic")].error is None
    log = (tmp_path / "build.log").read_text()
    assert "== " in log and "ppocr_cls_v2/int8-dynamic" in log
    assert 'Quantization parameters for tensor:"x" not specified' in log
    terminal = capfd.readouterr()
    assert "Quantization parameters" not in terminal.out + terminal.err
    lines = log.count("\n")
    assert (
        said[-1]
        == f"the compression libraries' own output ({lines} lines) is in {tmp_path}/build.log"
    )
