"""A plan expanded into its job matrix (the axes, one job, the checks), and the paired and
profile jobs a plan asks for.

Nothing here touches a device, a socket or a subprocess; `data_files.check_files` reads
the local input and eval files a plan points at, before the first job runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from harness.config import Device, Measure, ModelManifest, Plan, Variant, runtime_for
from harness.data_files import check_files
from harness.errors import ConfigError
from harness.job_key import JobKey, job_id
from harness.jobs import Job, VariantFile
from harness.native.commands import PYTHON_RUNNER, TRTEXEC_PROVIDERS, check_provider, tool_for
from harness.probes.power import power_spec


def expand_plan(
    plan: Plan,
    devices: list[Device],
    manifests: list[ModelManifest],
    variant_files: Mapping[tuple[str, str], VariantFile] | None = None,
) -> list[Job]:
    """devices × models × variants × providers × threads, in a stable order, then the
    paired and profile jobs the plan asks for; checked before any job runs.

    `variant_files` gives built variants' files by (model, variant); without an entry a
    variant's own `file` is used (fp32 and external variants have one)."""
    jobs = []
    for device in devices:
        for manifest in manifests:
            variants = manifest.all_variants()
            if plan.variants is not None:
                variants = [v for v in variants if v.name in plan.variants]
            for variant in variants:
                built = (variant_files or {}).get((manifest.name, variant.name))
                if built is None:
                    built = VariantFile(variant.file)
                for tool, provider, threads in settings(plan, device, built.path or manifest.file):
                    jobs.append(
                        one_job(plan, device, manifest, variant, built, tool, provider, threads)
                    )
    check_jobs(plan, devices, jobs)
    if plan.measure.paired:
        jobs += paired_jobs(jobs, plan.measure)
    if plan.measure.profile:
        jobs += profile_jobs(jobs, plan.measure)
    inputs = {job.input_file: job.model for job in jobs if job.input_file}
    check_files(plan.plan_path or "plan", inputs, manifests)
    return jobs


def settings(plan: Plan, device: Device, model_file: Path) -> list[tuple[str, str, int]]:
    """The runtime settings a model file is measured with on a device: (tool, provider,
    threads) for every provider (or delegate) of its runtime that some tool there runs,
    and every thread count (one for trtexec, which has no thread setting)."""
    runtime = runtime_for(model_file)
    providers = (
        plan.runtime.onnx_providers if runtime == "onnxruntime" else plan.runtime.tflite_delegates
    )
    axes = []
    for provider in providers:
        tool = tool_for(
            device.runner_kind, runtime, provider, "trtexec" in device.placement.binaries
        )
        if tool is None:
            continue  # e.g. trtexec on a device without it
        check_provider(tool, provider, plan.plan_path or "plan")
        threads_axis = plan.runtime.threads[:1] if tool == "trtexec" else plan.runtime.threads
        axes += [(tool, provider, threads) for threads in threads_axis]
    return axes


def one_job(
    plan: Plan,
    device: Device,
    manifest: ModelManifest,
    variant: Variant,
    built: VariantFile,
    tool: str,
    provider: str,
    threads: int,
) -> Job:
    """The solo job of one variant on one device with one runtime setting."""
    measure, evaluation = plan.measure, manifest.eval
    model_file = built.path or manifest.file
    return Job(
        job_id=job_id(device.name, manifest.name, variant.name, provider, threads),
        device=device.name,
        model=manifest.name,
        variant=variant.name,
        strategy=variant.label or variant.strategy,
        model_file=model_file,
        runtime="tensorrt" if tool == "trtexec" else runtime_for(model_file),
        provider=provider,
        threads=threads,
        warmup=measure.warmup,
        stop=measure.stop_rule(),
        processes=measure.processes,
        inject_slowdown=measure.inject_slowdown,
        timeout_s=measure.timeout_s,
        seed=plan.inputs.seed,
        dims=dict(plan.inputs.dims),
        input_file=plan.inputs.files.get(manifest.name),
        input_specs=manifest.input_specs(),
        target_ci=None if measure.iterations else measure.target_ci,
        eval_file=evaluation.file if evaluation else None,
        eval_inputs=dict(evaluation.inputs) if evaluation else {},
        eval_whole=tuple(evaluation.whole) if evaluation else (),
        eval_labels=evaluation.labels if evaluation else "labels",
        top_k=evaluation.top_k if evaluation else 5,
        fidelity_samples=measure.fidelity_samples,
        task=manifest.task,
        output_declarations={n: o.declaration() for n, o in manifest.outputs.items()},
        fidelity_file=manifest.data.file if manifest.data else None,
        fidelity_whole=tuple(manifest.data.whole) if manifest.data else (),
        variant_report=built.report,
        variant_params=dict(variant.params),
        build_error=built.error,
        build_status=built.status,
        tool=tool,
        power=power_spec(device) if tool == PYTHON_RUNNER else None,
        sysfs_root=device.placement.sysfs_root,
        cores=device.placement.cores,
        governor=device.placement.governor,
        memory_interval_s=device.placement.memory_interval_ms / 1000.0,
    )


