"""The search of `harness tune` as data: recipes, trials, what each trial misses, the
choice and the pinned recipe (the order in which layers go back to float is
harness/tune_revert.py's). Pure: harness/tune.py builds, judges and measures; this module
only decides.

A recipe is a variant the existing strategies build (a strategy and its parameters); a
trial is a recipe judged on the controller (quality on the representative set, size) and,
when it holds the quality budget, measured on the device beside fp32 (paired, per runtime
setting). Every trial is a stored record (`TRIAL_SCHEMA`), so a tune resumes where it
stopped and never measures a finished trial again.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.fidelity import MEASURES, QUALITY_DEFAULTS, OutputQuality

TRIAL_SCHEMA = "harness.tune-trial/1"
Objective = Literal["fastest", "smallest", "energy"]


@dataclass(frozen=True)
class Recipe:
    """One candidate: a strategy, its parameters (JSON-ready) and where it came from."""

    strategy: str
    params: dict[str, Any]
    origin: str  # "whole model", "mixed precision: 3 of 54 layers in float", ...

    @property
    def key(self) -> str:
        payload = json.dumps({"strategy": self.strategy, "params": self.params}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    @property
    def variant_name(self) -> str:
        return f"tune-{self.key}"

    def describe(self) -> str:
        """`int8-static MinMax per-channel, 3 layers in float`."""
        p = self.params
        words = [self.strategy]
        if "calibrate_method" in p:  # an ONNX int8-static (ai-edge-quantizer's has no knobs)
            words.append(str(p["calibrate_method"]))
        if "per_channel" in p:
            words.append("per-channel" if p["per_channel"] else "per-tensor")
        for key in ("ratio", "energy", "sparsity"):
            if key in p:
                words.append(f"{key} {p[key]:g}")
        text = " ".join(words)
        kept = p.get("nodes_to_exclude") or p.get("node_block_list")
        return f"{text}, {len(kept)} layer(s) in float" if kept else text


@dataclass(frozen=True)
class Setting:
    """One runtime setting of a trial measured on the device, against fp32 there."""

    provider: str
    threads: int
    speedup: float | None
    speedup_low: float | None
    speedup_high: float | None
    verdict: str | None  # the paired decision: faster, slower, equivalent, inconclusive
    p50_ms: float | None
    p90_ms: float | None
    model_mem_mb: float | None
    energy_mj: float | None
    # the quality verdict of the device's own fidelity pass (its kernels, not the
    # controller's), and why; None where the plan asked for no pass
    device_quality: str | None = None
    device_quality_why: str = ""

    def name(self) -> str:
        return f"{self.provider.removesuffix('ExecutionProvider')} t{self.threads}"

    def speedup_words(self) -> str:
        """`1.42x fp32 [1.38-1.46]`; no interval where the comparison gave none."""
        if self.speedup is None:
            return "speedup unknown"
        low, high = self.speedup_low, self.speedup_high
        interval = f" [{low:.2f}-{high:.2f}]" if low is not None and high is not None else ""
        return f"{self.speedup:.2f}x fp32{interval}"


@dataclass(frozen=True)
class Trial:
    number: int
    recipe: Recipe
    quality: str | None  # ok | loss | unverified; None: not judged (the build failed)
    quality_why: str = ""
    outputs: tuple[dict[str, Any], ...] = ()  # fidelity.as_records of each output
    accuracy_drop_pts: float | None = None
    size_bytes: int | None = None
    error: str | None = None  # the build's or the measurement's
    settings: tuple[Setting, ...] = ()
    device_run: str | None = None  # the run that measured it
    measured: bool = False
    elapsed_s: float = 0.0  # controller time: build and judge

    def to_json(self) -> dict[str, Any]:
        return {"schema": TRIAL_SCHEMA, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        if data.get("schema") != TRIAL_SCHEMA:
            raise ValueError(f"not a {TRIAL_SCHEMA} record: {data.get('schema')!r}")
        fields = {k: v for k, v in data.items() if k != "schema"}
        fields["recipe"] = Recipe(**fields["recipe"])
        fields["outputs"] = tuple(fields.get("outputs") or ())
        fields["settings"] = tuple(Setting(**s) for s in fields.get("settings") or ())
        return cls(**fields)

    def headline(self) -> tuple[str, float | None]:
        """The worst output's headline measure (the chart's quality axis)."""
        outputs = [o for o in self.output_qualities() if o.value is not None]
        if not outputs:
            return "", None
        worst = min(outputs, key=lambda o: _margin(o, QUALITY_DEFAULTS))
        return worst.measure, worst.value

    def output_qualities(self) -> list[OutputQuality]:
        known = set(OutputQuality.__dataclass_fields__)
        return [OutputQuality(**{k: v for k, v in o.items() if k in known}) for o in self.outputs]


@dataclass(frozen=True)
class Constraints:
    tolerances: dict[str, float] = field(default_factory=dict)  # over QUALITY_DEFAULTS
    p50_ms: float | None = None
    p90_ms: float | None = None
    peak_mem_mb: float | None = None
    size_mb: float | None = None

    def limits(self) -> dict[str, float]:
        return {**QUALITY_DEFAULTS, **self.tolerances}


@dataclass(frozen=True)
class Miss:
    """A constraint a trial fails: its figure, the limit and the shortfall as a share of
    the limit (what makes one miss closer than another across units)."""

    constraint: str
    value: float
    limit: float
    where: str  # the output, or the setting

    @property
    def relative(self) -> float:
        return abs(self.value - self.limit) / max(abs(self.limit), 1e-12)

    def text(self) -> str:
        return (
            f"{self.constraint}: {self.value:.4g} against {self.limit:g} "
            f"({self.relative:.1%} short; {self.where})"
        )


def _margin(output: OutputQuality, limits: dict[str, float]) -> float:
    _, direction, key = MEASURES.get(output.kind, MEASURES["tensor"])
    assert output.value is not None
    limit = limits[key]
    return (output.value - limit if direction == "min" else limit - output.value) / max(
        abs(limit), 1e-12
    )


def quality_misses(trial: Trial, constraints: Constraints) -> list[Miss]:
    limits = constraints.limits()
    misses = []
    drop = trial.accuracy_drop_pts
    if drop is not None and round(drop, 9) > limits["max_accuracy_drop_pts"]:
        misses.append(
            Miss("max_accuracy_drop_pts", drop, limits["max_accuracy_drop_pts"], "labels")
        )
    for output in trial.output_qualities():
        key = MEASURES.get(output.kind, MEASURES["tensor"])[2]
        if output.problem:
            misses.append(Miss(key, 0.0, limits[key], f"{output.name}: {output.problem}"))
        elif output.value is not None and _margin(output, limits) < 0:
            if drop is not None and output.kind == "class_scores":
                continue  # labels decide for class scores (fidelity.quality_verdict)
            misses.append(Miss(key, output.value, limits[key], output.name))
    return misses


def size_miss(trial: Trial, constraints: Constraints) -> Miss | None:
    if constraints.size_mb is None or trial.size_bytes is None:
        return None
    size_mb = trial.size_bytes / 1e6
    if size_mb <= constraints.size_mb:
        return None
    return Miss("size_mb", size_mb, constraints.size_mb, "the file")


def setting_misses(setting: Setting, constraints: Constraints) -> list[Miss]:
    misses = []
    for name, value, limit in (
        ("p50_ms", setting.p50_ms, constraints.p50_ms),
        ("p90_ms", setting.p90_ms, constraints.p90_ms),
        ("peak_mem_mb", setting.model_mem_mb, constraints.peak_mem_mb),
    ):
        if limit is not None and value is not None and value > limit:
            misses.append(Miss(name, value, limit, setting.name()))
    return misses


def passes_controller(trial: Trial, constraints: Constraints) -> bool:
    """Worth device time: built, quality verified ok, within the size budget."""
    return (
        trial.error is None
        and trial.quality == "ok"
        and not quality_misses(trial, constraints)
        and size_miss(trial, constraints) is None
    )


def eligible(trial: Trial, constraints: Constraints, objective: Objective) -> list[Setting]:
    """The settings in which a trial meets every constraint, its quality holding on the
    device's own kernels too (and, for `fastest`, surely faster than fp32: a recipe
    slower than the model it replaces is no answer)."""
    if not passes_controller(trial, constraints) or not trial.measured:
        return []
    return [
        s
        for s in trial.settings
        if not setting_misses(s, constraints)
        and s.device_quality != "loss"
        and (objective != "fastest" or (s.speedup_low is not None and s.speedup_low > 1))
        and (objective != "energy" or s.energy_mj is not None)
    ]


def choose(
    trials: list[Trial], constraints: Constraints, objective: Objective
) -> tuple[Trial, Setting] | None:
    """The best trial and setting for the objective among those meeting everything."""
    options = [(t, s) for t in trials for s in eligible(t, constraints, objective)]
    if not options:
        return None

    def score(option: tuple[Trial, Setting]) -> tuple[float, float]:
        trial, setting = option
        speed = -(setting.speedup or 0.0)
        if objective == "smallest":
            return float(trial.size_bytes or math.inf), speed
        if objective == "energy":
            return float(setting.energy_mj or math.inf), speed
        return speed, -(setting.speedup_low or 0.0)

    return min(options, key=score)


def trial_misses(trial: Trial, constraints: Constraints, objective: Objective) -> list[Miss]:
    """Every constraint the trial fails, as far as it got (a trial never measured on the
    device has no device misses yet); its best setting's for the device's."""
    misses = quality_misses(trial, constraints)
    size = size_miss(trial, constraints)
    if size is not None:
        misses.append(size)
    per_setting = []
    for setting in trial.settings:
        own = setting_misses(setting, constraints)
        low = setting.speedup_low
        if objective == "fastest" and low is not None and low <= 1:
            own.append(
                Miss("faster than fp32", low, 1.0, f"{setting.name()}, low end of the speedup")
            )
        per_setting.append(own)
    if per_setting:
        misses += min(per_setting, key=lambda own: max((m.relative for m in own), default=0.0))
    return misses


def closest_miss(
    trials: list[Trial], constraints: Constraints, objective: Objective = "fastest"
) -> Miss | None:
    """What to relax first: of the trials that got furthest (measured on the device before
    judged only), the one whose worst miss is smallest -- and that miss."""
    worst = []
    for trial in trials:
        misses = trial_misses(trial, constraints, objective) if trial.error is None else []
        if misses:
            miss = max(misses, key=lambda m: m.relative)
            worst.append(((not trial.measured, miss.relative), miss))
    return min(worst, key=lambda pair: pair[0])[1] if worst else None


def pareto_front(trials: list[Trial]) -> list[Trial]:
    """Measured trials verified ok that no other beats on both speedup and quality."""
    points = []
    for trial in trials:
        _, quality = trial.headline()
        speed = max((s.speedup or 0.0 for s in trial.settings), default=None)
        if trial.quality == "ok" and trial.measured and speed is not None and quality is not None:
            points.append((trial, speed, quality))
    return [
        t for t, speed, quality in points
        if not any(s >= speed and q >= quality and (s, q) != (speed, quality)
                   for _, s, q in points)
    ]  # fmt: skip


def pinned_variant(name: str, recipe: Recipe, comment: str) -> str:
    """The recipe as a manifest's `[[variants]]` entry, every parameter written out, so the
    next run builds exactly this (the variant cache key is the same)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += ["[[variants]]", f"name = {_toml(name)}", f"strategy = {_toml(recipe.strategy)}"]
    lines += ["", "[variants.params]"]
    for key, value in sorted(recipe.params.items()):
        if isinstance(value, list) and value:
            lines.append(f"{key} = [")
            lines += [f"  {_toml(item)}," for item in value]
            lines.append("]")
        else:
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string takes JSON's escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


