"""A job's run through a device's own benchmark binary (benchmark_model,
onnxruntime_perf_test, trtexec): the binary placed once, its argv from the plan, the
device's state read around it, a phone's battery polled beside it, and its output parsed
into the same result document the Python runner writes."""

from __future__ import annotations

import posixpath
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, RunnerFailed
from harness.execute.battery import SHELL_SOURCES, ShellPowerSampler
from harness.execute.python_runner import tail
from harness.execute.session import DeviceSession
from harness.jobs import Job
from harness.native.commands import (
    native_command,
    parse_tool_output,
    profile_document,
    result_document,
    watched_for_memory,
    with_process_memory,
)
from harness.native.op_profiles import parse_benchmark_model_profile, parse_trtexec_profile
from harness.native.parsers import parse_proc_status
from harness.probes.power import power_spec
from harness.probes.thermal import STATE_SCRIPT, parse_state_probe
from harness.records import ControllerNotes
from harness.runner.contract import DeviceStateDoc, PowerDoc, ProfileDoc, ResultDoc
from harness.runner.op_profile import summarize_ort_trace
from harness.transport import Transport, sha256_of


def run(job: Job, session: DeviceSession, notes: ControllerNotes) -> ResultDoc:
    """One run of the job's native tool; its output parsed into a result document."""
    device, transport = session.device, session.transport
    clock = time.perf_counter()
    remote_model, pushed = session.push(job.model_file, "models")
    binary = binary_path(job.tool, session)
    notes["model_pushed"], notes["push_s"] = pushed, time.perf_counter() - clock
    if job.profile:
        return run_profile(job, session, remote_model, binary, notes)
    status_path = session.job_path(job, ".status")  # its folder made by the watching shell
    times_path = session.job_path(job, ".times.json") if job.tool == "trtexec" else None
    argv = job_argv(job, remote_model, binary, stop=job.stop, times_path=times_path)
    before = device_state(session)
    on_shell = device.power is not None and device.power.source in SHELL_SOURCES
    power = power_spec(device) if on_shell else None
    sampler = None
    windows: PowerDoc = {}
    if power is not None:
        sampler = ShellPowerSampler(transport, device.placement.sysfs_root, power["interval_s"])
        sampler.start()
    try:
        if sampler is not None and power is not None and power["idle_s"] > 0:
            # the baseline: the tool not started yet
            windows["idle_window_ns"] = sampler.idle_window(power["idle_s"], power["min_readings"])
        window_start = time.monotonic_ns()
        result = transport.run(
            watched_for_memory(argv, status_path), timeout_s=job.timeout_s, interruptible=True
        )
        windows["timed_window_ns"] = [window_start, time.monotonic_ns()]
    finally:
        sampled = sampler.stop() if sampler is not None else None
    notes["run_s"] = result.duration_s
    after = device_state(session)
    times_json = fetched_text(transport, times_path) if times_path else None
    output = result.stdout + "\n" + result.stderr
    try:
        report = parse_tool_output(job.tool, output, times_json)
        status = parse_proc_status(fetched_text(transport, status_path) or "")
        report = with_process_memory(report, status)
    except RunnerFailed as exc:
        raise RunnerFailed(
            f"job {job.job_id} on '{device.name}': {exc} (exit status {result.exit_code})"
        ) from None
    if result.exit_code != 0:
        raise RunnerFailed(
            f"job {job.job_id} on '{device.name}': {job.tool} exited with status "
            f"{result.exit_code}: {tail(output)}"
        )
    doc = result_document(job.job_id, job.runtime, report, argv)
    doc["state"] = {"before": before, "after": after}
    if power is not None and sampled is not None:
        doc["power"] = {
            "source": power["source"],
            "interval_s": sampler.interval_s if sampler else None,
            "window": "tool run",  # load and warm-up included (rows.py says so)
            "iterations": report.n or 0,
            **windows,
            "samples": sampled["samples"],
            "error": sampled["error"],
        }
    return doc


def fetched_text(transport: Transport, remote: str) -> str | None:
    """A small file the tool or its wrapper left on the device; None when there is none."""
    if not transport.exists(remote):
        return None
    with tempfile.TemporaryDirectory(prefix="harness-fetch-") as folder:
        local = Path(folder) / posixpath.basename(remote)
        transport.get(remote, local)
        return local.read_text(errors="replace")


def scratch_path(session: DeviceSession, job: Job, suffix: str) -> str:
    """A file of the job's own in its folder on the device (the folder made)."""
    path = session.job_path(job, suffix)
    session.transport.make_folder(posixpath.dirname(path))
    return path


