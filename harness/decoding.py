"""One file of a manifest's `[data]` decoded into samples, with its declared preprocessing:
an image through Pillow (resized, laid out, scaled, normalised), a mono 16-bit WAV cut into
frames (resampled by scipy where its rate differs), raw bytes. A path in, arrays out:
harness/representative.py streams them into the set and owns the cache and the refusals."""

from __future__ import annotations

import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from harness.config import RepresentativeData

Decoder = Callable[[Path], Iterator[np.ndarray]]
DECODE_ERRORS = (OSError, ValueError, EOFError, wave.Error)  # a file left out, named


def fitted_shape(model: list[int | None], expected: list[int]) -> list[int] | None:
    """`expected` laid onto the model's per-sample dims (None: any), the model's axes of
    1 added; None when they differ in anything else."""
    placed = [(i, d) for i, d in enumerate(model) if d != 1]
    sized = [e for e in expected if e != 1]
    if len(placed) != len(sized) or any(
        d not in (None, e) for (_, d), e in zip(placed, sized, strict=True)
    ):
        return None
    fitted = [1] * len(model)
    for (i, _), e in zip(placed, sized, strict=True):
        fitted[i] = e
    return fitted


def sample_shape(data: RepresentativeData) -> list[int]:
    """One decoded sample's shape, before it is laid onto the model's input."""
    if data.images:
        assert data.size is not None
        channels = 1 if data.channels == "L" else 3
        height, width = data.size
        return [channels, height, width] if data.layout == "NCHW" else [height, width, channels]
    if data.audio:
        assert data.frame_length is not None
        return [int(data.frame_length)]
    assert data.length is not None
    return [int(data.length)]


def decoder(data: RepresentativeData, sample_shape: list[int]) -> Decoder:
    """A file's samples, each reshaped to `sample_shape` (fitted_shape's)."""
    if data.images:
        decode: Decoder = lambda path: iter([_image(path, data)])  # noqa: E731
    elif data.audio:
        decode = lambda path: _frames(path, data)  # noqa: E731
    else:
        decode = lambda path: iter([_raw(path, data)])  # noqa: E731
    return lambda path: (sample.reshape(sample_shape) for sample in decode(path))


def _image(path: Path, data: RepresentativeData) -> np.ndarray:
    from PIL import Image

    assert data.size is not None
    height, width = data.size
    with Image.open(path) as opened:
        image = opened.convert("L" if data.channels == "L" else "RGB")
        if data.resize == "crop":
            ratio = max(height / image.height, width / image.width)
            image = image.resize(
                (max(width, round(image.width * ratio)), max(height, round(image.height * ratio))),
                Image.Resampling.BILINEAR,
            )
            left, top = (image.width - width) // 2, (image.height - height) // 2
            image = image.crop((left, top, left + width, top + height))
        elif data.resize == "fit":  # the height, the aspect kept up to the width
            fitted = min(width, max(1, round(image.width * height / image.height)))
            image = image.resize((fitted, height), Image.Resampling.BILINEAR)
        else:
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    if data.channels == "BGR":
        pixels = pixels[..., ::-1]
    scaled = _scaled(pixels, data, channel_axis=-1)
    if scaled.shape[1] < width:  # "fit": zeros on the right, after normalisation
        scaled = np.pad(scaled, ((0, 0), (0, width - scaled.shape[1]), (0, 0)))
    return scaled.transpose((2, 0, 1) if data.layout == "NCHW" else (0, 1, 2))


def _scaled(values: np.ndarray, data: RepresentativeData, channel_axis: int) -> np.ndarray:
    low, high = data.scale
    if data.dtype in ("uint8", "int8", "int64", "int32") and (low, high) == (0.0, 1.0):
        return values  # integer inputs take the pixels as they are
    scaled = low + values / 255.0 * (high - low)
    if data.mean is not None:
        scaled = scaled - np.asarray(data.mean, np.float32)
    if data.std is not None:
        scaled = scaled / np.asarray(data.std, np.float32)
    return scaled.astype(np.float32)


def _frames(path: Path, data: RepresentativeData) -> Iterator[np.ndarray]:
    """Frames of a mono 16-bit PCM WAV in [-1, 1], every frame_hop samples. At the
    declared rate the file is read frame by frame; at another, it is read whole and
    resampled (scipy.signal.resample_poly)."""
    assert data.frame_length is not None and data.sample_rate is not None
    length, hop = data.frame_length, data.frame_hop or data.frame_length
    with wave.open(str(path), "rb") as audio:
        rate = audio.getframerate()
        if audio.getnchannels() != 1 or audio.getsampwidth() != 2:
            raise ValueError(
                f"{audio.getnchannels()} channel(s), {8 * audio.getsampwidth()}-bit; "
                "[data] takes mono 16-bit PCM"
            )  # fmt: skip
        if rate != data.sample_rate:
            yield from _resampled_frames(audio, rate, data.sample_rate, length, hop)
            return
        while True:
            chunk = audio.readframes(length)
            if len(chunk) < 2 * length:
                return
            yield np.frombuffer(chunk, dtype="<i2").astype(np.float32) / 32768.0
            if hop > length:
                audio.readframes(hop - length)
            elif hop < length:
                audio.setpos(audio.tell() - (length - hop))


def _resampled_frames(
    audio: wave.Wave_read, rate: int, wanted: int, length: int, hop: int
) -> Iterator[np.ndarray]:
    from math import gcd

    from scipy.signal import resample_poly

    pcm = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2")
    divisor = gcd(rate, wanted)
    signal = resample_poly(pcm.astype(np.float32) / 32768.0, wanted // divisor, rate // divisor)
    for start in range(0, len(signal) - length + 1, hop):
        yield np.clip(signal[start : start + length], -1.0, 1.0).astype(np.float32)


def _raw(path: Path, data: RepresentativeData) -> np.ndarray:
    assert data.length is not None
    with open(path, "rb") as file:
        content = file.read(data.length)
    if not content:
        raise ValueError("empty file")
    return np.frombuffer(content.ljust(data.length, b"\0"), dtype=np.uint8).astype(np.float32)
