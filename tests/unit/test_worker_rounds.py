"""The device worker's own logic — rounds of processes, retries with backoff, quarantine,
throttle reruns, the lease's refresh — on a scripted device and a clock that moves only
when waited on (tests/unit/scripted_device.py): each test runs in well under a second.
The same behaviours over a real sshd are in tests/integration/test_faults.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from scripted_device import (
    WORKDIR,
    FakeClock,
    Reply,
    ScriptedTransport,
    healthy_device,
    is_runner_job,
    result_document,
)

from harness.config import Device, load_device
from harness.errors import DeviceUnreachable
from harness.jobs import Job
from harness.lease import LEASE_DIR, LEASE_FILE
from harness.records import JobRecord
from harness.store import RunStore
from harness.transport.base import sha256_of
from harness.worker import DeviceWorker, JobEvent

LEASE_PATH = f"{WORKDIR}/{LEASE_DIR}/{LEASE_FILE}"


def board(tmp_path: Path, retry: str = "", thermal: str = "") -> Device:
    """A board whose runner is scripted per command: exec-per-job, whatever the suite's
    HARNESS_RUNNER_MODE (the persistent runner's own faults are tested on real devices,
    tests/integration/test_persistent_runner.py)."""
    text = 'transport = "ssh"\n[connection]\nhost = "10.200.0.2"\nuser = "pi"\n'
    text += '[placement]\nrunner_mode = "exec"\n'
    text += f"[retry]\nlease_wait_s = 0\n{retry}\n[thermal]\n{thermal}\n"
    path = tmp_path / "pi.toml"
    path.write_text(text)
    return load_device(path)


def job(tmp_path: Path, variant: str, processes: int = 1) -> Job:
    model = tmp_path / f"{variant}.onnx"
    model.write_bytes(variant.encode())
    return Job(
        job_id=f"pi.net.{variant}.cpu.t1", device="pi", model="net", variant=variant,
        strategy=variant, model_file=model, runtime="onnxruntime",
        provider="CPUExecutionProvider", threads=1, warmup=1, stop={"iterations": 3},
        processes=processes, inject_slowdown=0.0, timeout_s=60.0, seed=0, dims={},
        input_file=None,
    )  # fmt: skip


class Bench:
    """A worker on a scripted board: `jobs` run; `answer(argv)` replies to the runner's
    calls (the board's health check is always answered)."""

    def __init__(
        self, tmp_path: Path, device: Device, jobs: list[Job], answer: Callable[[list[str]], Reply]
    ) -> None:
        self.clock = FakeClock()
        self.events: list[JobEvent] = []

        def script(argv: list[str]) -> Reply:
            return answer(argv) if is_runner_job(argv) else healthy_device(argv)

        self.transport = ScriptedTransport(device.name, script)
        self.store = RunStore.create(tmp_path / "runs", "unit")
        facts = {j.model_file: (sha256_of(j.model_file), j.model_file.stat().st_size) for j in jobs}
        self.worker = DeviceWorker(
            device, {device.name: device}, self.store, facts, self.events.append,
            threading.Event(), self.transport, self.clock,
        )  # fmt: skip
        self.jobs = jobs

    def run(self) -> dict[str, JobRecord]:
        records = self.worker.run(self.jobs)
        assert {r.job_id for r in self.store.records()} == {r.job_id for r in records}
        return {r.variant: r for r in records}


def test_processes_run_in_rounds_over_all_jobs_and_pool_into_one_record(tmp_path: Path) -> None:
    jobs = [job(tmp_path, "fp32", processes=3), job(tmp_path, "int8", processes=3)]
    bench = Bench(tmp_path, board(tmp_path), jobs, lambda argv: result_document([2_000_000] * 4))
    records = bench.run()
    assert bench.transport.runner_calls() == [j.job_id for j in jobs] * 3
    for record in records.values():
        assert record.status == "ok" and len(record.latencies_ns) == 12
        assert len(record.runner["processes"]) == 3
    # the lease was taken, and released at the end with this run's folder on the device
    assert bench.transport.commands[0][0] == "mkdir" and LEASE_PATH not in bench.transport.files
    assert [e.kind for e in bench.events].count("end") == 2


def test_a_link_fault_is_retried_after_the_backoff_and_counted(tmp_path: Path) -> None:
    calls = []

    def answer(argv: list[str]) -> Reply:
        calls.append(argv)
        if len(calls) == 1:
            return DeviceUnreachable("pi", "connection reset")
        return result_document([1_000_000] * 5)

    device = board(tmp_path, retry="times = 2\nbackoff_s = 3")
    bench = Bench(tmp_path, device, [job(tmp_path, "fp32")], answer)
    [record] = bench.run().values()
    assert record.status == "ok" and record.controller["attempts"] == 2
    assert bench.clock.waits == [3.0]  # one backoff, of backoff_s
    assert [e.kind for e in bench.events if e.kind == "retry"] == ["retry"]
    # before the retry, the job's processes that may still run there were killed
    kill = [argv for argv in bench.transport.commands if argv[-1].endswith(".")]
    assert kill and "pi.net.fp32.cpu.t1" in kill[0][-1]


def test_a_device_that_stays_down_is_quarantined_and_the_rest_skipped(tmp_path: Path) -> None:
    def answer(argv: list[str]) -> Reply:
        return DeviceUnreachable("pi", "no route to host")

    device = board(tmp_path, retry="times = 2\nbackoff_s = 1.5")
    jobs = [job(tmp_path, "fp32"), job(tmp_path, "int8"), job(tmp_path, "fp16")]
    bench = Bench(tmp_path, device, jobs, answer)
    records = bench.run()
    assert bench.clock.waits == [1.5, 3.0]  # backoff_s, then twice it
    lost = records["fp32"]
    assert lost.status == "skipped" and "lost mid-job" in (lost.error or "")
    assert lost.controller == {"lost": True, "attempts": 3}
    for variant in ("int8", "fp16"):  # never tried: the device is quarantined
        assert records[variant].status == "skipped"
        assert "quarantined for this run: " in (records[variant].error or "")


def test_the_backoff_doubles_between_tries(tmp_path: Path) -> None:
    device = board(tmp_path, retry="times = 3\nbackoff_s = 2")
    bench = Bench(tmp_path, device, [job(tmp_path, "fp32")],
                  lambda argv: DeviceUnreachable("pi", "timed out"))  # fmt: skip
    bench.run()
    assert bench.clock.waits == [2.0, 4.0, 8.0]
    assert bench.transport.runner_calls() == ["pi.net.fp32.cpu.t1"] * 4


def test_a_throttled_process_is_run_again_as_the_device_allows(tmp_path: Path) -> None:
    results = iter([result_document([3_000_000] * 3, "throttled=0x40004"),
                    result_document([1_000_000] * 3)])  # fmt: skip
    device = board(tmp_path, thermal="rerun_throttled = 2")
    bench = Bench(tmp_path, device, [job(tmp_path, "fp32")], lambda argv: next(results))
    [record] = bench.run().values()
    assert bench.transport.runner_calls() == ["pi.net.fp32.cpu.t1"] * 2
    assert record.latencies_ns == (1_000_000,) * 3  # the throttled process's are not kept
    assert record.controller["reruns_after_throttling"] == 1
    assert [e.message for e in bench.events if e.kind == "rerun"] == ["throttled"]


def test_a_throttled_process_is_kept_when_no_rerun_is_allowed(tmp_path: Path) -> None:
    device = board(tmp_path)  # rerun_throttled = 0
    bench = Bench(tmp_path, device, [job(tmp_path, "fp32")],
                  lambda argv: result_document([3_000_000] * 3, "throttled=0x40004"))  # fmt: skip
    [record] = bench.run().values()
    assert record.status == "ok" and bench.transport.runner_calls() == ["pi.net.fp32.cpu.t1"]
    assert record.controller["throttle_reasons"]


def test_the_lease_is_refreshed_once_half_its_time_is_gone(tmp_path: Path) -> None:
    bench: Bench

    def answer(argv: list[str]) -> Reply:
        bench.clock.advance(bench.worker.lease_ttl_s * 0.3)  # each process takes 30 % of it
        return result_document([1_000_000] * 3)

    jobs = [job(tmp_path, "fp32", processes=2), job(tmp_path, "int8", processes=2)]
    bench = Bench(tmp_path, board(tmp_path), jobs, answer)
    expiries = []
    write = bench.transport._put_bytes

    def watch(data: bytes, remote: str) -> None:
        if remote == LEASE_PATH:
            expiries.append(json.loads(data)["expires_at"])
        write(data, remote)

    bench.transport._put_bytes = watch  # type: ignore[method-assign]
    records = bench.run()
    assert all(r.status == "ok" for r in records.values())
    # taken, then pushed on before the 3rd process (60 % gone) : 4 processes, 1 refresh
    assert len(expiries) == 2 and expiries[1] > expiries[0]
    assert expiries[1] - expiries[0] == pytest.approx(bench.worker.lease_ttl_s * 0.6)


def test_a_lease_taken_over_by_another_controller_stops_the_device(tmp_path: Path) -> None:
    bench: Bench

    def answer(argv: list[str]) -> Reply:
        bench.clock.advance(bench.worker.lease_ttl_s * 0.6)
        held = json.loads(bench.transport.files[LEASE_PATH])
        bench.transport.files[LEASE_PATH] = json.dumps({**held, "token": "another"}).encode()
        return result_document([1_000_000] * 3)

    jobs = [job(tmp_path, "fp32"), job(tmp_path, "int8")]
    bench = Bench(tmp_path, board(tmp_path), jobs, answer)
    records = bench.run()
    assert records["fp32"].status == "ok"  # finished before the refresh found it lost
    assert records["int8"].status == "skipped"
    assert "our reservation was lost" in (records["int8"].error or "")
    assert bench.transport.runner_calls() == ["pi.net.fp32.cpu.t1"]
    # the other controller's lease is left where it is
    assert json.loads(bench.transport.files[LEASE_PATH])["token"] == "another"