def job_argv(job: Job, remote_model: str, binary: str, **options: Any) -> list[str]:
    """The tool's argv for this job's settings, with `options` (native_command's)."""
    return native_command(
        job.tool, binary=binary, model_path=remote_model, provider=job.provider,
        threads=job.threads, warmup=job.warmup, cores=job.cores, **options,
    )  # fmt: skip


def run_profile(
    job: Job, session: DeviceSession, remote_model: str, binary: str, notes: ControllerNotes
) -> ResultDoc:
    """A profile job: the tool with its own per-layer profiler on for the profile's runs,
    in a process of its own; its profile read into the Python runner's shape."""
    assert job.profile is not None
    transport, device = session.transport, session.device
    runs, top_n = int(job.profile["runs"]), int(job.profile["top_n"])
    trace_prefix = None
    if job.tool == "onnxruntime_perf_test":
        trace_prefix = scratch_path(session, job, ".ort-profile")
    argv = job_argv(
        job, remote_model, binary, stop={"iterations": runs}, profile=True,
        profile_path=trace_prefix,
    )  # fmt: skip
    result = transport.run(argv, timeout_s=job.timeout_s, interruptible=True)
    notes["run_s"] = result.duration_s
    output = result.stdout + "\n" + result.stderr
    where = f"job {job.job_id} on '{device.name}'"
    if result.exit_code != 0:
        raise RunnerFailed(
            f"{where}: {job.tool} exited with status {result.exit_code}: {tail(output)}"
        )
    try:
        if trace_prefix is not None:
            profile = perf_test_trace(transport, trace_prefix, runs, top_n)
        elif job.tool == "benchmark_model":
            profile = parse_benchmark_model_profile(output, top_n)
        else:
            profile = parse_trtexec_profile(output, top_n)
    except RunnerFailed as exc:
        raise RunnerFailed(f"{where}: {exc}") from None
    return profile_document(job.job_id, job.runtime, job.tool, profile, argv)


def perf_test_trace(transport: Transport, prefix: str, runs: int, top_n: int) -> ProfileDoc:
    """onnxruntime_perf_test's `-p` trace (onnxruntime's profiler names it
    `<prefix>_<timestamp>.json`), fetched and summarised as the runner does its own."""
    folder, stem = posixpath.split(prefix)
    listed = transport.run_check(["ls", "-1", folder], timeout_s=30).stdout.split()
    traces = sorted(name for name in listed if name.startswith(stem) and name.endswith(".json"))
    if not traces:
        raise RunnerFailed(
            f"onnxruntime_perf_test wrote no profile trace '{stem}*.json' in {folder}: does "
            "this build take -p (`onnxruntime_perf_test -h` lists it)? Or set profile = false"
        )
    with tempfile.TemporaryDirectory(prefix="harness-trace-") as scratch:
        local = Path(scratch) / "trace.json"
        transport.get(posixpath.join(folder, traces[-1]), local)
        return summarize_ort_trace(str(local), runs, top_n)


def device_state(session: DeviceSession) -> DeviceStateDoc:
    """Thermal zones, a Jetson's power mode and a phone's charging state, read through
    the transport around a native tool's run."""
    result = session.transport.run(
        ["sh", "-c", STATE_SCRIPT, "state", session.device.placement.sysfs_root], timeout_s=30
    )
    return parse_state_probe(result.stdout)


def binary_path(tool: str, session: DeviceSession) -> str:
    """The tool's path on the device: as configured, or pushed once by content hash
    (hashed, checked and made executable once per run on this device)."""
    if tool in session.binary_paths:
        return session.binary_paths[tool]
    device = session.device
    binary = next((b for name, b in device.placement.binaries.items() if name == tool), None)
    if binary is None:
        raise ConfigError(
            device.source or device.name,
            f"device '{device.name}' has no {tool}: add [placement.binaries.{tool}] with "
            "`local` (a file on this machine, pushed) or `device` (a path on the device)",
            f"placement.binaries.{tool}",
        )
    if binary.device is not None:
        session.binary_paths[tool] = binary.device
        return binary.device
    assert binary.local is not None
    if not binary.local.is_file():
        raise ConfigError(
            device.source or device.name,
            f"no such file: {binary.local} (the {tool} binary to push to the device)",
            f"placement.binaries.{tool}.local",
        )
    remote, _ = session.transport.put_content_addressed(
        binary.local, "bin", sha256_of(binary.local)
    )
    session.transport.run_check(["chmod", "755", remote], timeout_s=30)
    session.binary_paths[tool] = remote
    return remote
