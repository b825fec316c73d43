"""Run a job matrix: devices in parallel, jobs on one device strictly one at a time.

Each job's record is written to the store the moment it ends. A device that cannot be
reached has its jobs recorded as `skipped` with the reason; the other devices go on. A
job that fails (corrupt model, runtime error, timeout) is recorded and the next one runs.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.accuracy import eval_metrics
from harness.compress import BuildContext, build_all
from harness.config import (
    Device,
    Inputs,
    Measure,
    Plan,
    load_inventory,
    load_plan,
    needed_devices,
    resolve_model,
    select_devices,
    shard_devices,
)
from harness.deploy import install_runner
from harness.errors import (
    CommandInterrupted,
    CommandTimeout,
    ConfigError,
    DeviceUnreachable,
    HarnessError,
    LeaseHeld,
    RunnerFailed,
    StoreError,
    TransportError,
)
from harness.jobs import Job, expand_plan, parse_result_document, power_spec
from harness.lease import Lease, acquire, end_leftovers, new_lease, refresh, release
from harness.native.commands import (
    PYTHON_RUNNER,
    native_command,
    parse_tool_output,
    pool_reported,
    result_document,
)
from harness.native.sampling import SHELL_SOURCES, ShellPowerSampler
from harness.probes.facts import check_device, unusable_runtimes
from harness.probes.thermal import (
    STATE_SCRIPT,
    parse_state_probe,
    parse_zone_temps,
    throttle_reasons,
)
from harness.records import JobRecord
from harness.store import RunStore, resolve_run, utc_now
from harness.transport import open_transport, sha256_of
from harness.transport.base import Transport
from harness.transport.remote_shell import KILL_BY_ARGUMENT

COOLDOWN_POLL_S = 0.5
MIN_FREE_BYTES = 8 * 2**20  # below this the device counts as full: not even a job spec fits
T = TypeVar("T")


@dataclass(frozen=True)
class PreparedRun:
    plan: Plan
    inventory: dict[str, Device]
    jobs: list[Job]
    store: RunStore


def prepare_run(
    plan_path: Path,
    only_devices: list[str] | None = None,
    log: Callable[[str], None] = lambda message: None,
    resume: str | None = None,
    shard: tuple[int, int] | None = None,
) -> PreparedRun:
    """Validate everything a run needs (plan, devices, manifests, files) and build the
    missing variants, before any job. With `resume` (a run id or path made by this plan),
    the jobs go into that run, and those it has finished are not run again. With `shard`
    (i, n), only the i-th of n shares of the plan's devices (config.shard_devices)."""
    plan = load_plan(plan_path)
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
        for moved in store.set_aside_unreadable():
            log(
                f"warning: {moved.name.rsplit('.', 2)[0]}.json is unreadable (cut short?): set "
                f"aside as {moved.relative_to(store.run_dir)}; its job runs again"
            )
    return prepare_plan(plan, only_devices, log, store=store, shard=shard)


