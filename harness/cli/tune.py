"""`harness tune`: search the recipe that holds the quality and budgets, measured on the
device (harness/tune.py); print the trials, the front and the answer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import app, command, make_console, plain_log, shown
from harness.errors import Outcome


@command(app)
def tune(
    model: Annotated[
        str | None, typer.Argument(help="Model manifest name (in models/) or path; else [tune]'s.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="The device to tune for.")] = None,
    plan: Annotated[
        Path | None,
        typer.Option(help="A plan whose [tune] table, [measure] and [runtime] to use."),
    ] = None,
    objective: Annotated[
        str | None, typer.Option(help="fastest (default), smallest or energy.")
    ] = None,
    budget: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE",
            help="A constraint: p50_ms, p90_ms, peak_mem_mb, size_mb, or a quality key of "
            "[quality] (min_top1_agreement=0.99, max_accuracy_drop_pts=1, ...).",
        ),
    ] = None,
    max_trials: Annotated[int | None, typer.Option(help="Candidates judged, at most.")] = None,
    time_budget: Annotated[float | None, typer.Option(help="Seconds in all, at most.")] = None,
    device_budget: Annotated[
        float | None, typer.Option(help="Seconds of device time, at most.")
    ] = None,
    models_dir: Annotated[Path, typer.Option(help="Without --plan: model manifests.")] = Path(
        "models"
    ),
    devices_dir: Annotated[Path, typer.Option(help="Without --plan: device files.")] = Path(
        "devices"
    ),
) -> None:
    """Find the fastest (or smallest) variant of MODEL that holds the quality and budgets
    on the device: quality judged on the representative set, speed measured on the device
    beside fp32; resumable; the answer written as a pinned [[variants]] entry."""
    from harness.cli.tune_view import print_outcome
    from harness.config import Plan, TuneSettings, load_plan
    from harness.config.base import _validate
    from harness.tune import tune as run_tune

    console = make_console()
    if plan is not None:
        loaded = load_plan(plan)
    else:
        if model is None or device is None:
            raise _usage("name MODEL and --device, or give --plan with a [tune] table")
        loaded = Plan(
            name="tune", devices=[device], models=[model], devices_dir=devices_dir,
            models_dir=models_dir, output_dir=models_dir.parent / "reports" / "runs",
        )  # fmt: skip
    base = (loaded.tune or TuneSettings()).model_dump()
    given = {
        "model": model, "device": device, "objective": objective, "max_trials": max_trials,
        "time_budget_s": time_budget, "device_budget_s": device_budget,
    }  # fmt: skip
    base.update({k: v for k, v in given.items() if v is not None})
    for key, value in _pairs(budget or []).items():
        if key in ("p50_ms", "p90_ms", "peak_mem_mb", "size_mb"):
            base[key] = value
        else:
            base["quality"] = {**base["quality"], key: value}
    settings = _validate(TuneSettings, base, plan or Path("the command line"))
    outcome = run_tune(loaded, settings, plain_log(console))
    print_outcome(console, outcome)
    console.print(f"tune folder: {shown(outcome.folder)}")
    if outcome.chosen is None:
        closest = outcome.closest.text() if outcome.closest else "no trial got that far"
        raise Outcome(
            f"no recipe meets the constraints on {outcome.device} (search ended: "
            f"{outcome.stopped}); closest miss: {closest}"
        )


def _pairs(items: list[str]) -> dict[str, float]:
    pairs = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            pairs[key.strip()] = float(value)
        except ValueError:
            raise _usage(f"--budget '{item}' is not KEY=NUMBER, e.g. p90_ms=20") from None
    return pairs


def _usage(message: str) -> Exception:
    from harness.errors import UsageError

    return UsageError(message)