def check_jobs(plan: Plan, devices: list[Device], jobs: list[Job]) -> None:
    """The matrix makes sense: a trtexec provider has a device to run on, no two jobs
    share an id."""
    wanted_trtexec = set(plan.runtime.onnx_providers) & set(TRTEXEC_PROVIDERS)
    if wanted_trtexec and not any(job.tool == "trtexec" for job in jobs):
        raise ConfigError(
            plan.plan_path or "plan",
            f"{sorted(wanted_trtexec)} need a device with `placement.binaries.trtexec`; none of "
            f"{[d.name for d in devices]} has one",
            "runtime.onnx_providers",
        )
    duplicates = {i for i, count in Counter(j.job_id for j in jobs).items() if count > 1}
    if duplicates:
        raise ConfigError(
            plan.plan_path or "plan", f"jobs collide: {sorted(duplicates)}; list each once"
        )


def paired_jobs(jobs: list[Job], measure: Measure) -> list[Job]:
    """For each built variant measured by the Python runner, one more job that holds it
    and its fp32 reference in the same processes (same device, runtime setting and
    inputs). Memory, energy and fidelity stay with the solo jobs: co-residence would mix
    them. The budget is the whole comparison's, shared by its processes."""
    references = {JobKey.of(j): j for j in jobs if j.variant == "fp32" and j.tool == PYTHON_RUNNER}
    paired = []
    for job in jobs:
        reference = references.get(JobKey.of(job).with_variant("fp32"))
        if reference is None or job is reference or job.build_error:
            continue
        budget_s = measure.paired_budget_s / job.processes
        paired.append(
            replace(
                job,
                job_id=f"{job.job_id}.paired",
                kind="paired",
                reference_file=reference.model_file,
                paired={
                    "budget_s": budget_s,
                    "band": measure.equivalence_pct / 100,
                    "block_ms": measure.paired_block_ms,
                    **(
                        {"stop_above": measure.paired_stop_above_ratio}
                        if measure.paired_stop_above_ratio is not None
                        else {}
                    ),
                },
                eval_file=None,
                fidelity_samples=0,
                power=None,
                memory_interval_s=0.0,
                timeout_s=max(job.timeout_s, budget_s * 3 + 60),
            )
        )
    return paired


def profile_jobs(jobs: list[Job], measure: Measure) -> list[Job]:
    """For each solo job, one more process that profiles it layer by layer (the Python
    runner, or the native tool's own profiler): profiling perturbs timing, so it never
    shares a process with the timed loop (the latency figures stay the solo job's)."""
    return [
        replace(
            job,
            job_id=f"{job.job_id}.profile",
            kind="profile",
            profile={"runs": measure.profile_runs, "top_n": measure.profile_top_n},
            processes=1,
            eval_file=None,
            fidelity_samples=0,
            power=None,
            memory_interval_s=0.0,
        )
        for job in jobs
        if job.kind == "solo" and not job.build_error
    ]
