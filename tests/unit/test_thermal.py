"""Throttling verdicts from the runner's before/after snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.probes.thermal import (
    decode_throttled,
    parse_zone_temps,
    throttle_flags,
    throttle_reasons,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vcgencmd"


def test_recorded_get_throttled_decodes() -> None:
    case = json.loads((FIXTURES / "expected.json").read_text())["get_throttled_0x50005.txt"]
    value = decode_throttled((FIXTURES / "get_throttled_0x50005.txt").read_text())
    assert case["source"] and value == case["expected"]["value"]
    assert throttle_flags(value) == case["expected"]["flags"]
    with pytest.raises(ValueError, match="not `vcgencmd get_throttled` output"):
        decode_throttled("VCHI initialization failed")


def state(throttled: str | None = None, **freqs: tuple[int, int]) -> dict:
    return {
        "thermal_c": {},
        "cpufreq_khz": {k: list(v) for k, v in freqs.items()},
        "throttled": throttled,
    }


def test_throttle_reasons() -> None:
    assert throttle_reasons(None, state()) is None  # nothing recorded: unknown, not "no"
    assert throttle_reasons(state(), state()) == []  # not a Pi, no frequency rule
    assert throttle_reasons(state("throttled=0x0"), state("throttled=0x0")) == []
    # throttling happened during the job: sticky bit 18 newly set
    [reason] = throttle_reasons(state("throttled=0x0"), state("throttled=0x40000"))
    assert "throttling has occurred" in reason
    # already set since boot before the job, and nothing now: not this job's doing
    assert throttle_reasons(state("throttled=0x50000"), state("throttled=0x50000")) == []
    assert throttle_reasons(state("throttled=0x50000"), state("throttled=0x50005"))
    slow = state(cpu0=(2_400_000, 2_400_000), cpu1=(600_000, 2_400_000))
    assert throttle_reasons(state(), slow) == []  # the rule is off unless configured
    [reason] = throttle_reasons(state(), slow, min_freq_fraction=0.5)
    assert reason.startswith("cpu1 ended at 600 MHz, below 50% of its 2400 MHz")


def test_zone_temperatures() -> None:
    assert parse_zone_temps("45000\n51250\n-1000\n") == [45.0, 51.25, -1.0]
    assert parse_zone_temps("") == []
