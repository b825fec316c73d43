"""The controller's time, injectable: the worker's backoff, the lease's expiry and the
cooldown's wait read it here, so their unit tests run on a clock that only moves when
they wait (tests/unit/test_worker_rounds.py), never against real seconds."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (what a lease's expiry is written in)."""
        ...

    def monotonic(self) -> float:
        """Seconds for measuring a wait; never goes back."""
        ...

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Sleep `seconds`, or until `stop` is set; whether it was."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is None:
            time.sleep(seconds)
            return False
        return stop.wait(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
