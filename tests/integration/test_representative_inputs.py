"""Representative inputs ([data]): real photographs from the scikit-image wheel (fetched by
`make models`), WAV audio and raw bytes read into the one .npz that calibration and the
fidelity pass take, with bad files named and a set that cannot serve refused."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS_DIR

from harness.config import ModelManifest, RepresentativeData, load_manifest
from harness.errors import ConfigError
from harness.representative import representative_set, with_representative_sets

PHOTOS = MODELS_DIR / "cache" / "data" / "photos"
NCHW_128 = [("input", "float32", ["batch", 3, 128, 128])]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    if not PHOTOS.is_dir() or len(list(PHOTOS.iterdir())) < 12:
        pytest.fail(f"{PHOTOS} is missing: run `make models` (make test does it first)")
    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder)
    return folder


def manifest_with(tmp_path: Path, **data: object) -> ModelManifest:
    base = load_manifest(MODELS_DIR / "tiny_mbv2.toml", require_files=False)
    return base.model_copy(
        update={"data": RepresentativeData(**data), "manifest_path": tmp_path / "m.toml"}  # type: ignore[arg-type]
    )


def test_photographs_become_one_normalised_npz_and_a_broken_one_is_named(
    photos: Path, tmp_path: Path
) -> None:
    (photos / "truncated.png").write_bytes((photos / "astronaut.png").read_bytes()[:300])
    manifest = manifest_with(
        tmp_path, images=str(photos), size=[96, 128], layout="NHWC",
        mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
    )  # fmt: skip
    declared = [("input", "float32", [1, 96, 128, 3])]
    made = representative_set(manifest, tmp_path / "cache", declared)
    assert made is not None and made.samples == 12
    assert made.source == f"12 images from {photos}"
    assert len(made.skipped) == 1 and made.skipped[0].startswith("truncated.png: ")
    with np.load(made.path) as data:
        assert data.files == ["input"]
        pixels = data["input"]
    assert pixels.shape == (12, 96, 128, 3) and pixels.dtype == np.float32
    # (x / 255 - mean) / std: ImageNet's normalisation, roughly centred
    assert -2.2 < pixels.min() < -1.5 and 2.0 < pixels.max() < 2.7
    assert abs(float(pixels.mean())) < 1.0
    stamp = made.path.stat().st_mtime_ns
    again = representative_set(manifest, tmp_path / "cache", declared)
    assert again == made and made.path.stat().st_mtime_ns == stamp  # from the cache


def test_a_set_left_too_small_is_refused_with_the_count(photos: Path, tmp_path: Path) -> None:
    for extra in ("a.png", "b.jpg"):
        (photos / extra).write_text("not an image")
    for kept in list(photos.iterdir())[:9]:
        if kept.name not in ("a.png", "b.jpg"):
            kept.unlink()
    manifest = manifest_with(tmp_path, images=str(photos), size=[128, 128], min_samples=8)
    with pytest.raises(ConfigError) as refused:
        representative_set(manifest, tmp_path / "cache", NCHW_128)
    message = str(refused.value)
    assert "fewer than min_samples = 8" in message and "could be read" in message
    assert "a.png: " in message and "key 'data'" in message


def test_a_preprocessing_that_does_not_fit_the_input_is_refused_naming_it(
    photos: Path, tmp_path: Path
) -> None:
    manifest = manifest_with(tmp_path, images=str(photos), size=[128, 128], layout="NHWC")
    with pytest.raises(ConfigError) as refused:
        representative_set(manifest, tmp_path / "cache", NCHW_128)
    assert "input 'input' takes ['batch', 3, 128, 128]" in str(refused.value)
    assert "[data] makes samples of shape ['batch', 128, 128, 3]" in str(refused.value)
    integer = manifest_with(tmp_path, images=str(photos), size=[128, 128], dtype="int64")
    with pytest.raises(ConfigError, match="int64, the model's input takes float32"):
        representative_set(integer, tmp_path / "cache", NCHW_128)


def test_an_npz_of_the_wrong_dtype_is_refused_naming_file_array_and_dtypes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calibration.npz"
    np.savez(path, input=np.zeros((4, 3, 128, 128), dtype=np.int64))
    manifest = manifest_with(tmp_path, file=path)
    with pytest.raises(ConfigError) as refused:
        representative_set(manifest, tmp_path / "cache", NCHW_128)
    assert "calibration.npz's array 'input' is int64, the model's input takes float32" in str(
        refused.value
    )


def write_wav(path: Path, rate: int, seconds: float, channels: int = 1) -> None:
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(tone, channels).tobytes())


def test_wav_audio_is_cut_into_frames_resampled_and_stereo_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "audio"
    folder.mkdir()
    write_wav(folder / "a_tone.wav", 16000, 0.5)
    write_wav(folder / "b_fast.wav", 44100, 0.5)  # resampled to 16 kHz: 8000 samples
    write_wav(folder / "stereo.wav", 16000, 0.5, channels=2)
    manifest = manifest_with(
        tmp_path, audio=str(folder), sample_rate=16000, frame_length=1600, min_samples=2
    )
    made = representative_set(manifest, tmp_path / "cache", [("input", "float32", [1, 1600])])
    assert made is not None and made.samples == 10  # 2 x 8000 samples, 1600 a frame
    assert made.skipped == ("stereo.wav: 2 channel(s), 16-bit; [data] takes mono 16-bit PCM",)
    with np.load(made.path) as data:
        frames = data["input"]
    assert frames.shape == (10, 1600)
    for frame in (frames[2], frames[7]):  # the same 440 Hz tone, before and after resampling
        assert 0.29 < float(np.abs(frame).max()) <= 0.31
        spectrum = np.abs(np.fft.rfft(frame))
        assert abs(np.argmax(spectrum) * 16000 / 1600 - 440) <= 10


def test_frames_every_hop_into_an_input_with_an_axis_of_one(tmp_path: Path) -> None:
    """frame_hop spreads the frames over a long file; a [batch, n, 1] input takes them."""
    folder = tmp_path / "audio"
    folder.mkdir()
    write_wav(folder / "tone.wav", 8000, 1.0)
    manifest = manifest_with(
        tmp_path, audio=str(folder), sample_rate=8000, frame_length=400, frame_hop=1000,
        min_samples=2,
    )  # fmt: skip
    made = representative_set(manifest, tmp_path / "cache", [("input", "float32", [1, 400, 1])])
    assert made is not None and made.samples == 8  # starts 0, 1000, ... 7000 of 8000
    with np.load(made.path) as data:
        frames = data["input"]
    assert frames.shape == (8, 400, 1)
    t = (np.arange(400) + 3000) / 8000  # the fourth frame starts at sample 3000
    expected = np.round(0.3 * np.sin(2 * np.pi * 440 * t) * 32767) / 32768
    assert np.allclose(frames[3, :, 0], expected, atol=1e-4)


def test_inputs_the_data_does_not_feed_are_passed_whole_from_their_specs(tmp_path: Path) -> None:
    """A recurrent audio model: the frames feed `input`; the zero state (low = high) and
    the sample rate (values) are stored once and passed whole with every sample."""
    folder = tmp_path / "audio"
    folder.mkdir()
    write_wav(folder / "tone.wav", 16000, 0.5)
    base = load_manifest(MODELS_DIR / "silero_vad_v5.toml", require_files=False)
    data = RepresentativeData(
        audio=str(folder), input="input", sample_rate=16000, frame_length=512, min_samples=2
    )
    manifest = base.model_copy(update={"data": data, "manifest_path": tmp_path / "m.toml"})
    declared = [
        ("input", "float32", ["batch", 512]),
        ("state", "float32", [2, "batch", 128]),
        ("sr", "int64", []),
    ]
    made = representative_set(manifest, tmp_path / "cache", declared)
    assert made is not None and made.whole == ("state", "sr") and made.samples == 15
    with np.load(made.path) as stored:
        assert stored["state"].shape == (2, 1, 128) and not stored["state"].any()
        assert stored["sr"].dtype == np.int64 and int(stored["sr"]) == 16000
    ranged = base.model_copy(
        update={
            "data": data,
            "manifest_path": tmp_path / "m.toml",
            "inputs": [s if s.name != "state" else s.model_copy(update={"high": 1.0})
                       for s in base.inputs],
        }
    )  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        representative_set(ranged, tmp_path / "cache", declared)
    assert "input 'state' is not fed by [data] and has no fixed value" in str(refused.value)


def test_binary_files_are_read_as_bytes_and_an_empty_one_is_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    for k in range(3):
        (folder / f"doc{k}.bin").write_bytes(bytes(range(k, k + 40)))
    (folder / "empty.bin").write_bytes(b"")
    manifest = manifest_with(tmp_path, binary=str(folder), length=64, min_samples=3)
    made = representative_set(manifest, tmp_path / "cache", [("input", "float32", [1, 64])])
    assert made is not None and made.samples == 3 and made.skipped == ("empty.bin: empty file",)
    with np.load(made.path) as data:
        rows = data["input"]
    assert rows[1, :3].tolist() == [1.0, 2.0, 3.0] and rows[1, 40:].sum() == 0  # zero-padded


def test_the_bundled_image_models_read_the_photographs(tmp_path: Path) -> None:
    """The demo's image models take the photographs by default: their [data] points at
    them, and the set fits each model's input as the runtime declares it."""
    names = ["tiny_mbv2", "face_detection_short_range", "ppocr_cls_v2"]
    manifests = [load_manifest(MODELS_DIR / f"{n}.toml") for n in names]
    ready = with_representative_sets(manifests, tmp_path / "cache")
    shapes = {}
    for manifest in ready:
        assert manifest.data is not None and manifest.data.file is not None
        with np.load(manifest.data.file) as data:
            shapes[manifest.name] = data[data.files[0]].shape
    assert shapes == {
        "tiny_mbv2": (12, 3, 128, 128),
        "face_detection_short_range": (12, 128, 128, 3),
        "ppocr_cls_v2": (118, 3, 48, 192),  # the rendered text lines, both turns
    }


