"""Thermal state and throttling: whether a job's numbers were taken on a throttled board.
Pure: the runner's before/after snapshots in, flags and reasons out.

A job is `throttled` when, between its before and after snapshots, a Raspberry Pi's
`vcgencmd get_throttled` shows throttling, capping, under-voltage or the soft temperature
limit (bits 0-3 now, or bits 16-19 newly set since boot), or — when the device file asks
for it with `throttle_min_freq_fraction` — a CPU's clock ended below that fraction of its
maximum, or a Jetson's power mode (`nvpmodel -q`) changed during the job.

Also the readers of the other state tools: `nvpmodel -q` and a phone's `dumpsys battery`.
"""

from __future__ import annotations

import re
from typing import Any

from harness.errors import ParseError
from harness.runner.contract import DeviceStateDoc
from harness.runner.result_views import DeviceState

# Raspberry Pi documentation, "vcgencmd get_throttled" (raspberrypi.com/documentation/
# computers/os.html#get_throttled); recorded example in tests/fixtures/vcgencmd/.
THROTTLE_BITS = {
    0: "under-voltage",
    1: "ARM frequency capped",
    2: "throttled",
    3: "soft temperature limit active",
    16: "under-voltage has occurred",
    17: "ARM frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}
_NOW_MASK = 0xF
_SINCE_BOOT_MASK = 0xF0000


def decode_throttled(text: str) -> int:
    """`throttled=0x50005` -> 0x50005."""
    match = re.fullmatch(r"\s*throttled=(0x[0-9a-fA-F]+|\d+)\s*", text)
    if not match:
        raise ParseError(f"not `vcgencmd get_throttled` output: {text.strip()[:80]!r}")
    return int(match[1], 0)


def throttle_flags(value: int) -> list[str]:
    return [label for bit, label in THROTTLE_BITS.items() if value & (1 << bit)]


def throttle_reasons(
    before: DeviceState, after: DeviceState, min_freq_fraction: float | None = None
) -> list[str] | None:
    """Why the job counts as throttled ([] = it did not); None when nothing was recorded."""
    if not before.recorded or not after.recorded:
        return None
    reasons = []
    if before.throttled and after.throttled:
        try:
            start, end = decode_throttled(before.throttled), decode_throttled(after.throttled)
        except ParseError as exc:
            return [str(exc)]
        now = (start | end) & _NOW_MASK
        newly = (end & ~start) & _SINCE_BOOT_MASK
        if now or newly:
            reasons.append(f"vcgencmd get_throttled: {', '.join(throttle_flags(now | newly))}")
    mode_before, mode_after = nvpmodel_mode(before.nvpmodel), nvpmodel_mode(after.nvpmodel)
    if mode_before != mode_after:
        reasons.append(f"nvpmodel power mode changed from {mode_before} to {mode_after}")
    if min_freq_fraction is not None:
        for cpu, (current, maximum) in sorted(after.cpufreq_khz.items()):
            if maximum and current < min_freq_fraction * maximum:
                reasons.append(
                    f"{cpu} ended at {current / 1000:.0f} MHz, below "
                    f"{min_freq_fraction:.0%} of its {maximum / 1000:.0f} MHz"
                )
    return reasons


def parse_zone_temps(text: str) -> list[float]:
    """`cat /sys/class/thermal/thermal_zone*/temp`: one millidegree value per line."""
    return [int(line) / 1000.0 for line in text.split() if line.lstrip("-").isdigit()]


def nvpmodel_mode(text: str | None) -> str | None:
    """The mode name of `nvpmodel -q` ("NV Power Mode: MAXN" then the mode id on the next
    line, the format jetson_stats' jtop/core/nvpmodel.py reads), or None."""
    match = re.search(r"NV Power Mode:\s*(\S+)", text or "")
    return match[1] if match else None


# BatteryManager.BATTERY_STATUS_* as `dumpsys battery` prints them (AOSP BatteryService)
BATTERY_STATUS = {1: "unknown", 2: "charging", 3: "discharging", 4: "not charging", 5: "full"}


def parse_dumpsys_battery(text: str) -> dict[str, Any]:
    """`dumpsys battery`: charging status, which supplies are plugged, level and the
    battery temperature (tenths of °C there)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if "status" not in fields:
        raise ParseError(f"not `dumpsys battery` output: {text.strip()[:80]!r}")
    status = int(fields["status"]) if fields["status"].isdigit() else None
    plugged = [
        supply
        for supply in ("ac", "usb", "wireless", "dock")
        if fields.get(f"{supply} powered") == "true"
    ]
    return {
        "status": BATTERY_STATUS.get(status or 0, fields["status"]),
        "plugged": plugged,
        "level": int(fields["level"]) if fields.get("level", "").isdigit() else None,
        "temperature_c": int(fields["temperature"]) / 10
        if fields.get("temperature", "").lstrip("-").isdigit()
        else None,
    }


# The device state of a native-tool job, read by the controller through the transport
# before and after the tool (phones have no Python runner to take its snapshots). A fixed
# script: the sysfs root is its one argument, never pasted into it.
STATE_SCRIPT = (
    'for z in "$1"/class/thermal/thermal_zone*; do '
    '[ -r "$z/temp" ] && echo "zone $(basename "$z") $(cat "$z/temp")"; done; '
    'command -v nvpmodel >/dev/null 2>&1 && { echo "--nvpmodel--"; nvpmodel -q 2>&1; }; '
    'command -v dumpsys >/dev/null 2>&1 && { echo "--battery--"; dumpsys battery 2>&1; }; '
    "true"
)


def parse_state_probe(text: str) -> DeviceStateDoc:
    """STATE_SCRIPT's output -> a state snapshot shaped like the runner's (`thermal_c`,
    `nvpmodel`) plus `battery` (parse_dumpsys_battery) where the device is a phone."""
    section, zones = "zones", {}
    sections: dict[str, list[str]] = {"nvpmodel": [], "battery": []}
    for line in text.splitlines():
        if line in ("--nvpmodel--", "--battery--"):
            section = line.strip("-")
        elif section == "zones":
            parts = line.split()
            if len(parts) == 3 and parts[0] == "zone" and parts[2].lstrip("-").isdigit():
                zones[parts[1]] = int(parts[2]) / 1000.0
        else:
            sections[section].append(line)
    state: DeviceStateDoc = {"thermal_c": zones}
    if sections["nvpmodel"]:
        state["nvpmodel"] = "\n".join(sections["nvpmodel"])
    if sections["battery"]:
        try:
            state["battery"] = parse_dumpsys_battery("\n".join(sections["battery"]))
        except ParseError as exc:
            state["battery"] = {"error": str(exc)}
    return state
