"""Throttling verdicts from the runner's before/after snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import ParseError
from harness.probes.thermal import (
    decode_throttled,
    nvpmodel_mode,
    parse_dumpsys_battery,
    parse_state_probe,
    parse_zone_temps,
    throttle_flags,
    throttle_reasons,
)
from harness.runner.result_document import ResultDocument
from harness.runner.result_views import DeviceState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vcgencmd"
BATTERY = Path(__file__).resolve().parents[1] / "fixtures" / "dumpsys_battery"


def test_recorded_get_throttled_decodes() -> None:
    case = json.loads((FIXTURES / "expected.json").read_text())["get_throttled_0x50005.txt"]
    value = decode_throttled((FIXTURES / "get_throttled_0x50005.txt").read_text())
    assert case["source"] and value == case["expected"]["value"]
    assert throttle_flags(value) == case["expected"]["flags"]
    with pytest.raises(ParseError, match="not `vcgencmd get_throttled` output"):
        decode_throttled("VCHI initialization failed")


def state(throttled: str | None = None, nvpmodel: str | None = None, **freqs: tuple[int, int]
          ) -> DeviceState:  # fmt: skip
    """A runner's state snapshot, read as the controller reads it."""
    raw = {"thermal_c": {}, "cpufreq_khz": {k: list(v) for k, v in freqs.items()},
           "throttled": throttled, "nvpmodel": nvpmodel}  # fmt: skip
    return ResultDocument({"state": {"before": raw}}).state("before")


def test_throttle_reasons() -> None:
    assert throttle_reasons(DeviceState(), state()) is None  # none recorded: unknown, not "no"
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


@pytest.mark.parametrize("name", ["samsung_usb_charging.txt", "console_ac_discharged.txt"])
def test_recorded_dumpsys_battery(name: str) -> None:
    case = json.loads((BATTERY / "expected.json").read_text())[name]
    assert case["source"]
    assert parse_dumpsys_battery((BATTERY / name).read_text()) == case["expected"]
    with pytest.raises(ParseError, match="not `dumpsys battery` output"):
        parse_dumpsys_battery("Can't find service: battery")


def test_power_mode_of_nvpmodel_and_its_change_during_a_job() -> None:
    # the format jetson_stats reads (rbonghi/jetson_stats, jtop/core/nvpmodel.py): the mode
    # name, then its id on the next line; newer boards print a fan mode line first
    assert nvpmodel_mode("NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n") == "MAXN"
    assert nvpmodel_mode("NVPM ERROR: failed to read PARAM") is None
    assert nvpmodel_mode(None) is None
    before = state(nvpmodel="NV Power Mode: MAXN\n0")
    after = state(nvpmodel="NV Power Mode: 15W\n1")
    assert throttle_reasons(before, before) == []
    assert throttle_reasons(before, after) == ["nvpmodel power mode changed from MAXN to 15W"]


def test_state_probe_of_a_phone() -> None:
    battery = (BATTERY / "samsung_usb_charging.txt").read_text()
    text = "zone thermal_zone0 41000\nzone thermal_zone7 38500\n--battery--\n" + battery
    probed = parse_state_probe(text)
    assert probed["thermal_c"] == {"thermal_zone0": 41.0, "thermal_zone7": 38.5}
    assert probed["battery"]["status"] == "charging" and "nvpmodel" not in probed
    assert parse_state_probe("--battery--\ncmd: Can't find service")["battery"]["error"]
    jetson = parse_state_probe("--nvpmodel--\nNV Power Mode: MAXN\n0")
    assert jetson == {"thermal_c": {}, "nvpmodel": "NV Power Mode: MAXN\n0"}