def test_fit_keeps_a_short_lines_aspect_and_pads_it_with_zeros(tmp_path: Path) -> None:
    """resize = "fit" (text lines): the full height, the aspect ratio kept, zeros on the
    right after normalisation; a line wider than the input is stretched to it."""
    from PIL import Image

    folder = tmp_path / "lines"
    folder.mkdir()
    Image.new("RGB", (100, 50), "white").save(folder / "short.png")  # 48 x 96 when fitted
    Image.new("RGB", (1000, 50), "white").save(folder / "long.png")  # 48 x 960: stretched
    manifest = manifest_with(
        tmp_path, images=str(folder), size=[48, 192], resize="fit", scale=[-1.0, 1.0],
        min_samples=2,
    )  # fmt: skip
    made = representative_set(manifest, tmp_path / "cache", [("x", "float32", [1, 3, 48, 192])])
    assert made is not None
    with np.load(made.path) as data:
        long, short = data["x"]  # sorted by name
    assert (long == 1.0).all()
    assert (short[:, :, :96] == 1.0).all() and (short[:, :, 96:] == 0.0).all()


def test_labelled_folders_make_the_eval_set_too(photos: Path, tmp_path: Path) -> None:
    """One loader for calibration, fidelity and the eval pass: images in one folder per
    class are labelled by their folder (sorted: class 0, 1, ...) and measured for accuracy."""
    classes = tmp_path / "classes"
    for label, names in (("animals", ["chelsea.png", "coffee.png"]), ("space", ["rocket.jpg"])):
        (classes / label).mkdir(parents=True)
        for name in names:
            shutil.copy(photos / name, classes / label / name)
    (classes / "space" / "broken.png").write_text("not an image")
    manifest = manifest_with(
        tmp_path, images=str(classes), size=[128, 128], labels="folders", min_samples=3
    )
    said: list[str] = []
    [ready] = with_representative_sets([manifest], tmp_path / "cache", said.append)
    assert ready.eval is not None and ready.data is not None
    assert ready.eval.file == ready.data.file and ready.eval.labels == "labels"
    assert ready.eval.top_k == 2
    with np.load(ready.eval.file) as data:
        assert sorted(data.files) == ["input", "labels"]
        assert data["labels"].tolist() == [0, 0, 1]  # broken.png named and left out
    assert any("classes ['animals', 'space']" in line for line in said)
    assert any("broken.png" in line for line in said)
    both = manifest.model_copy(update={"eval": ready.eval})
    with pytest.raises(ConfigError, match="keep one"):
        with_representative_sets([both], tmp_path / "cache")
