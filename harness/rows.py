"""The `results.parquet` row of a job record: DESIGN.md's columns and those added since, each
with its type, derived from the record and the runner's document. Pure.

Result table columns (`RESULT_COLUMNS`):
  1 -- DESIGN.md's list plus `stop_reason`, `warnings`, `ci_method`, `schema_version`.
  2 -- adds variant_params, gzip_bytes, sparsity, calibration, eval_n, top5_accuracy,
       max_abs_dev, mean_abs_dev, processes, process_p50_spread.
  3 -- adds the device's identity, the comparability keys: cpu_model, ram_mb, os, kernel,
       board (device tree model, else Jetson's L4T release).
  4 -- adds peak_pss_mb, peak_swap_mb (sampled beside the runner), power_mode (a Jetson's
       nvpmodel) and governor.
  5 -- adds cores (the CPUs the job was pinned to, a comparability key); every column
       written with its own Arrow type (`RESULT_COLUMN_TYPES`), so
       a column that is all null in a run is still a string or a number, and any runs of
       one version read as one table (pyarrow.dataset, DuckDB). The `status` column may
       also say `interrupted`.
  6 -- adds variant_effect (what verifying the built variant counted: "108 quantize/integer
       op(s) added, ..."); psnr_db, cosine_similarity, max_abs_err (every output of a few
       fixed inputs against fp32's on the same device; the worst output) and
       fidelity_source (eval set, input file, seeded random inputs); the `status` column may
       also say `no-effect`.
  7 -- adds top5_agreement (how often fp32's top-1 class is in the variant's top 5); both
       agreements also come, without labels, from the fidelity pass's classification
       outputs (a manifest with task = "classification").
  8 -- adds cpu_fallback_share (from the job's profile, `profile = true`: the share of
       the profiled time on the CPU when the job asked for another provider).
  9 -- adds fidelity_n (the samples both fidelity passes hold), snr_db (the worst output's
       signal-to-noise against fp32's) and fidelity_outputs (JSON: per output its kind,
       what the kind was inferred from, the kind's measure with its interval, the worst
       sample, a stuck-output problem; harness/fidelity.py). psnr_db now takes the peak
       from fp32's range over the whole set and is null for a constant fp32 output;
       top1/top5 agreement come from the outputs judged as class scores; fidelity_source
       may also say "representative set".
  10 -- adds start_ms (the runner's start before the model's load, its first process)
       and runner_process ("forked" by a persistent runner, or "exec": a runner process
       per job; null for a native tool): memory figures compare within one of them.
Columns are added, never repurposed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import cast

from harness.accuracy import output_deviation, top_k_agreement
from harness.errors import ParseError
from harness.fidelity import OutputQuality, as_records, compare_outputs
from harness.frames import Row
from harness.job_key import JobKey
from harness.output_measures import OutputDeclaration
from harness.probes.power import energy_summary, power_trace, reading_notes
from harness.probes.thermal import nvpmodel_mode
from harness.profiles import placement
from harness.records import JobRecord
from harness.runner.result_document import ResultDocument
from harness.runner.result_views import Fidelity, PowerReadings, Prepared, ReportedStats
from harness.stats import percents_apart, stability_warnings, summarize

RESULTS_SCHEMA_VERSION = 10


RESULT_COLUMNS = (
    "run_id", "job_id", "started_at", "device", "device_class", "arch", "transport",
    "runtime", "runtime_version", "provider", "threads", "model", "variant", "strategy",
    "model_bytes", "model_sha256", "status", "error", "n", "load_ms", "first_ms", "mean_ms",
    "std_ms", "min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "cv",
    "p50_ci_low_ms", "p50_ci_high_ms", "rss_before_mb", "peak_rss_mb", "model_mem_mb",
    "idle_power_w", "avg_power_w", "energy_mj", "temp_start_c", "temp_end_c", "throttled",
    "accuracy", "top1_agreement", "stop_reason", "ci_method", "warnings", "schema_version",
    "variant_params", "gzip_bytes", "sparsity", "calibration", "eval_n", "top5_accuracy",
    "max_abs_dev", "mean_abs_dev", "processes", "process_p50_spread",
    "cpu_model", "ram_mb", "os", "kernel", "board",
    "peak_pss_mb", "peak_swap_mb", "power_mode", "governor", "cores", "variant_effect",
    "psnr_db", "cosine_similarity", "max_abs_err", "fidelity_source", "top5_agreement",
    "cpu_fallback_share", "fidelity_n", "snr_db", "fidelity_outputs", "start_ms",
    "runner_process",
)  # fmt: skip


_INTEGER_COLUMNS = ("n", "threads", "model_bytes", "schema_version", "gzip_bytes", "eval_n",
                    "processes", "fidelity_n")  # fmt: skip


_FLOAT_COLUMNS = ("cv", "accuracy", "top1_agreement", "sparsity", "top5_accuracy", "max_abs_dev",
                  "mean_abs_dev", "process_p50_spread", "psnr_db", "cosine_similarity",
                  "max_abs_err", "top5_agreement", "cpu_fallback_share", "snr_db")  # fmt: skip


# each result column's type: "int64", "float64", "bool" or "string" (the parquet schema)
RESULT_COLUMN_TYPES = {
    name: "int64"
    if name in _INTEGER_COLUMNS
    else "bool"
    if name == "throttled"
    else "float64"
    if name in _FLOAT_COLUMNS or name.endswith(("_ms", "_mb", "_w", "_mj", "_c"))
    else "string"
    for name in RESULT_COLUMNS
}


def result_row(record: JobRecord) -> Row:
    """One row of results.parquet; unmeasured columns are None (null), never 0."""
    doc = ResultDocument(record.runner)
    identity = doc.identity
    row: Row = dict.fromkeys(RESULT_COLUMNS)
    row.update(
        run_id=record.run_id,
        job_id=record.job_id,
        started_at=record.started_at,
        device=record.device,
        device_class=record.device_class,
        arch=doc.arch,
        transport=record.transport,
        runtime=record.runtime,
        runtime_version=doc.runtime_version,
        provider=record.provider,
        threads=record.threads,
        model=record.model,
        variant=record.variant,
        strategy=record.strategy,
        model_bytes=record.model_bytes,
        model_sha256=record.model_sha256,
        status=record.status,
        error=record.error,
        load_ms=doc.load_ms,
        first_ms=doc.first_ms,
        start_ms=doc.start_ms,
        runner_process=doc.process,
        rss_before_mb=_mb(doc.memory_kb("before_load").rss_kb),
        model_mem_mb=_mb(doc.model_kb or _load_difference_kb(doc)),
        **memory_peaks(doc),
        temp_start_c=_hottest(doc.state("before").thermal_c),
        temp_end_c=_hottest(doc.state("after").thermal_c),
        stop_reason=doc.stop_reason,
        cpu_model=identity.cpu_model,
        ram_mb=identity.ram_mb,
        os=identity.os,
        kernel=identity.kernel,
        board=identity.board,
        power_mode=nvpmodel_mode(doc.state("before").nvpmodel),
        governor=",".join(sorted(set(doc.state("before").governors.values()))) or None,
        cores=record.cores,
        schema_version=RESULTS_SCHEMA_VERSION,
        variant_params=json.dumps(record.variant_params, sort_keys=True),
        gzip_bytes=record.variant_report.get("gzip_bytes"),
        sparsity=record.variant_report.get("sparsity"),
        calibration=record.variant_report.get("calibration"),
        variant_effect=(record.variant_report.get("effect") or {}).get("claim"),
        eval_n=record.eval_metrics.get("eval_n"),
        accuracy=record.eval_metrics.get("accuracy"),
        top5_accuracy=record.eval_metrics.get("top5_accuracy"),
    )
    if record.status == "ok" and record.latencies_ns:
        summary = summarize(record.latencies_ns)
        row.update(summary.as_dict())
        warnings = stability_warnings(summary, record.target_ci)
        if doc.stop_reason == "time-before-min":
            warnings.append(
                f"max_seconds ended the job after {summary.n} iterations, before "
                "min_iterations: raise max_seconds for a tighter CI"
            )
        if doc.inject_slowdown:
            warnings.append(f"a {doc.inject_slowdown:.0%} slowdown was injected (testing)")
        process_p50s = [p.p50_ms for p in doc.processes if p.p50_ms]
        row["processes"] = max(1, len(process_p50s))
        if len(process_p50s) > 1:
            spread = (max(process_p50s) - min(process_p50s)) / summary.p50_ms
            row["process_p50_spread"] = spread
            if spread > 2 * summary.ci_half_width_rel:
                spread_text, width = percents_apart(spread, 2 * summary.ci_half_width_rel)
                warnings.append(
                    f"processes disagree: their p50s spread {spread_text}, wider than the CI "
                    f"({width} wide) (between-process noise)"
                )
        row["warnings"] = "; ".join(warnings) or None
    elif record.status == "ok" and doc.reported_stats is not None:
        row.update(_reported_summary(doc.reported_stats, doc.tool_name, len(doc.processes)))
    reasons = record.controller.get("throttle_reasons")
    if record.status == "ok" and reasons is not None:
        row["throttled"] = bool(reasons)
        notes = [f"throttled ({'; '.join(reasons)})"] if reasons else []
        cooldown = record.controller.get("cooldown")
        if cooldown and not cooldown["reached"]:
            notes.append(
                f"started hot: {cooldown['hottest_c']} °C after {cooldown['waited_s']} s "
                f"of cooldown (target {cooldown['target_c']} °C)"
            )
        _add_warnings(row, notes)
    if record.status == "ok":
        if record.eval_metrics.get("eval_error"):
            _add_warnings(row, [f"eval failed (latency kept): {record.eval_metrics['eval_error']}"])
        _add_warnings(row, preparation_warnings(doc.preparation))
        _add_warnings(row, charging_warnings(doc))
    if record.status == "ok" and doc.power.timed_window_ns:
        columns, notes = power_columns(doc.power)
        row.update(columns)
        _add_warnings(row, notes)
    return row


def _load_difference_kb(doc: ResultDocument) -> float | None:
    """What loading the model added: PSS where the kernel gives it (memory-mapped weights
    counted as the process's share), else RSS."""
    before, after = doc.memory_kb("before_load"), doc.memory_kb("after_load")
    if before.pss_kb is not None and after.pss_kb:
        return _difference(after.pss_kb, before.pss_kb)
    return _difference(after.rss_kb, before.rss_kb)


def memory_peaks(doc: ResultDocument) -> dict[str, float | None]:
    """peak_rss_mb (the kernel's VmHWM), and peak_pss_mb / peak_swap_mb: the largest of
    the sampler's readings and the runner's own checkpoints (None where neither has it)."""
    readings = doc.memory_readings
    pss = [r.pss_kb for r in readings]
    swap = [r.swap_kb for r in readings]
    hwm = [r.hwm_kb for r in readings]
    return {
        "peak_rss_mb": _mb(_largest(hwm)),
        "peak_pss_mb": _mb(_largest(pss)),
        "peak_swap_mb": _mb(_largest(swap)),
    }


def _largest(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def preparation_warnings(preparation: list[Prepared]) -> list[str]:
    """What the device file asked the runner to change and it could not."""
    return [
        f"{step.what.replace('_', ' ')} not applied: {step.error}"
        for step in preparation
        if not step.applied
    ]


def charging_warnings(doc: ResultDocument) -> list[str]:
    """A phone that charged during the job runs warmer and with other clocks than on
    battery: say so (its state comes from `dumpsys battery` before and after)."""
    charging = [
        when for when in ("before", "after") if doc.state(when).battery_status == "charging"
    ]
    if not charging:
        return []
    return [
        f"the phone was charging ({' and '.join(charging)} the job): unplug it or "
        "disable charging to measure it as on battery"
    ]


def _add_warnings(row: Row, notes: list[str]) -> None:
    if notes:
        row["warnings"] = "; ".join(filter(None, [row.get("warnings"), *notes]))


def power_columns(power: PowerReadings) -> tuple[dict[str, float | None], list[str]]:
    """idle_power_w, avg_power_w and energy_mj from the sampler's readings, and what a
    reader must know about them (a sampler error, too few readings, a phone charging)."""
    notes = [f"power sampler: {power.error}"] if power.error else []
    try:
        trace = power_trace(power.source, power.samples)
    except ParseError as exc:
        return {}, [*notes, f"power not measured: {exc}"]
    assert power.timed_window_ns is not None
    summary = energy_summary(trace, power.timed_window_ns, power.iterations, power.idle_window_ns)
    notes.extend(summary.notes)
    if power.window == "tool run":
        notes.append(
            "energy counts the native tool's whole run (model load and warm-up included): "
            "an upper bound per inference"
        )
    notes.extend(reading_notes(power.source, power.samples))
    columns = {
        "idle_power_w": summary.idle_power_w,
        "avg_power_w": summary.avg_power_w,
        "energy_mj": summary.energy_mj,
    }
    return columns, notes


def _reported_summary(stats: ReportedStats, tool: str, processes: int) -> Row:
    """A native tool that prints only summary statistics: its figures as they are, no CI
    (there are no samples to bootstrap), and a warning that says so."""
    summary: Row = {k: getattr(stats, k) for k in SUMMARY_COLUMNS}
    if stats.std_ms is not None and stats.mean_ms:
        summary["cv"] = stats.std_ms / stats.mean_ms
    summary["ci_method"] = "none (tool summary)"
    summary["processes"] = max(1, processes)
    summary["warnings"] = (
        f"{tool} reported summary statistics only: no per-run samples, so no confidence "
        "interval and no percentiles beyond what it printed"
    )
    return summary


SUMMARY_COLUMNS = ("n", "mean_ms", "std_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms",
                   "p99_ms")  # fmt: skip


def fill_reference_metrics(rows: list[Row], records: list[JobRecord]) -> None:
    """Against the fp32 variant of the same model on the same device (same provider and
    threads when measured, else any): top-1 agreement and output deviation on the eval set,
    and the fidelity of every output on the same fixed inputs (PSNR, cosine, max abs)."""
    measured = {r.job_id: r for r in records if r.status == "ok"}
    references: dict[JobKey | tuple[str, str], JobRecord] = {}
    for fp32 in (r for r in measured.values() if r.variant == "fp32"):
        references.setdefault((fp32.device, fp32.model), fp32)
        references[JobKey.of(fp32)] = fp32
    for row in rows:
        record = measured.get(row["job_id"])
        if record is None:
            continue
        reference: JobRecord | None = references.get(
            JobKey.of(record).with_variant("fp32")
        ) or references.get((record.device, record.model))
        if reference is None:
            continue
        mine, theirs = ResultDocument(record.runner), ResultDocument(reference.runner)
        ours, base = mine.fidelity, theirs.fidelity
        if ours is not None and base is not None and record is not reference:
            row.update(fidelity_columns(ours, base))
        our_eval, fp32_eval = mine.eval, theirs.eval
        if our_eval is not None and fp32_eval is not None:  # every eval sample: > fidelity's
            row["top1_agreement"] = top_k_agreement(our_eval.top_k, fp32_eval.top_k, 1)
            row["top5_agreement"] = top_k_agreement(our_eval.top_k, fp32_eval.top_k, 5)
            row["max_abs_dev"], row["mean_abs_dev"] = output_deviation(
                our_eval.outputs, fp32_eval.outputs
            )


def fidelity_columns(ours: Fidelity, base: Fidelity) -> Row:
    """The fidelity columns of a variant against its fp32, judged output by output."""
    declared = cast(dict[str, OutputDeclaration], base.declared)
    task = base.task or ("classification" if base.classification else "")
    outputs = compare_outputs(ours, base, declared, task)
    if outputs is None:
        return {}
    classes = [o for o in outputs if o.kind == "class_scores"]

    def worst(
        key: str, pick: Callable[[list[float]], float], among: list[OutputQuality] = outputs
    ) -> float | None:
        values = [v for o in among if (v := o.figures.get(key)) is not None]
        return pick(values) if values else None

    return {
        "fidelity_source": ours.source,
        "fidelity_n": min(o.n for o in outputs),
        "psnr_db": worst("psnr_db", min),
        "snr_db": worst("snr_db", min),
        "cosine_similarity": worst("cosine", min),
        "max_abs_err": worst("max_abs_err", max),
        "top1_agreement": worst("top1_agreement", min, classes),
        "top5_agreement": worst("top5_agreement", min, classes),
        "fidelity_outputs": json.dumps(as_records(outputs)),
    }


def fill_placement(rows: list[Row], profiles: list[JobRecord]) -> None:
    """From each job's profile job (`<job>.profile`), the share of its profiled time that
    fell back to the CPU, flagged as a warning when there is any."""
    by_job = {r.job_id.removesuffix(".profile"): r for r in profiles if r.status == "ok"}
    for row in rows:
        profile = by_job.get(row["job_id"])
        share = placement(profile)["cpu_fallback_share"] if profile is not None else None
        row["cpu_fallback_share"] = share
        if share:
            _add_warnings(
                row, [f"{share:.1%} of the profiled time ran on the CPU, not {row['provider']}"]
            )


def _mb(kb: float | None) -> float | None:
    return None if kb is None else kb / 1024.0


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _hottest(zones: dict[str, float] | None) -> float | None:
    values = [v for v in (zones or {}).values() if isinstance(v, (int, float)) and math.isfinite(v)]
    return max(values) if values else None
