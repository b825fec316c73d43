"""Thermal state and throttling: whether a job's numbers were taken on a throttled board.
Pure: the runner's before/after snapshots in, flags and reasons out.

A job is `throttled` when, between its before and after snapshots, a Raspberry Pi's
`vcgencmd get_throttled` shows throttling, capping, under-voltage or the soft temperature
limit (bits 0-3 now, or bits 16-19 newly set since boot), or — when the device file asks
for it with `throttle_min_freq_fraction` — a CPU's clock ended below that fraction of its
maximum.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

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
        raise ValueError(f"not `vcgencmd get_throttled` output: {text.strip()[:80]!r}")
    return int(match[1], 0)


def throttle_flags(value: int) -> list[str]:
    return [label for bit, label in THROTTLE_BITS.items() if value & (1 << bit)]


def throttle_reasons(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    min_freq_fraction: float | None = None,
) -> list[str] | None:
    """Why the job counts as throttled ([] = it did not); None when nothing was recorded."""
    if not before or not after:
        return None
    reasons = []
    if before.get("throttled") and after.get("throttled"):
        try:
            start, end = decode_throttled(before["throttled"]), decode_throttled(after["throttled"])
        except ValueError as exc:
            return [str(exc)]
        now = (start | end) & _NOW_MASK
        newly = (end & ~start) & _SINCE_BOOT_MASK
        if now or newly:
            reasons.append(f"vcgencmd get_throttled: {', '.join(throttle_flags(now | newly))}")
    if min_freq_fraction is not None:
        for cpu, (current, maximum) in sorted((after.get("cpufreq_khz") or {}).items()):
            if maximum and current < min_freq_fraction * maximum:
                reasons.append(
                    f"{cpu} ended at {current / 1000:.0f} MHz, below "
                    f"{min_freq_fraction:.0%} of its {maximum / 1000:.0f} MHz"
                )
    return reasons


def parse_zone_temps(text: str) -> list[float]:
    """`cat /sys/class/thermal/thermal_zone*/temp`: one millidegree value per line."""
    return [int(line) / 1000.0 for line in text.split() if line.lstrip("-").isdigit()]
