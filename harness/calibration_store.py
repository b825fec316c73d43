"""A device's noise floors as `harness calibrate` measured them:
`reports/calibration/<device>.json`, written atomically, read back by `harness compare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import StoreError
from harness.stored_files import refuse_newer, write_json_atomic

CALIBRATION_SCHEMA = "harness.calibration/1"


def write_calibration(
    calibration_dir: Path, device: str, floors: dict[int, float], **about: Any
) -> Path:
    """`<calibration_dir>/<device>.json`: the device's noise floors by processes per job
    (`harness calibrate`), with what they were measured on (`about`: model, run, ...)."""
    path = calibration_dir / f"{device}.json"
    write_json_atomic(
        path,
        {
            "schema": CALIBRATION_SCHEMA,
            "device": device,
            "noise_floor": floors[1],
            "noise_floor_by_processes": floors,
            **about,
        },
    )
    return path


def read_calibrations(calibration_dir: Path) -> dict[str, dict[int, float]]:
    """Per device, its noise floors by the number of processes of the jobs compared (files
    from before the floors by processes hold the single-process floor only)."""
    floors: dict[str, dict[int, float]] = {}
    for path in sorted(calibration_dir.glob("*.json")) if calibration_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"{path} is unreadable ({exc}): run `harness calibrate` again"
            ) from None
        refuse_newer(path, data.get("schema"), CALIBRATION_SCHEMA)
        by_processes = data.get("noise_floor_by_processes") or {"1": data["noise_floor"]}
        floors[str(data["device"])] = {int(n): float(f) for n, f in by_processes.items()}
    return floors
