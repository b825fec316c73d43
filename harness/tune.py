"""`harness tune MODEL --device NAME`: the fastest (or smallest, or most frugal) variant
that holds the user's quality and budgets, measured on the target device.

The search, in order (its decisions are harness/tune_search.py's and tune_revert.py's):
1. whole-model recipes of the chosen strategies, each built by the existing strategies
   and judged on the controller (quality on the representative set, harness/tune_quality.py);
2. where int8-static breaks the quality budget: each weighted layer's sensitivity (the
   noise it adds at the outputs, quantized alone) and its share of fp32's time in a
   profile on the device (its nodes matched back to the layers); then layers go back to
   float (ONNX: onnxruntime's node lists; TFLite: ai-edge-quantizer's per-op rules), the
   costliest in quality per unit of time first, 1, 2, 4, ... until the budget holds, then
   bisected;
3. a local search around the best int8-static recipe that holds: the other calibration
   methods and granularity;
4. every candidate that holds on the controller measured on the device beside fp32
   (paired, per runtime setting: threads and providers of the plan), stopping early when
   it is surely slower than the best so far, its quality judged again by the device's own
   fidelity pass.
Each trial is written the moment it is judged or measured (`<reports>/tune/<model>-<device>/
trials/`); a tune run again resumes from them. Builds go to the plan's variant cache, keyed
as any variant's, so the measurement and the pinned recipe reuse them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace

from harness.compress import (
    TFLITE_STRATEGIES,
    BuildContext,
    CompressionFailed,
    NoEffect,
    build_variant,
)
from harness.config import Measure, ModelManifest, Plan, TuneSettings, Variant, resolve_model
from harness.errors import ConfigError
from harness.fidelity import as_records
from harness.representative import with_representative_sets
from harness.scheduler import prepare_plan, run_prepared, variant_cache_dir
from harness.stored_files import write_json_atomic
from harness.stored_run import Run
from harness.tune_outputs import device_virtual, measured_settings, note_device
from harness.tune_quality import QualityJudge, graph_nodes, layer_noise, prepared_base
from harness.tune_revert import (
    attribute_shares,
    between,
    layer_of,
    revert_counts,
    revert_order,
    whole_model_recipes,
)
from harness.tune_search import (
    Constraints,
    Recipe,
    Trial,
    TuneOutcome,
    choose,
    closest_miss,
    passes_controller,
    pinned_variant,
)

Log = Callable[[str], None]


class Tuner:
    def __init__(self, plan: Plan, settings: TuneSettings, log: Log = lambda _: None) -> None:
        where = plan.plan_path or "plan"
        self.model_ref = settings.model or _only(plan.models, "model", where)
        self.device = settings.device or _only(plan.devices, "device", where)
        self.plan, self.settings, self.log = plan, settings, log
        self.cache = variant_cache_dir(plan.models_dir)
        [manifest] = with_representative_sets(
            [resolve_model(plan, self.model_ref)], self.cache, log
        )
        self.manifest: ModelManifest = manifest
        tolerances = {**plan.quality, **settings.quality}
        self.constraints = Constraints(
            tolerances, settings.p50_ms, settings.p90_ms, settings.peak_mem_mb, settings.size_mb
        )
        self.folder = plan.output_dir.parent / "tune" / f"{manifest.name}-{self.device}"
        (self.folder / "trials").mkdir(parents=True, exist_ok=True)
        self.trials = self._stored_trials()
        self.started = time.monotonic()
        self.device_s = 0.0
        self.stopped = "searched"
        self.judge = QualityJudge(manifest, tolerances)

    # -- limits ------------------------------------------------------------------------

    def _out_of(self) -> str | None:
        if len(self.trials) >= self.settings.max_trials:
            return "max_trials"
        if time.monotonic() - self.started >= self.settings.time_budget_s:
            return "time_budget"
        if self.device_s >= self.settings.device_budget_s:
            return "device_budget"
        return None

    # -- trials --------------------------------------------------------------------------

    def _stored_trials(self) -> dict[str, Trial]:
        trials = {}
        for path in sorted((self.folder / "trials").glob("*.json")):
            try:
                trial = Trial.from_json(json.loads(path.read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                self.log(f"warning: {path} is not a trial record ({exc}): judged again")
                continue
            trials[trial.recipe.key] = trial
        if trials:
            measured = sum(t.measured for t in trials.values())
            self.log(
                f"resuming: {len(trials)} trial(s) from {self.folder / 'trials'} "
                f"({measured} measured on {self.device}) are not run again"
            )
        return trials

    def _save(self, trial: Trial) -> Trial:
        self.trials[trial.recipe.key] = trial
        path = self.folder / "trials" / f"{trial.recipe.key}.json"
        write_json_atomic(path, trial.to_json())
        return trial

    def _context(self) -> BuildContext:
        return BuildContext(self.manifest, dict(self.plan.inputs.dims), self.plan.inputs.seed)

    def trial(self, recipe: Recipe) -> Trial | None:
        """The recipe built and judged on the controller (stored), or its stored trial;
        None when the limits leave no room for another."""
        if recipe.key in self.trials:
            return self.trials[recipe.key]
        stop = self._out_of()
        if stop:
            self.stopped = stop
            return None
        started = time.monotonic()
        variant = _as_variant(recipe, recipe.variant_name)
        number = len(self.trials) + 1
        try:
            built = build_variant(self.manifest, variant, self.cache, self._context())
        except (CompressionFailed, NoEffect) as exc:
            self.log(f"trial {number}: {recipe.describe()}: not built: {exc}")
            return self._save(Trial(number, recipe, None, error=str(exc)))
        judged = self.judge.judge(built.path)
        trial = Trial(
            number, recipe, judged.verdict, judged.why,
            tuple(as_records(judged.outputs)), judged.accuracy_drop_pts,
            built.path.stat().st_size, elapsed_s=time.monotonic() - started,
        )  # fmt: skip
        self.log(f"trial {number}: {recipe.describe()}: quality {judged.verdict} ({judged.why})")
        return self._save(trial)

    # -- the search ----------------------------------------------------------------------

    def whole_model_recipes(self) -> list[Recipe]:
        tflite = TFLITE_STRATEGIES if self.manifest.format == "tflite" else None
        recipes, left_out = whole_model_recipes(self.settings, tflite)
        for strategy in left_out:
            self.log(f"{strategy}: not a strategy for a TFLite model: left out")
        return recipes

    def search(self) -> None:
        first = [self.trial(r) for r in self.whole_model_recipes()]
        static = next((t for t in first if t and t.recipe.strategy == "int8-static"), None)
        best_static = static if static and passes_controller(static, self.constraints) else None
        if (
            static is not None
            and static.error is None
            and best_static is None
            and self.settings.mixed_precision
        ):
            best_static = self.mixed_precision(static.recipe)
        if best_static is not None:
            self.local_search(best_static.recipe)

    def mixed_precision(self, plain: Recipe) -> Trial | None:
        """Layers back to float, costliest first, until the quality budget holds."""
        order = self.revert_order(plain)
        if not order:
            return None
        counts = revert_counts(len(order), self.settings.max_float_share)
        failed, held = 0, None
        for count in counts:
            trial = self._reverted(plain, order, count)
            if trial is None:
                return None
            if passes_controller(trial, self.constraints):
                held = (count, trial)
                break
            failed = count
        if held is None:
            self.log(
                f"mixed precision: with {counts[-1]} of {len(order)} layers in float the quality "
                f"budget still fails (max_float_share = {self.settings.max_float_share:g})"
            )
            return None
        count, best = held
        while (middle := between(failed, count)) is not None:
            trial = self._reverted(plain, order, middle)
            if trial is None:
                break
            if passes_controller(trial, self.constraints):
                count, best = middle, trial
            else:
                failed = middle
        return best

    def _reverted(self, plain: Recipe, order: list[str], count: int) -> Trial | None:
        params = dict(plain.params, nodes_to_exclude=sorted(order[:count]))
        origin = f"mixed precision: {count} of {len(order)} layers in float"
        return self.trial(Recipe(plain.strategy, params, origin))

    def revert_order(self, plain: Recipe) -> list[str]:
        """The weighted layers by quality lost per time gained (harness/tune_search.py)."""
        deadline = self.started + self.settings.time_budget_s
        self.log("sensitivity: every weighted layer quantized alone")
        noise, complete = layer_noise(self.judge, plain, self._context(), self.folder, deadline)
        if not complete:
            self.stopped = "time_budget"
        profile = self.device_profile()
        owner = layer_of(graph_nodes(prepared_base(self.manifest, self.folder)))
        shares, matched = attribute_shares(profile, owner)
        if not shares:
            self.log("layer time shares: none from the device's profile: equal shares")
        else:
            self.log(
                f"layer time shares: {len(shares)} of {len(noise)} weighted layers found in "
                f"the profile on {self.device}, {matched:.0%} of fp32's time"
            )
        return revert_order(noise, shares)

    def device_profile(self) -> dict[str, float]:
        """Each node's share of fp32's time in one profile on the device, named as the
        runtime's optimized graph names it ({} when the device gave none); stored
        (`profile.json`)."""
        path = self.folder / "profile.json"
        if path.is_file():
            return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
        from harness.profiles import profile_rows

        measure = self.plan.measure.model_copy(
            update={"profile": True, "profile_top_n": 10_000, "fidelity_samples": 0}
        )
        run = self._run(["fp32"], measure, {})
        shares = {
            str(row["node"]): float(row["share"] or 0.0)
            for record in run.profiled if record.status == "ok"
            for row in profile_rows(record)
        }  # fmt: skip
        write_json_atomic(path, shares)
        return shares

    def local_search(self, best: Recipe) -> None:
        p = best.params
        if "calibrate_method" not in p:
            return  # a TFLite recipe: ai-edge-quantizer's int8 has no such knobs
        for method in self.settings.calibrate_methods:
            if method != p["calibrate_method"]:
                self.trial(
                    Recipe(
                        best.strategy, dict(p, calibrate_method=method), f"local search: {method}"
                    )
                )
        for per_channel in self.settings.per_channel:
            if per_channel != p["per_channel"]:
                words = "per-channel" if per_channel else "per-tensor"
                self.trial(
                    Recipe(
                        best.strategy, dict(p, per_channel=per_channel), f"local search: {words}"
                    )
                )

    # -- the device ----------------------------------------------------------------------

    def measure_all(self) -> None:
        """Every trial that holds on the controller, measured on the device (most
        promising first: fewest layers in float), with early stop behind the best."""
        waiting = [
            t for t in self.trials.values()
            if passes_controller(t, self.constraints) and not t.measured
        ]  # fmt: skip
        waiting.sort(
            key=lambda t: (
                t.recipe.strategy != "int8-static",
                len(t.recipe.params.get("nodes_to_exclude", [])),
                t.number,
            )
        )
        for trial in waiting:
            if self.device_s >= self.settings.device_budget_s:
                self.stopped = "device_budget"
                return
            self.measure(trial)

    def measure(self, trial: Trial) -> Trial:
        best = choose(list(self.trials.values()), self.constraints, "fastest")
        stop_above = 1 / best[1].speedup_low if best and best[1].speedup_low else None
        # the plan's fidelity pass stays: the quality is judged again on the device's kernels
        measure = self.plan.measure.model_copy(
            update={"paired": True, "profile": False, "paired_stop_above_ratio": stop_above}
        )
        variant = _as_variant(trial.recipe, trial.recipe.variant_name)
        run = self._run(["fp32", variant.name], measure, {self.manifest.name: [variant]})
        settings = measured_settings(run, variant.name, self.constraints.tolerances)
        if not settings:
            failed = [r for r in run.records if r.variant == variant.name and r.status != "ok"]
            reason = failed[0].error if failed else "no result"
            return self._save(
                replace(trial, error=f"on {self.device}: {reason}", device_run=run.run_id)
            )
        words = ", ".join(
            f"{s.name()} {s.speedup or 0:.2f}x, quality there {s.device_quality or '-'}"
            for s in settings
        )
        self.log(f"trial {trial.number}: measured on {self.device}: {words}")
        return self._save(
            replace(trial, settings=tuple(settings), device_run=run.run_id, measured=True)
        )

    def _run(self, variants: list[str], measure: Measure, extra: dict[str, list[Variant]]) -> Run:
        plan = self.plan.model_copy(
            update={
                "name": f"tune-{self.manifest.name}",
                "devices": [self.device],
                "models": [self.model_ref],
                "variants": variants,
                "measure": measure,
                "output_dir": self.folder / "runs",
            }
        )
        started = time.monotonic()
        try:
            prepared = prepare_plan(plan, log=self.log, variants_for=extra)
            run_prepared(prepared)
        finally:
            self.device_s += time.monotonic() - started
        run = prepared.store.load()
        note_device(run, self.folder)
        return run

    # -- the answer ----------------------------------------------------------------------

    def outcome(self) -> TuneOutcome:
        trials = sorted(self.trials.values(), key=lambda t: t.number)
        chosen = choose(trials, self.constraints, self.settings.objective)
        pinned = None
        if chosen is not None:
            trial, setting = chosen
            comment = (
                f"harness tune {self.manifest.name} --device {self.device} "
                f"(objective {self.settings.objective}): trial {trial.number}, "
                f"{trial.recipe.describe()}\n{setting.name()}: {setting.speedup_words()}; "
                f"quality {trial.quality_why[:200]}"
            )
            pinned = pinned_variant("tuned", trial.recipe, comment)
        return TuneOutcome(
            self.manifest.name, self.device, self.folder, self.settings.objective,
            self.constraints, trials, chosen,
            None if chosen else closest_miss(trials, self.constraints, self.settings.objective),
            self.stopped, pinned, device_virtual(self.folder),
        )  # fmt: skip


def tune(plan: Plan, settings: TuneSettings, log: Log = lambda _: None) -> TuneOutcome:
    tuner = Tuner(plan, settings, log)
    tuner.search()
    tuner.measure_all()
    return tuner.outcome()


def _only(names: list[str], what: str, where: object) -> str:
    if len(names) != 1:
        raise ConfigError(
            str(where),
            f"the plan has {len(names)} {what}s ({', '.join(names)}): name the one to tune "
            f"(harness tune MODEL --device NAME, or [tune] {what} = ...)",
            f"{what}s",
        )
    return names[0]


def _as_variant(recipe: Recipe, name: str) -> Variant:
    return Variant.model_validate(
        {"name": name, "strategy": recipe.strategy, "params": recipe.params}
    )
