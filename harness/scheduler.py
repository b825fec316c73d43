"""Run a job matrix: devices in parallel, jobs on one device strictly one at a time.

Each job's record is written to the store the moment it ends. A device that cannot be
reached has its jobs recorded as `skipped` with the reason; the other devices go on. A
job that fails (corrupt model, runtime error, timeout) is recorded and the next one runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from harness.compress import BuildContext, build_all
from harness.config import (
    Device,
    Inputs,
    Measure,
    ModelManifest,
    Plan,
    Variant,
    load_inventory,
    load_plan,
    needed_devices,
    resolve_model,
    select_devices,
    shard_devices,
)
from harness.errors import ConfigError, StoreError
from harness.jobs import Job
from harness.plan_jobs import expand_plan
from harness.records import JobRecord
from harness.representative import with_representative_sets
from harness.store import RunStore, resolve_run, utc_now
from harness.transport import check_transport, sha256_of
from harness.worker import DeviceWorker, EventSink, JobEvent

SIGNAL_CHECK_S = 0.2  # how soon Ctrl-C or SIGTERM is noticed while devices run jobs

__all__ = [
    "EventSink",
    "JobEvent",  # from harness.worker, where the events are made
    "PreparedRun",
    "calibration_run",
    "controller_versions",
    "extend_run",
    "prepare_plan",
    "prepare_run",
    "run_jobs",
    "run_prepared",
    "variant_cache_dir",
]


@dataclass(frozen=True)
class PreparedRun:
    plan: Plan
    inventory: dict[str, Device]
    jobs: list[Job]
    store: RunStore

    def pending_jobs(self) -> list[Job]:
        """The jobs without a result yet (all of a new run; a resumed run's rest)."""
        done = self.store.finished_job_ids()
        return [job for job in self.jobs if job.job_id not in done]


def prepare_run(
    plan_path: Path,
    only_devices: list[str] | None = None,
    log: Callable[[str], None] = lambda message: None,
    resume: str | None = None,
    shard: tuple[int, int] | None = None,
    profile: bool = False,
) -> PreparedRun:
    """Validate everything a run needs (plan, devices, manifests, files) and build the
    missing variants, before any job. With `resume` (a run id or path made by this plan),
    the jobs go into that run, and those it has finished are not run again. With `shard`
    (i, n), only the i-th of n shares of the plan's devices (config.shard_devices).
    `profile`: as `profile = true` in the plan's [measure] (`harness run --profile`)."""
    plan = load_plan(plan_path)
    if profile:
        plan = plan.model_copy(
            update={"measure": plan.measure.model_copy(update={"profile": True})}
        )
    store = None
    if resume is not None:
        store = resolve_run(plan.output_dir, resume)
        made_by = store.read_run_meta().get("plan", {}).get("name")
        if made_by != plan.name:
            raise ConfigError(
                plan_path,
                f"run {store.run_id} was made by plan '{made_by}', not '{plan.name}': "
                "resume it with its own plan",
                "name",
            )
        for record, moved in store.set_aside_unreadable():
            log(
                f"warning: {record.name} is unreadable (cut short?): set aside as "
                f"{moved.relative_to(store.run_dir)}; its job runs again"
            )
    return prepare_plan(plan, only_devices, log, store=store, shard=shard)


def prepare_plan(
    plan: Plan,
    only_devices: list[str] | None = None,
    log: Callable[[str], None] = lambda message: None,
    only_jobs: set[str] | None = None,
    store: RunStore | None = None,
    shard: tuple[int, int] | None = None,
    variants_for: Mapping[str, list[Variant]] | None = None,
) -> PreparedRun:
    """`prepare_run` for a plan already loaded (and perhaps changed, e.g. by `gate --extend`,
    which re-runs only `only_jobs`). `variants_for`: a model's variants in place of its
    manifest's (`harness tune`'s candidates)."""
    plan_path = plan.plan_path or Path(plan.name)
    problems: dict[str, ConfigError] = {}
    inventory = load_inventory(plan.devices_dir, problems)
    names = plan.devices
    needed_devices(names, problems, log)
    missing = [n for n in names if n not in inventory]
    if missing:
        raise ConfigError(
            plan_path,
            f"unknown device(s) {missing}: no such file in {plan.devices_dir} "
            f"(known: {', '.join(sorted(inventory))})",
            "devices",
        )
    if only_devices is not None:
        names = select_devices(names, inventory, only_devices)
    if shard is not None:
        names = shard_devices(names, *shard)
    gateways = [n for n in names if inventory[n].role == "gateway"]
    if gateways:
        raise ConfigError(
            plan_path, f"{gateways} are gateways (role = 'gateway'), not targets", "devices"
        )
    for name in names:  # a key file that is not there is a device file to fix: exit 2
        check_transport(inventory[name], inventory)
    manifests = [resolve_model(plan, ref) for ref in plan.models]
    manifests = [
        m.model_copy(update={"variants": variants_for[m.name]})
        if variants_for and m.name in variants_for
        else m
        for m in manifests
    ]
    _check_variant_names(plan, plan_path, manifests)
    manifests = with_representative_sets(manifests, variant_cache_dir(plan.models_dir), log)
    variant_files = build_all(
        manifests,
        plan.variants,
        variant_cache_dir(plan.models_dir),
        lambda manifest: BuildContext(manifest, dict(plan.inputs.dims), plan.inputs.seed),
        log,
    )
    jobs = expand_plan(plan, [inventory[n] for n in names], manifests, variant_files)
    if only_jobs is not None:
        jobs = [job for job in jobs if job.job_id in only_jobs]
    if not jobs:  # a run that does nothing must not pass a CI step
        raise ConfigError(
            plan_path,
            f"selects no job: devices {names}, models {plan.models}, variants "
            f"{plan.variants or 'all'}" + (f", jobs {sorted(only_jobs)}" if only_jobs else ""),
        )
    if store is not None:  # resuming: keep what the run recorded, note the resumption
        store.mark_resumed()
        return PreparedRun(plan, inventory, jobs, store)
    store = RunStore.create(plan.output_dir, plan.name)
    store.begin(
        {
            "run_id": store.run_id,
            "started_at": utc_now(),
            "plan": plan.model_dump(mode="json"),
            "devices": {n: inventory[n].redacted() for n in names},
            "models": {m.name: m.model_dump(mode="json") for m in manifests},
            "jobs": [j.job_id for j in jobs],
            "shard": f"{shard[0]}/{shard[1]}" if shard else None,
            "controller": controller_versions(),
        }
    )
    return PreparedRun(plan, inventory, jobs, store)


def _check_variant_names(plan: Plan, plan_path: Path, manifests: list[ModelManifest]) -> None:
    """Every variant a plan names is one of its models' (a typo such as `int9` would
    otherwise select nothing and run nothing)."""
    known = {v.name for manifest in manifests for v in manifest.all_variants()}
    unknown = [name for name in plan.variants or [] if name not in known]
    if unknown:
        raise ConfigError(
            plan_path,
            f"{unknown}: no model of this plan has such a variant; its models' variants are "
            f"{', '.join(sorted(known))}",
            "variants",
        )


def extend_run(store: RunStore, job_ids: set[str], factor: int) -> RunStore:
    """A new run (nothing is overwritten) of the given jobs of `store`'s plan, with
    `factor` times the iterations (or the minimum and budget of the adaptive rule)."""
    plan_path = store.read_run_meta().get("plan", {}).get("plan_path")
    if not plan_path or not Path(plan_path).is_file():
        raise StoreError(f"extending a run needs its plan file, which is gone: {plan_path}")
    plan = load_plan(Path(plan_path))
    measure = plan.measure
    longer = measure.model_copy(
        update={
            "iterations": measure.iterations * factor if measure.iterations else None,
            "min_iterations": measure.min_iterations * factor,
            "max_iterations": max(measure.max_iterations, measure.min_iterations * factor),
            "max_seconds": measure.max_seconds * factor,
            "timeout_s": measure.timeout_s * factor,
        }
    )
    extended = plan.model_copy(update={"name": f"{plan.name}-extend", "measure": longer})
    prepared = prepare_plan(extended, only_jobs=job_ids)
    run_prepared(prepared)
    return prepared.store


def calibration_run(
    device: str,
    model: str,
    processes: int,
    iterations: int,
    devices_dir: Path,
    models_dir: Path,
    runs_dir: Path,
) -> tuple[RunStore, list[JobRecord]]:
    """One job of the model's fp32 variant on the device in `processes` fresh processes:
    the raw material of the device's noise floor (`harness calibrate`)."""
    plan = Plan(
        name=f"calibrate-{device}",
        devices=[device],
        models=[model],
        variants=["fp32"],
        devices_dir=devices_dir,
        models_dir=models_dir,
        output_dir=runs_dir,
        measure=Measure(warmup=20, iterations=iterations, processes=processes),
        inputs=Inputs(dims={"batch": 1}),
    )
    prepared = prepare_plan(plan)
    return prepared.store, run_prepared(prepared)


def variant_cache_dir(models_dir: Path) -> Path:
    return models_dir / "cache" / "variants"


def run_prepared(prepared: PreparedRun, on_event: EventSink | None = None) -> list[JobRecord]:
    """Run the jobs, then write the parquet views and mark run.json finished."""
    records = run_jobs(prepared.jobs, prepared.inventory, prepared.store, on_event)
    prepared.store.finalize()
    prepared.store.mark_finished()
    return records


def controller_versions() -> dict[str, str | None]:
    """Versions that decide whether two runs are comparable, and the git commit."""
    import platform
    import subprocess
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("edge-harness", "onnxruntime", "ai-edge-litert", "ai-edge-quantizer", "numpy",
                    "paramiko", "pandas"):  # fmt: skip
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        versions["git_commit"] = commit.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        versions["git_commit"] = None
    return versions


def run_jobs(
    jobs: list[Job],
    inventory: Mapping[str, Device],
    store: RunStore,
    on_event: EventSink | None = None,
    stop: threading.Event | None = None,
) -> list[JobRecord]:
    """Run every job not yet finished in `store`; returns the records written now.
    `stop`, set from another thread, stops the devices as Ctrl-C does (a lab worker
    that is asked to end)."""
    emit = on_event or (lambda event: None)
    done = store.finished_job_ids()
    pending = [job for job in jobs if job.job_id not in done]
    files = {f for job in pending for f in job.local_files()}
    # a file gone since the variants were built has no facts: its jobs say so (skipped)
    file_facts = {path: (sha256_of(path), path.stat().st_size) for path in files if path.is_file()}
    by_device: dict[str, list[Job]] = {}
    for job in pending:
        by_device.setdefault(job.device, []).append(job)
    if not by_device:
        return []
    stop = stop or threading.Event()
    workers = {
        name: DeviceWorker(inventory[name], inventory, store, file_facts, emit, stop)
        for name in by_device
    }
    with ThreadPoolExecutor(max_workers=len(by_device), thread_name_prefix="device") as pool:
        futures = [pool.submit(workers[name].run, jobs) for name, jobs in by_device.items()]
        try:
            # Waits in short slices: the kernel hands a signal to any thread, and a main
            # thread blocked without a timeout would only see Ctrl-C once every job is done.
            unfinished = set(futures)
            while unfinished:
                finished, unfinished = wait(unfinished, timeout=SIGNAL_CHECK_S)
                if stop.is_set() and unfinished:
                    _stop_devices(stop, list(workers.values()), set(futures))
                if any(future.exception() for future in finished) and not stop.is_set():
                    # a device that failed as a whole (the reports folder full): nothing
                    # the others finish could be kept either, so they stop too
                    _stop_devices(stop, list(workers.values()), set(futures))
            return [record for future in futures for record in future.result()]
        except BaseException:
            # Ctrl-C, SIGTERM: each device kills its current job on the device, records it
            # `interrupted` (run again by --resume), releases its lease and stops
            _stop_devices(stop, list(workers.values()), set(futures))
            raise


def _stop_devices(
    stop: threading.Event, workers: list[DeviceWorker], futures: set[Future[list[JobRecord]]]
) -> None:
    """Tell every device to stop, kill the job running on each, and wait until each has
    recorded it and released its lease. A second Ctrl-C or SIGTERM while they do must not
    abandon them (no record, a lease left on the device): it is noted and the wait goes on.
    Each device's transport watchdog bounds the wait."""
    stop.set()
    to_interrupt = list(workers)
    unfinished = set(futures)
    while to_interrupt or unfinished:
        try:
            while to_interrupt:
                to_interrupt[0].interrupt()
                to_interrupt.pop(0)
            unfinished = wait(unfinished, timeout=SIGNAL_CHECK_S).not_done
        except KeyboardInterrupt:
            continue  # the devices are still being stopped; the first signal decides