def prepare_plan(
    plan: Plan,
    only_devices: list[str] | None = None,
    log: Callable[[str], None] = lambda message: None,
    only_jobs: set[str] | None = None,
    store: RunStore | None = None,
    shard: tuple[int, int] | None = None,
) -> PreparedRun:
    """`prepare_run` for a plan already loaded (and perhaps changed, e.g. by `gate --extend`,
    which re-runs only `only_jobs`)."""
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
    if only_devices:
        names = select_devices(names, inventory, only_devices)
    if shard is not None:
        names = shard_devices(names, *shard)
    gateways = [n for n in names if inventory[n].role == "gateway"]
    if gateways:
        raise ConfigError(
            plan_path, f"{gateways} are gateways (role = 'gateway'), not targets", "devices"
        )
    manifests = [resolve_model(plan, ref) for ref in plan.models]
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
    if store is not None:  # resuming: keep what the run recorded, note the resumption
        meta = store.read_run_meta()
        meta.pop("schema", None)
        meta.pop("finished_at", None)
        meta["resumed_at"] = [*meta.get("resumed_at", []), utc_now()]
        store.write_run_meta(meta)
        return PreparedRun(plan, inventory, jobs, store)
    store = RunStore.create(plan.output_dir, plan.name)
    store.write_run_meta(
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
    meta = prepared.store.read_run_meta()
    meta.pop("schema", None)
    statuses = [r.status for r in prepared.store.records()]
    meta.update(
        finished_at=utc_now(), status_counts={s: statuses.count(s) for s in sorted(set(statuses))}
    )
    prepared.store.write_run_meta(meta)
    return records


def controller_versions() -> dict[str, str | None]:
    """Versions that decide whether two runs are comparable, and the git commit."""
    import platform
    import subprocess
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("edge-harness", "onnxruntime", "ai-edge-litert", "numpy", "paramiko", "pandas"):
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


@dataclass(frozen=True)
class JobEvent:
    """Progress for a display: `kind` is 'device-ready', 'device-error', 'start', 'rerun'
    or 'end'."""

    kind: str
    device: str
    job_id: str = ""
    status: str = ""
    message: str = ""


EventSink = Callable[[JobEvent], None]


def run_jobs(
    jobs: list[Job],
    inventory: Mapping[str, Device],
    store: RunStore,
    on_event: EventSink | None = None,
) -> list[JobRecord]:
    """Run every job not yet finished in `store`; returns the records written now."""
    emit = on_event or (lambda event: None)
    done = store.finished_job_ids()
    pending = [job for job in jobs if job.job_id not in done]
    files = {j.model_file for j in pending if not j.build_error}
    files |= {f for j in pending for f in (j.input_file, j.eval_file) if f is not None}
    file_facts = {path: (sha256_of(path), path.stat().st_size) for path in files}
    by_device: dict[str, list[Job]] = {}
    for job in pending:
        by_device.setdefault(job.device, []).append(job)
    if not by_device:
        return []
    stop = threading.Event()
    workers = {
        name: _DeviceWorker(inventory[name], inventory, store, file_facts, emit, stop)
        for name in by_device
    }
    with ThreadPoolExecutor(max_workers=len(by_device), thread_name_prefix="device") as pool:
        futures = [pool.submit(workers[name].run, jobs) for name, jobs in by_device.items()]
        try:
            return [record for future in futures for record in future.result()]
        except BaseException:
            # Ctrl-C, SIGTERM: each device kills its current job on the device, records it
            # `interrupted` (run again by --resume), releases its lease and stops
            stop.set()
            for worker in workers.values():
                worker.interrupt()
            raise


@dataclass(frozen=True)
class _Attempt:
    """One successful runner process of a job."""

    doc: dict[str, Any]
    timings: dict[str, Any]


def median_ms(latencies_ns: list[int]) -> float | None:
    import statistics

    return statistics.median(latencies_ns) / 1e6 if latencies_ns else None


class _DeviceWorker:
    """One device's jobs, strictly one at a time: connect (retrying link faults), reserve
    the device (harness/lease.py), check its health, then the jobs in rounds. A fault of
    the link is retried with backoff; a device still unreachable after its retries is
    quarantined: its remaining jobs are recorded `skipped` with the reason."""

    def __init__(
        self,
        device: Device,
        inventory: Mapping[str, Device],
        store: RunStore,
        file_facts: Mapping[Path, tuple[str, int]],
        emit: EventSink,
        stop: threading.Event,
    ) -> None:
        self.device = device
        self.inventory = inventory
        self.store = store
        self.file_facts = file_facts
        self.emit = emit
        self.stop = stop
        self.binary_paths: dict[str, str] = {}  # native tool -> its path on the device
        self.lease: Lease | None = None
        self.lease_ttl_s = 120.0
        self.quarantined: str | None = None  # why the device's remaining jobs are skipped
        self.transport: Transport | None = None

    def interrupt(self) -> None:
        """From another thread: kill the job running now (its record says `interrupted`)."""
        if self.transport is not None:
            self.transport.interrupt()

    def run(self, jobs: list[Job]) -> list[JobRecord]:
        """Each job in `job.processes` fresh runner processes, in rounds over all the
        device's jobs, so drifts and process placement fall on every variant alike."""
        records: list[JobRecord] = []
        transport = self.transport = open_transport(self.device, self.inventory)
        cooldown_s = self.device.cooldown_max_s if self.device.cooldown_c is not None else 0.0
        longest_s = max(job.timeout_s for job in jobs) + cooldown_s
        self.lease_ttl_s = 2 * longest_s * (1 + self.device.rerun_throttled) + 120
        try:
            try:
                runner_path, unusable = self._start(transport, jobs)
            except HarnessError as exc:
                self.emit(JobEvent("device-error", self.device.name, message=str(exc)))
                for job in jobs:
                    records.append(self._save(job, utc_now(), "skipped", error=str(exc)))
                return records
            self.emit(JobEvent("device-ready", self.device.name))
            started: dict[str, str] = {}
            done: dict[str, list[_Attempt]] = {job.job_id: [] for job in jobs}
            open_jobs = []
            for job in jobs:
                if job.tool == PYTHON_RUNNER and job.runtime in unusable:
                    error = f"device '{self.device.name}' cannot run it: {unusable[job.runtime]}"
                    records.append(self._save(job, utc_now(), "skipped", error=error))
                else:
                    open_jobs.append(job)
            for round_index in range(max((job.processes for job in jobs), default=0)):
                for job in list(open_jobs):
                    if self.stop.is_set():
                        return records
                    if self.quarantined is not None:
                        open_jobs.remove(job)
                        error = f"device quarantined for this run: {self.quarantined}"
                        records.append(
                            self._save(
                                job, started.get(job.job_id, utc_now()), "skipped", error=error
                            )
                        )
                        continue
                    if round_index == 0:
                        self.emit(JobEvent("start", self.device.name, job.job_id))
                        started[job.job_id] = utc_now()
                    outcome = self._attempt(job, transport, runner_path, round_index)
                    if isinstance(outcome, _Attempt):
                        done[job.job_id].append(outcome)
                        if len(done[job.job_id]) < job.processes:
                            continue  # more processes of this job in later rounds
                        outcome = self._finish(job, started[job.job_id], done[job.job_id])
                    records.append(outcome)
                    open_jobs.remove(job)
        finally:
            if self.lease is not None:
                with contextlib.suppress(HarnessError):  # this run's job specs and scratch
                    transport.run(
                        ["rm", "-rf", transport.remote_path(f"jobs/{self.store.run_id}")],
                        timeout_s=30,
                    )
                with contextlib.suppress(HarnessError):
                    release(transport, self.lease)
            transport.close()
        return records

    def _start(self, transport: Transport, jobs: list[Job]) -> tuple[str, dict[str, str]]:
        """Connect, take the lease, check the device's health. Returns the runner's path
        and the runtimes it cannot run (runtime -> why); raises what makes it unusable.
        A link fault on the way starts it over (the lease, once taken, is recognised)."""
        lease = new_lease(self.store.run_id, self.lease_ttl_s)
        return self._with_retries("starting", lambda: self._start_once(transport, jobs, lease))

    def _start_once(
        self, transport: Transport, jobs: list[Job], lease: Lease
    ) -> tuple[str, dict[str, str]]:
        transport.open()
        self.lease = acquire(
            transport,
            lease,
            self.device.lease_wait_s,
            on_wait=lambda held: self.emit(
                JobEvent("waiting", self.device.name, message=f"reserved by {held.describe()}")
            ),
            should_stop=self.stop.is_set,
        )
        ended = end_leftovers(transport)
        if ended:
            self.emit(
                JobEvent(
                    "cleanup",
                    self.device.name,
                    message=f"ended {len(ended)} runner(s) that a previous controller left "
                    f"running on the device ({', '.join(ended)})",
                )
            )
        if not any(job.tool == PYTHON_RUNNER for job in jobs):
            return "", {}
        facts = check_device(self.device, transport)
        if facts.disk_free_bytes is not None and facts.disk_free_bytes < MIN_FREE_BYTES:
            raise TransportError(
                self.device.name,
                f"disk full: {facts.disk_free_bytes // 1024} KiB free in {facts.workdir}; free "
                "space on the device or point `workdir` at a larger disk",
            )
        return install_runner(transport), unusable_runtimes(facts.runtimes)

    def _with_retries(self, what: str, operation: Callable[[], T]) -> T:
        """`operation()`, again after backoff when the link fails (DeviceUnreachable);
        never for a job's own failure."""
        for retry in range(self.device.retries + 1):
            try:
                return operation()
            except DeviceUnreachable as exc:
                if retry == self.device.retries or self.stop.is_set():
                    raise
                wait_s = self.device.retry_backoff_s * 2**retry
                self.emit(
                    JobEvent(
                        "retry",
                        self.device.name,
                        message=f"{what}: {exc}; retry {retry + 1}/{self.device.retries} "
                        f"in {wait_s:g} s",
                    )
                )
                self.stop.wait(wait_s)
        raise AssertionError("unreachable")

    def _attempt(
        self, job: Job, transport: Transport, runner_path: str, round_index: int
    ) -> _Attempt | JobRecord:
        """One runner process for the job (again after a link fault, and after a cooldown
        when it throttled and the device file allows reruns): its result, or the job's
        failure record."""
        started_at = utc_now()
        tries = 0

        def once() -> _Attempt | JobRecord:
            nonlocal tries
            if tries:
                self._kill_leftovers(job, transport)
            tries += 1
            return self._attempt_once(job, transport, runner_path, round_index)

        try:
            outcome = self._with_retries(job.job_id, once)
            reruns = 0
            while (
                isinstance(outcome, _Attempt)
                and outcome.timings.get("throttle_reasons")
                and reruns < self.device.rerun_throttled
            ):
                reruns += 1
                self.emit(JobEvent("rerun", self.device.name, job.job_id, message="throttled"))
                outcome = self._with_retries(job.job_id, once)
                if isinstance(outcome, _Attempt):
                    outcome.timings["reruns_after_throttling"] = reruns
        except (DeviceUnreachable, LeaseHeld) as exc:
            transport.close()
            self.quarantined = str(exc)
            self.emit(JobEvent("quarantine", self.device.name, job.job_id, message=str(exc)))
            return self._save(  # not a result of the job: --resume runs it again
                job,
                started_at,
                "skipped",
                error=f"{exc} (tried {tries} time(s), lost mid-job; the device's remaining "
                "jobs are skipped)",
                controller={"lost": True, "attempts": tries},
            )
        if isinstance(outcome, _Attempt) and tries > 1:
            outcome.timings["attempts"] = tries
        return outcome

    def _kill_leftovers(self, job: Job, transport: Transport) -> None:
        """After a lost connection, the job's processes may still run on the device (and
        would disturb the retry): kill every process whose command line names the job."""
        marker = (
            transport.remote_path(f"jobs/{self.store.run_id}/{job.job_id}.")
            if job.tool == PYTHON_RUNNER
            else self.binary_paths.get(job.tool, "")
        )
        if marker:
            transport.run(["sh", "-c", KILL_BY_ARGUMENT, "cleanup", marker], timeout_s=30)

    def _attempt_once(
        self, job: Job, transport: Transport, runner_path: str, round_index: int
    ) -> _Attempt | JobRecord:
        """One try: a result, or the record of the job's own failure. Link faults
        (DeviceUnreachable) and a lost lease propagate, to be retried or quarantined."""
        started_at = utc_now()
        if job.build_error:
            return self._save(
                job, started_at, "error", error=f"variant not built: {job.build_error}"
            )
        clock = time.perf_counter()
        timings: dict[str, Any] = {}
        try:
            if (
                self.lease is not None
                and self.lease.expires_at - time.time() < self.lease_ttl_s / 2
            ):
                self.lease = refresh(transport, self.lease, self.lease_ttl_s)  # half used: renew
            if self.device.cooldown_c is not None:
                timings["cooldown"] = self._cool_down(transport)
            if job.tool == PYTHON_RUNNER:
                doc = self._run_runner(job, transport, runner_path, round_index, timings)
            else:
                doc = self._run_native(job, transport, timings)
        except (DeviceUnreachable, LeaseHeld):
            transport.close()  # reconnect on the next try
            raise
        except CommandTimeout as exc:
            return self._save(job, started_at, "timeout", error=str(exc), controller=timings)
        except CommandInterrupted:
            error = "the run was interrupted (Ctrl-C or SIGTERM); --resume runs the job again"
            return self._save(job, started_at, "interrupted", error=error, controller=timings)
        except HarnessError as exc:
            return self._save(job, started_at, "error", error=str(exc), controller=timings)
        except Exception as exc:  # a bug of ours must not lose the other jobs
            timings["traceback"] = traceback.format_exc()
            return self._save(
                job, started_at, "error", error=f"internal error: {exc!r}", controller=timings
            )
        timings["total_s"] = time.perf_counter() - clock
        state = doc.get("state") or {}
        timings["throttle_reasons"] = throttle_reasons(
            state.get("before"), state.get("after"), self.device.throttle_min_freq_fraction
        )
        if doc["status"] != "ok":
            return self._save(
                job,
                started_at,
                "error",
                error=_describe_runner_error(doc["error"]),
                runner=doc,
                controller=timings,
            )
        return _Attempt(doc, timings)

    def _run_runner(
        self,
        job: Job,
        transport: Transport,
        runner_path: str,
        round_index: int,
        timings: dict[str, Any],
    ) -> dict[str, Any]:
        """One process of harness/runner/run.py: its validated result document."""
        clock = time.perf_counter()
        sha, _ = self.file_facts[job.model_file]
        remote_model, pushed = transport.put_content_addressed(job.model_file, "models", sha)
        remote_input = None
        if job.input_file is not None:
            input_sha, _ = self.file_facts[job.input_file]
            remote_input, _ = transport.put_content_addressed(job.input_file, "inputs", input_sha)
        remote_eval = None
        if job.eval_file is not None and round_index == 0:  # accuracy once per job
            eval_sha, _ = self.file_facts[job.eval_file]
            remote_eval, _ = transport.put_content_addressed(job.eval_file, "eval", eval_sha)
        spec_path = transport.remote_path(f"jobs/{self.store.run_id}/{job.job_id}.json")
        spec = job.spec(remote_model, remote_input, remote_eval, spec_path.removesuffix(".json"))
        transport.put_bytes(json.dumps(spec).encode(), spec_path)
        timings.update(model_pushed=pushed, push_s=time.perf_counter() - clock)
        result = transport.run(
            [self.device.python, runner_path, spec_path],
            timeout_s=job.timeout_s,
            interruptible=True,
        )
        timings["run_s"] = result.duration_s
        try:
            doc = parse_result_document(result.stdout, device=self.device.name, job_id=job.job_id)
        except RunnerFailed as exc:
            raise RunnerFailed(
                f"{exc}; the runner {_exit_text(result.exit_code)}"
                + (f"; its stderr: {_tail(result.stderr)}" if result.stderr.strip() else "")
            ) from None
        return doc

    def _run_native(
        self, job: Job, transport: Transport, timings: dict[str, Any]
    ) -> dict[str, Any]:
        """One run of the job's native tool; its output parsed into a result document."""
        clock = time.perf_counter()
        sha, _ = self.file_facts[job.model_file]
        remote_model, pushed = transport.put_content_addressed(job.model_file, "models", sha)
        binary = self._native_binary(job.tool, transport)
        times_path = None
        if job.tool == "trtexec":
            times_path = transport.remote_path(f"jobs/{self.store.run_id}/{job.job_id}.times.json")
            transport.run_check(["mkdir", "-p", posixpath.dirname(times_path)], timeout_s=30)
        argv = native_command(
            job.tool,
            binary=binary,
            model_path=remote_model,
            provider=job.provider,
            threads=job.threads,
            warmup=job.warmup,
            stop=job.stop,
            times_path=times_path,
            cores=self.device.cores,
        )
        timings.update(model_pushed=pushed, push_s=time.perf_counter() - clock)
        before = self._native_state(transport)
        power = power_spec(self.device) if self.device.power in SHELL_SOURCES else None
        sampler = None
        windows: dict[str, Any] = {}
        if power is not None:
            sampler = ShellPowerSampler(transport, self.device.sysfs_root, power["interval_s"])
            sampler.start()
        try:
            if sampler is not None and power is not None and power["idle_s"] > 0:
                # the baseline: the tool not started yet
                windows["idle_window_ns"] = sampler.idle_window(
                    power["idle_s"], power["min_readings"]
                )
            window_start = time.monotonic_ns()
            result = transport.run(argv, timeout_s=job.timeout_s, interruptible=True)
            windows["timed_window_ns"] = [window_start, time.monotonic_ns()]
        finally:
            sampled = sampler.stop() if sampler is not None else None
        timings["run_s"] = result.duration_s
        after = self._native_state(transport)
        times_json = None
        if times_path is not None and transport.exists(times_path):
            with tempfile.TemporaryDirectory(prefix="harness-times-") as folder:
                local = Path(folder) / "times.json"
                transport.get(times_path, local)
                times_json = local.read_text()
        output = result.stdout + "\n" + result.stderr
        try:
            report = parse_tool_output(job.tool, output, times_json)
        except RunnerFailed as exc:
            raise RunnerFailed(
                f"job {job.job_id} on '{self.device.name}': {exc} (exit status {result.exit_code})"
            ) from None
        if result.exit_code != 0:
            raise RunnerFailed(
                f"job {job.job_id} on '{self.device.name}': {job.tool} exited with status "
                f"{result.exit_code}: {_tail(output)}"
            )
        doc = result_document(job.job_id, job.runtime, report, argv)
        doc["state"] = {"before": before, "after": after}
        if power is not None and sampled is not None:
            doc["power"] = {
                "source": power["source"],
                "interval_s": sampler.interval_s if sampler else None,
                "window": "tool run",  # load and warm-up included (records.py says so)
                "iterations": report.n,
                **windows,
                **sampled,
            }
        return doc

    def _native_state(self, transport: Transport) -> dict[str, Any]:
        """Thermal zones, a Jetson's power mode and a phone's charging state, read through
        the transport around a native tool's run."""
        result = transport.run(
            ["sh", "-c", STATE_SCRIPT, "state", self.device.sysfs_root], timeout_s=30
        )
        return parse_state_probe(result.stdout)

    def _cool_down(self, transport: Transport) -> dict[str, Any]:
        """Wait until the hottest thermal zone is below the device's cooldown_c, or until
        cooldown_max_s has passed; says how long it waited and where it got to."""
        target = self.device.cooldown_c
        assert target is not None
        started = time.monotonic()
        probe = 'cat "$1"/class/thermal/thermal_zone*/temp 2>/dev/null; true'
        while True:
            result = transport.run(
                ["sh", "-c", probe, "cooldown", self.device.sysfs_root], timeout_s=30
            )
            temps = parse_zone_temps(result.stdout)
            hottest = max(temps) if temps else None
            waited = time.monotonic() - started
            reached = hottest is None or hottest < target  # no zones: nothing to wait for
            if reached or waited >= self.device.cooldown_max_s or self.stop.is_set():
                return {
                    "waited_s": round(waited, 3),
                    "hottest_c": hottest,
                    "target_c": target,
                    "reached": reached,
                }
            time.sleep(COOLDOWN_POLL_S)

    def _native_binary(self, tool: str, transport: Transport) -> str:
        """The tool's path on the device: as configured, or pushed once by content hash
        (hashed, checked and made executable once per run on this device)."""
        if tool in self.binary_paths:
            return self.binary_paths[tool]
        binary = next((b for name, b in self.device.binaries.items() if name == tool), None)
        if binary is None:
            raise ConfigError(
                self.device.source or self.device.name,
                f"device '{self.device.name}' has no {tool}: add [binaries.{tool}] with "
                "`local` (a file on this machine, pushed) or `device` (a path on the device)",
                f"binaries.{tool}",
            )
        if binary.device is not None:
            self.binary_paths[tool] = binary.device
            return binary.device
        assert binary.local is not None
        if not binary.local.is_file():
            raise ConfigError(
                self.device.source or self.device.name,
                f"no such file: {binary.local} (the {tool} binary to push to the device)",
                f"binaries.{tool}.local",
            )
        remote, _ = transport.put_content_addressed(binary.local, "bin", sha256_of(binary.local))
        transport.run_check(["chmod", "755", remote], timeout_s=30)
        self.binary_paths[tool] = remote
        return remote

    def _finish(self, job: Job, started_at: str, attempts: list[_Attempt]) -> JobRecord:
        """Pool the processes' latencies into one record; the first process's document
        (load, first inference, memory, eval) stands for the job, with each process summed
        up under `processes`."""
        first = dict(attempts[0].doc)
        latencies: list[int] = []
        summaries = []
        for attempt in attempts:
            own = attempt.doc.get("latencies_ns") or []
            latencies += own
            summaries.append(
                {
                    "n": len(own),
                    "p50_ms": median_ms(own)
                    or (attempt.doc.get("reported_stats") or {}).get("p50_ms"),
                    "load_ms": attempt.doc.get("load_ms"),
                    "stop_reason": attempt.doc.get("stop_reason"),
                    "peak_hwm_kb": (attempt.doc.get("memory_kb") or {})
                    .get("after_run", {})
                    .get("hwm_kb"),
                }
            )
        first.pop("latencies_ns", None)
        if not latencies and first.get("reported_stats"):  # a native tool's summaries
            first["reported_stats"] = pool_reported([a.doc["reported_stats"] for a in attempts])
        first["processes"] = summaries
        metrics = {}
        if first.get("eval") and job.eval_file is not None:
            metrics = eval_metrics(first["eval"]["top_k"], self._labels(job))
        controller = dict(attempts[0].timings)
        controller["run_s_per_process"] = [a.timings.get("run_s") for a in attempts]
        recorded = [
            a.timings["throttle_reasons"] for a in attempts if "throttle_reasons" in a.timings
        ]
        if recorded and any(r is not None for r in recorded):  # any process throttled counts
            controller["throttle_reasons"] = [x for r in recorded for x in (r or [])]
        return self._save(
            job,
            started_at,
            "ok",
            runner=first,
            latencies=tuple(latencies),
            controller=controller,
            eval_metrics=metrics,
        )

    def _labels(self, job: Job) -> Any:
        import numpy as np

        assert job.eval_file is not None
        with np.load(job.eval_file) as data:
            return data[job.eval_labels]

    def _save(
        self,
        job: Job,
        started_at: str,
        status: str,
        *,
        error: str | None = None,
        runner: dict[str, object] | None = None,
        latencies: tuple[int, ...] = (),
        controller: Mapping[str, object] | None = None,
        eval_metrics: dict[str, Any] | None = None,
    ) -> JobRecord:
        facts = self.file_facts.get(job.model_file)
        sha, size = facts if facts else (None, None)
        record = JobRecord(
            run_id=self.store.run_id,
            job_id=job.job_id,
            started_at=started_at,
            finished_at=utc_now(),
            device=self.device.name,
            device_class=self.device.device_class,
            transport=self.device.transport,
            model=job.model,
            variant=job.variant,
            strategy=job.strategy,
            runtime=job.runtime,
            provider=job.provider,
            threads=job.threads,
            status=status,
            error=error,
            model_bytes=size,
            model_sha256=sha,
            target_ci=job.target_ci,
            runner=dict(runner or {}),
            latencies_ns=latencies,
            controller=dict(controller or {}),
            eval_metrics=eval_metrics or {},
            variant_report=job.variant_report,
            variant_params=job.variant_params,
        )
        self.store.write_job(record)
        self.emit(JobEvent("end", self.device.name, job.job_id, status, error or ""))
        return record


def _describe_runner_error(error: Mapping[str, object]) -> str:
    return f"{error.get('type')} while {error.get('stage')}: {error.get('message')}"


def _tail(text: str, lines: int = 5) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


def _exit_text(code: int) -> str:
    """`exited with status 1`, or `was killed by SIGSEGV` (a shell reports 128 + N)."""
    number = -code if code < 0 else code - 128 if 128 < code < 160 else None
    if number is not None:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(number).name} (exit status {code})"
    return f"exited with status {code}"
