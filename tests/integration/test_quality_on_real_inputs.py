"""Quality measured like speed, end to end on the local device: the bundled image models read
the photographs of the scikit-image wheel (`make models`), their variants are calibrated on
them and judged on them output by output, and a model without real inputs is unverified
and never worth shipping."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from conftest import compared_on_local, harness

FACE_INT8 = '\n[[variants]]\nname = "int8-static"\nstrategy = "int8-static"\n'


def test_variants_are_judged_on_the_photographs_and_random_inputs_verify_nothing(
    workspace: Path,
) -> None:
    models = workspace / "models"
    face = models / "face_detection_short_range.toml"
    face.write_text(face.read_text() + FACE_INT8)
    # the same CNN with no [data]: what a user who gives no inputs runs
    tiny = (models / "tiny_mbv2.toml").read_text()
    without = tiny.split("[data]")[0] + "[[variants]]" + tiny.split("[[variants]]", 1)[1]
    (models / "tiny_random.toml").write_text(without)
    said: list[str] = []
    prepared, results, table = compared_on_local(
        workspace,
        'name = "quality"\ndevices = ["local"]\n'
        'models = ["tiny_mbv2", "tiny_random", "face_detection_short_range", "ppocr_det_v4"]\n'
        'variants = ["fp32", "fp16", "int8-static", "channels-25"]\n'
        "[measure]\nwarmup = 2\niterations = 30\n"
        "[inputs]\ndims = { batch = 1, height = 96, width = 192 }\n",
        said.append,
    )
    rows = results.set_index(["model", "variant"])

    # the photographs: calibration and fidelity, 12 samples, each output judged by its kind
    assert rows.loc[("tiny_mbv2", "int8-static"), "fidelity_source"] == "representative set"
    calibration = rows.loc[("tiny_mbv2", "int8-static"), "calibration"]
    assert calibration.startswith("representative set ") and "(16 samples)" not in calibration
    for variant in ("fp16", "int8-static", "channels-25"):
        assert table.loc[("tiny_mbv2", variant), "fidelity_n"] == 12
        assert table.loc[("tiny_mbv2", variant), "quality"] in ("ok", "loss")
    face_outputs = json.loads(
        rows.loc[("face_detection_short_range", "int8-static"), "fidelity_outputs"]
    )
    kinds = {o["name"]: (o["kind"], o["basis"]) for o in face_outputs}
    assert kinds == {
        "regressors": ("tensor", "no kind declared: compared as a tensor"),
        "classificators": ("detection", "declared"),
    }
    detection = next(o for o in face_outputs if o["kind"] == "detection")
    assert detection["n"] == 12 and detection["figures"]["detections_fp32"] > 0
    assert 0 <= detection["value"] <= 1 and detection["figures"]["detection_mean_iou"] > 0.5
    # nothing seeded random verifies a variant, however good its figures look
    for variant in ("fp16", "int8-static", "channels-25"):
        random = table.loc[("tiny_random", variant)]
        assert (
            random["quality"] == "unverified" and "seeded random inputs" in random["quality_note"]
        )
        assert not random["worth_shipping"] and not random["pareto"]
    assert any(
        "tiny_random/int8-static (int8-static) is calibrated on seeded random inputs" in line
        for line in said
    )
    # PP-OCRv4's text map on the photographs: float16 keeps the text, int8 loses all of it
    # (a map stuck at zero, which a PSNR on random inputs scored above 30 dB)
    assert table.loc[("ppocr_det_v4", "fp16"), "quality"] == "ok"
    int8 = table.loc[("ppocr_det_v4", "int8-static")]
    assert int8["quality"] == "loss" and "constant (all zeros)" in int8["quality_note"]
    mask = json.loads(rows.loc[("ppocr_det_v4", "fp16"), "fidelity_outputs"])[0]
    assert mask["kind"] == "mask" and mask["figures"]["mask_pixels_fp32"] > 100
    assert mask["value"] > 0.95
    shipping = table[table["worth_shipping"] == True]  # noqa: E712
    assert set(shipping["quality"]) <= {"ok"}
    assert (shipping["speedup_low"] > 1).all()
    done = harness("show", "--compare", "--runs-dir", prepared.store.run_dir.parent, "latest")
    assert done.returncode == 0, done.stderr
    assert "among variants of verified quality" in done.stdout
    assert "tiny_random" in done.stdout and "unverified" in done.stdout


def test_fidelity_figures_are_null_where_a_pass_did_not_run(workspace: Path) -> None:
    """fidelity_samples = 0: no pass, no figure, quality not judged (never "ok")."""
    _, results, table = compared_on_local(
        workspace,
        'name = "off"\ndevices = ["local"]\nmodels = ["tiny_mbv2"]\nvariants = ["fp32", "fp16"]\n'
        "[measure]\nwarmup = 1\niterations = 10\nfidelity_samples = 0\n"
        "[inputs]\ndims = { batch = 1 }\n",
    )
    fp16 = table.loc[("tiny_mbv2", "fp16")]
    assert pd.isna(fp16["quality"]) and not fp16["worth_shipping"]
    assert results["fidelity_outputs"].isna().all()