TRIAL_COLUMNS = (
    "trial", "recipe", "origin", "quality", "quality_measure", "quality_value", "size_mb",
    "setting", "speedup", "speedup_low", "speedup_high", "p50_ms", "p90_ms", "model_mem_mb",
    "energy_mj", "device_quality", "measured", "error", "chosen",
)  # fmt: skip


def trial_rows(trials: list[Trial], chosen: tuple[Trial, Setting] | None) -> list[dict[str, Any]]:
    """One row per trial (its best setting on the device): the table, the CSV, the chart."""
    rows = []
    for trial in trials:
        measure, value = trial.headline()
        best = max(trial.settings, key=lambda s: s.speedup or 0.0, default=None)
        if chosen is not None and chosen[0] is trial:
            best = chosen[1]
        rows.append(
            {
                "trial": trial.number, "recipe": trial.recipe.describe(),
                "origin": trial.recipe.origin, "quality": trial.quality,
                "quality_measure": measure, "quality_value": value,
                "size_mb": None if trial.size_bytes is None else trial.size_bytes / 1e6,
                "setting": best.name() if best else None,
                "speedup": best.speedup if best else None,
                "speedup_low": best.speedup_low if best else None,
                "speedup_high": best.speedup_high if best else None,
                "p50_ms": best.p50_ms if best else None, "p90_ms": best.p90_ms if best else None,
                "model_mem_mb": best.model_mem_mb if best else None,
                "energy_mj": best.energy_mj if best else None,
                "device_quality": best.device_quality if best else None,
                "measured": trial.measured, "error": trial.error,
                "chosen": chosen is not None and chosen[0] is trial,
            }
        )  # fmt: skip
    return rows


@dataclass(frozen=True)
class TuneOutcome:
    model: str
    device: str
    folder: Path
    objective: str
    constraints: Constraints
    trials: list[Trial]
    chosen: tuple[Trial, Setting] | None
    closest: Miss | None
    stopped: str  # why the search ended: "searched", "max_trials", "time_budget", ...
    pinned: str | None  # the chosen recipe as a [[variants]] entry
    # what says the device is a virtual machine (its timings are not the hardware's)
    device_virtual: str | None = None
