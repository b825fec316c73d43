"""How a tune's outcome prints: the trials, the front, the answer and its pinned entry."""

from __future__ import annotations

from typing import Any

from harness.cli.common import shown, styled
from harness.cli.fit import Column, print_fitted
from harness.tune_outputs import write_outputs
from harness.tune_search import TuneOutcome, pareto_front, trial_rows


def print_outcome(console: Any, outcome: TuneOutcome) -> None:
    files = write_outputs(outcome)
    rows = trial_rows(outcome.trials, outcome.chosen)
    columns = [Column("#", numeric=True), Column("recipe", prose=True), Column("quality"),
               Column("figure", numeric=True), Column("MB", numeric=True),
               Column("speedup [95% CI]", numeric=True), Column("p90 ms", numeric=True),
               Column("note", prose=True)]  # fmt: skip
    table = [
        [
            str(r["trial"]) + (" *" if r["chosen"] else ""), r["recipe"], r["quality"] or "-",
            _number(r["quality_value"]), _number(r["size_mb"], 2),
            _speedup(r), _number(r["p90_ms"], 2),
            _note(r),
        ]
        for r in rows
    ]  # fmt: skip
    print_fitted(console, columns, table, title=f"tune {outcome.model} on {outcome.device}: "
                 f"{len(rows)} trial(s), objective {outcome.objective}")  # fmt: skip
    front = pareto_front(outcome.trials)
    if front:
        console.print(
            "front (speedup against quality): "
            + ", ".join(f"#{t.number} {t.recipe.describe()}" for t in front)
        )
    console.print(f"chart: {shown(files['chart'])}; trials: {shown(files['trials'])}")
    if outcome.device_virtual:
        console.print(
            styled(("note: ", "yellow"), f"{outcome.device} is a {outcome.device_virtual}: its "
                   "timings are the hypervisor's or the emulator's, not the hardware's: "
                   "measure the recipe's speed on the hardware before shipping it")
        )  # fmt: skip
    if outcome.chosen is None:
        return
    trial, setting = outcome.chosen
    console.print(
        styled(
            ("recommended: ", "bold"),
            f"trial {trial.number}, {trial.recipe.describe()} ({trial.recipe.origin}), "
            f"{setting.name()}: {setting.speedup_words()}, "
            f"quality {trial.quality}: {trial.quality_why}",
        )
    )
    console.print(f"pinned entry for the manifest ({shown(files['recommended'])}):")
    console.print(outcome.pinned or "", markup=False, highlight=False)


def _note(row: dict[str, Any]) -> str:
    if not row["setting"]:
        return row["error"] or "not measured"
    device = row["device_quality"]
    return row["setting"] + (f", quality there {device}" if device else "")


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if digits == 3 else f"{value:.{digits}f}"


def _speedup(row: dict[str, Any]) -> str:
    if row["speedup"] is None:
        return "-"
    low, high = row["speedup_low"], row["speedup_high"]
    interval = f" [{low:.2f}-{high:.2f}]" if low is not None and high is not None else ""
    return f"{row['speedup']:.2f}x{interval}"
