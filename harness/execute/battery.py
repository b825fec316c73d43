"""Power beside a native tool: phones have no Python for harness/runner/sampler.py, so the
controller polls the battery's sysfs files through the transport while the tool runs.

The readings are the same raw dicts sampler.py writes for `android-battery`, stamped with
the controller's monotonic clock; the timed window is the tool's whole run (model load and
warm-up included: benchmark_model and onnxruntime_perf_test do not say when their timed
loop starts), so the energy per inference is an upper bound and the record says so.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from harness.errors import HarnessError
from harness.runner.contract import SampledDoc
from harness.transport.base import Transport

# the sources a shell can read without the device's Python
SHELL_SOURCES = ("android-battery",)
MIN_INTERVAL_S = 0.2  # one adb/ssh round trip per reading: faster would only queue
BATTERY_SCRIPT = (
    'b="$1"/class/power_supply/battery; '
    'echo "$(cat "$b/current_now") $(cat "$b/voltage_now") $(cat "$b/status")"'
)


class ShellPowerSampler:
    """Polls the battery through `transport` in a thread, from `start` until `stop`."""

    def __init__(self, transport: Transport, sysfs_root: str, interval_s: float) -> None:
        self.transport = transport
        self.sysfs_root = sysfs_root
        self.interval_s = max(MIN_INTERVAL_S, interval_s)
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._poll, name="power-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def idle_window(self, idle_s: float, min_readings: int) -> list[int]:
        """[start, end] in monotonic ns: from the first reading (so none lands before the
        window), at least `idle_s` long and held open until `min_readings` readings are
        inside it, however slow the link makes the polls. Gives up (and the record says
        the window held too few) when the readings stop coming."""
        give_up = time.monotonic() + idle_s + (min_readings + 2) * self.interval_s + 10
        with self._arrived:
            self._arrived.wait_for(lambda: self.samples or self.errors, give_up - time.monotonic())
            if not self.samples:
                now = time.monotonic_ns()
                return [now, now]
            start = int(self.samples[0]["t_ns"])
            self._arrived.wait_for(
                lambda: len(self.samples) >= min_readings, give_up - time.monotonic()
            )
        remaining_s = idle_s - (time.monotonic_ns() - start) / 1e9
        if remaining_s > 0:
            self._stop.wait(remaining_s)
        return [start, time.monotonic_ns()]

    def stop(self) -> SampledDoc:
        """One more reading after the window, then the raw samples (and the first error)."""
        time.sleep(self.interval_s)
        self._stop.set()
        self._thread.join()
        return {"samples": self.samples, "error": self.errors[0] if self.errors else None}

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                reading = self._read()
                with self._arrived:
                    self.samples.append(reading)
                    self._arrived.notify_all()
            except (HarnessError, ValueError) as exc:
                with self._arrived:
                    self.errors.append(f"reading the battery failed: {exc}")
                    self._arrived.notify_all()
            self._stop.wait(self.interval_s)

    def _read(self) -> dict[str, Any]:
        """One reading, as sampler.py's `android-battery` source gives it."""
        stamp = time.monotonic_ns()
        result = self.transport.run(
            ["sh", "-c", BATTERY_SCRIPT, "power", self.sysfs_root], timeout_s=10
        )
        fields = result.stdout.split(None, 2)
        if len(fields) != 3:
            raise ValueError(f"unreadable output {result.stdout.strip()!r}")
        current, voltage, status = fields
        return {
            "t_ns": stamp,
            "raw": {"current_now": current, "voltage_now": voltage, "status": status.strip()},
        }
