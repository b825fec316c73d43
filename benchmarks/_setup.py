"""What the benchmark scripts share: a scratch workspace with the local and a loopback
SSH device, and a way to run jobs through the real scheduler."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from device_files import local_device_file  # noqa: E402
from sshd_server import loopback_sshd  # noqa: E402

from harness.config import Inputs, Measure, Plan, RuntimeSettings, load_inventory, load_manifest  # noqa: E402
from harness.execute.session import RUNNER_MODE_VARIABLE  # noqa: E402
from harness.plan_jobs import expand_plan  # noqa: E402
from harness.records import JobRecord  # noqa: E402
from harness.scheduler import run_jobs  # noqa: E402
from harness.store import RunStore  # noqa: E402


@dataclass
class Bench:
    workspace: Path
    inventory: dict

    def run(
        self,
        device: str,
        model: str,
        iterations: int,
        threads: int = 1,
        warmup: int = 20,
        processes: int = 1,
        runner_mode: str | None = None,
    ) -> JobRecord:
        """One job through the real scheduler and transport, in a fresh run directory (a
        device session of its own); `runner_mode` "persistent" or "exec", else the default."""
        manifest = load_manifest(ROOT / "models" / f"{model}.toml")
        plan = Plan(
            name="bench",
            models=[model],
            variants=["fp32"],  # the base model: the manifests declare compressed ones too
            measure=Measure(
                warmup=warmup, iterations=iterations, timeout_s=600, processes=processes
            ),
            runtime=RuntimeSettings(threads=[threads]),
            inputs=Inputs(dims={"batch": 1}),
        )
        jobs = expand_plan(plan, [self.inventory[device]], [manifest])
        store = RunStore.create(self.workspace / "runs", "bench")
        previous = os.environ.get(RUNNER_MODE_VARIABLE)
        os.environ[RUNNER_MODE_VARIABLE] = runner_mode or previous or ""
        try:
            [record] = run_jobs(jobs, self.inventory, store)
        finally:
            if previous is None:
                del os.environ[RUNNER_MODE_VARIABLE]
            else:
                os.environ[RUNNER_MODE_VARIABLE] = previous
        if record.status != "ok":
            raise RuntimeError(f"{record.job_id}: {record.status}: {record.error}")
        return record

    def exec_s(self, device: str, argv: list[str], repeat: int = 5) -> float:
        """Median wall time of a bare command on the device over an open connection."""
        import statistics
        import time

        from harness.transport import open_transport

        with open_transport(self.inventory[device], self.inventory) as transport:
            transport.open()
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                transport.run_check(argv, timeout_s=30)
                times.append(time.perf_counter() - start)
        return statistics.median(times)


@contextmanager
def bench_devices(tmp: Path) -> Iterator[Bench]:
    devices = tmp / "devices"
    devices.mkdir()
    (devices / "local.toml").write_text(local_device_file(tmp / "local-wd"))
    (tmp / "sshd").mkdir()
    with loopback_sshd(tmp / "sshd") as server:
        (devices / "loopback.toml").write_text(server.device_toml("loopback", tmp / "ssh-wd"))
        yield Bench(tmp, load_inventory(devices))
