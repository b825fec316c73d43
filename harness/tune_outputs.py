"""What a tune leaves beside its trials, and how a measurement run reads back into a
trial's settings: the device's side of harness/tune.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from harness.stored_files import write_json_atomic
from harness.tune_search import Setting, TuneOutcome

if TYPE_CHECKING:
    from harness.stored_run import Run


def measured_settings(run: Run, variant: str, tolerances: dict[str, float]) -> list[Setting]:
    """The variant's runtime settings in a measurement run, each against fp32 there."""
    from harness.analysis import compare_variants

    compared = compare_variants(run.results, run.samples, run.comparisons, tolerances)
    results = run.results
    settings = []
    for _, row in compared[compared["variant"] == variant].iterrows():
        own = results[
            (results["variant"] == variant)
            & (results["provider"] == row["provider"])
            & (results["threads"] == row["threads"])
        ]
        first = own.iloc[0] if len(own) else None
        settings.append(
            Setting(
                provider=str(row["provider"]), threads=int(row["threads"]),
                speedup=_number(row["speedup"]), speedup_low=_number(row["speedup_low"]),
                speedup_high=_number(row["speedup_high"]),
                verdict=None if row["verdict"] is None else str(row["verdict"]),
                p50_ms=_number(row["p50_ms"]),
                p90_ms=_number(first["p90_ms"]) if first is not None else None,
                model_mem_mb=_number(first["model_mem_mb"]) if first is not None else None,
                energy_mj=_number(first["energy_mj"]) if first is not None else None,
                device_quality=_text(row["quality"]),
                device_quality_why=_text(row["quality_note"]) or "",
            )
        )  # fmt: skip
    return settings


def note_device(run: Run, folder: Path) -> None:
    """What the device's own results say it is (a virtual machine?), kept beside the
    trials (`device.json`) for the answer of a tune that measures nothing new."""
    from harness.runner.result_document import ResultDocument

    for record in run.records:
        if record.status == "ok":
            identity = ResultDocument(record.runner).identity
            write_json_atomic(folder / "device.json", {"virtual": identity.virtual})
            return


def device_virtual(folder: Path) -> str | None:
    path = folder / "device.json"
    return json.loads(path.read_text()).get("virtual") if path.is_file() else None


def _text(value: object) -> str | None:
    """A text cell, None where the frame holds None or NaN (no fidelity pass there)."""
    return value if isinstance(value, str) and value else None


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if number != number else number


def write_outputs(outcome: TuneOutcome) -> dict[str, Path]:
    """The tune's files beside its trials: `trials.csv`, `trials.svg` (the chart),
    `tune.json` (the answer) and `recommended.toml` (the pinned entry) when there is one."""
    import pandas as pd
    import vl_convert as vlc

    from harness.report.tune_chart import trials_chart
    from harness.tune_search import TRIAL_COLUMNS, trial_rows

    rows = trial_rows(outcome.trials, outcome.chosen)
    files = {"trials": outcome.folder / "trials.csv", "chart": outcome.folder / "trials.svg",
             "answer": outcome.folder / "tune.json"}  # fmt: skip
    pd.DataFrame(rows, columns=list(TRIAL_COLUMNS)).to_csv(files["trials"], index=False)
    measures = [r["quality_measure"] for r in rows if r["quality_measure"]]
    measure = measures[0] if measures else ""
    limit = outcome.constraints.limits().get(_tolerance_key(measure))
    files["chart"].write_text(vlc.vegalite_to_svg(trials_chart(rows, limit, measure)))
    answer = {
        "model": outcome.model, "device": outcome.device, "objective": outcome.objective,
        "stopped": outcome.stopped, "trials": len(outcome.trials),
        "chosen": None if outcome.chosen is None else {
            "trial": outcome.chosen[0].number, "recipe": outcome.chosen[0].recipe.__dict__,
            "setting": outcome.chosen[1].__dict__,
        },
        "closest_miss": None if outcome.closest is None else outcome.closest.text(),
        "device_virtual": outcome.device_virtual,
    }  # fmt: skip
    write_json_atomic(files["answer"], answer)
    if outcome.pinned is not None:
        files["recommended"] = outcome.folder / "recommended.toml"
        files["recommended"].write_text(outcome.pinned)
    return files


def _tolerance_key(measure: str) -> str:
    from harness.fidelity import MEASURES

    return next((key for headline, _, key in MEASURES.values() if headline == measure), "")
