"""Power: the parsers of each source's raw readings, and energy per inference. Pure.

The sampler on the device (harness/runner/sampler.py) records each source's raw reading
with a `time.monotonic_ns()` timestamp, the clock the runner stamps its idle and timed
windows with; everything here turns those readings into a power trace (seconds, watts)
and integrates it over the windows:

    idle_power_w = mean power over the idle window (before the model is loaded)
    avg_power_w  = mean power over the timed window
    energy_mj    = ∫ (P − idle_power_w) dt over the timed window / iterations, in mJ

Sources: `rapl` (Intel RAPL powercap counters, µJ, wrapping at max_energy_range_uj),
`ina3221` (hwmon sysfs: mV and mA per channel, or µW on the older ina3221x driver),
`tegrastats` (Jetson rail lines), `pi5-pmic` (`vcgencmd pmic_read_adc`), `android-battery`
(current_now µA × voltage_now µV), `nvidia-smi` (`--query-gpu=…,power.draw,… --format=csv`,
summed over GPUs), `command` (an external meter printing watts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from harness.config import Device
from harness.errors import ParseError
from harness.runner.contract import PowerSpec

SOURCES = (
    "rapl", "ina3221", "tegrastats", "pi5-pmic", "android-battery", "nvidia-smi", "command",
)  # fmt: skip
# slow sources (nvidia-smi takes tens of ms a call); others 50 ms
DEFAULT_INTERVAL_MS = {"pi5-pmic": 1000, "command": 1000, "nvidia-smi": 200}
FALLBACK_INTERVAL_MS = 50


@dataclass(frozen=True)
class TegraReading:
    total_w: float | None  # None: the board prints no rails
    total_from: str  # "VDD_IN", "POM_5V_IN", "sum of rails" or "no rails"
    rails_w: dict[str, float]
    temps_c: dict[str, float]


# --------------------------------------------------------------------------- tegrastats

_TEGRA_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(mW)?/(\d+)(?:mW)?(?:/\d+(?:mW)?)*(?=\s|$)")
_TEGRA_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_TEGRA_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
_TEGRA_NOT_RAILS = {"RAM", "SWAP", "IRAM", "EMC_FREQ", "GR3D_FREQ"}


def parse_tegrastats(line: str) -> TegraReading:
    """One tegrastats line. Rails are `NAME now/avg` in mW (units written as `mW` from
    L4T r35 on, bare before; some boards print more values after the average — the first
    is the reading). The board's input power is VDD_IN (TX1/TX2/Xavier NX/Orin Nano) or
    POM_5V_IN (Nano); boards without an input rail (AGX Xavier, AGX Orin) sum their rails.
    A board that prints no rails (old L4T, rails off) gives temperatures and no power."""
    if not re.search(r"\bRAM \d+/\d+", line):
        raise ParseError(f"tegrastats: not a tegrastats line: {line.strip()[:200]!r}")
    rails = {
        name: int(now) / 1000.0
        for name, now, _unit, _avg in _TEGRA_RAIL.findall(line)
        if name not in _TEGRA_NOT_RAILS
    }
    temps = {name: float(value) for name, value in _TEGRA_TEMP.findall(line)}
    if not rails:
        return TegraReading(None, "no rails", rails, temps)
    for name in _TEGRA_INPUT_RAILS:
        if name in rails:
            return TegraReading(rails[name], name, rails, temps)
    return TegraReading(sum(rails.values()), "sum of rails", rails, temps)


# --------------------------------------------------------------------------- Pi 5 PMIC

_PMIC_LINE = re.compile(r"^\s*(\S+)_([AV]) (?:current|volt)\(\d+\)=([-+\d.eE]+|nan)([AV])\s*$")


def parse_pmic_read_adc(text: str) -> dict[str, float]:
    """`vcgencmd pmic_read_adc`: `<RAIL>_A current(n)=…A` and `<RAIL>_V volt(m)=…V` lines;
    a rail's power is V × I where both exist (EXT5V and BATT have a voltage only; the
    indices in brackets do not pair rails, the names do). Returns watts per rail."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        match = _PMIC_LINE.match(raw)
        if not match:
            raise ParseError(f"pmic_read_adc: cannot read the line {raw.strip()!r}")
        name, kind, value, _unit = match.groups()
        (amps if kind == "A" else volts)[name] = float(value)
    rails = {name: amps[name] * volts[name] for name in amps if name in volts}
    if not rails:
        raise ParseError(
            "pmic_read_adc: no rail with both current and voltage; is this a Raspberry Pi 5? "
            "(a Pi 4 or older has no power sensor: use an external meter, power = 'command')"
        )
    return rails


# --------------------------------------------------------------------------- traces


def power_trace(source: str, samples: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """(seconds on the monotonic clock, watts) from the sampler's raw samples."""
    if source == "rapl":
        return _rapl_trace(samples)
    trace = []
    for sample in samples:
        watts = _instant_watts(source, sample["raw"])
        if watts is not None:
            trace.append((sample["t_ns"] / 1e9, watts))
    return trace


def _instant_watts(source: str, raw: Any) -> float | None:
    if source == "tegrastats":
        reading = parse_tegrastats(str(raw))
        if reading.total_w is None:
            raise ParseError(
                "tegrastats prints no power rails on this board ("
                + str(raw).strip()[:120]
                + "): measure with the board's INA3221 (source = 'ina3221') or an external "
                "meter (source = 'command')"
            )
        return reading.total_w
    if source == "pi5-pmic":
        return sum(parse_pmic_read_adc(str(raw)).values())
    if source == "ina3221":
        return ina3221_watts(raw)
    if source == "android-battery":
        return android_watts(raw)
    if source == "nvidia-smi":
        return sum(parse_nvidia_smi(str(raw)).values())
    if source == "command":
        return _meter_watts(str(raw))
    raise ParseError(f"unknown power source {source!r}; known: {', '.join(SOURCES)}")


_RAPL_ZONE = re.compile(r"^intel-rapl:(?P<package>\d+)(?::(?P<sub>\d+))?:(?P<name>.+)$")


def rapl_counted(domains: Iterable[str]) -> list[str]:
    """The RAPL counters (`<zone>:<name>` as the sampler keys them) whose sum is the
    machine's power, nothing counted twice: `psys` alone where the platform has it (it
    covers the packages and DRAM); else every package plus its `dram` sub-zone (the package
    counter excludes DRAM). core/uncore/gpu sub-zones lie inside their package."""
    zones = {d: _RAPL_ZONE.match(d) for d in domains}
    top_level = [d for d, zone in zones.items() if not zone or zone["sub"] is None]
    psys = [d for d in top_level if d.endswith("psys")]
    if psys:
        return psys
    dram = [d for d, zone in zones.items() if zone and zone["sub"] and zone["name"] == "dram"]
    return top_level + dram


def _rapl_trace(samples: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """RAPL gives energy counters: power between two samples is ΔE/Δt, placed at the
    interval's middle; a counter that went down wrapped at its max_energy_range_uj."""
    trace = []
    for before, after in pairwise(samples):
        seconds = (after["t_ns"] - before["t_ns"]) / 1e9
        if seconds <= 0:
            continue
        joules = 0.0
        counted = rapl_counted(after["raw"]["energy_uj"])
        for domain, end in after["raw"]["energy_uj"].items():
            if domain not in counted:
                continue
            start = before["raw"]["energy_uj"].get(domain)
            if start is None:
                continue
            delta = end - start
            if delta < 0:
                delta += after["raw"]["max_energy_range_uj"][domain]
            joules += delta / 1e6
        trace.append(((before["t_ns"] + after["t_ns"]) / 2e9, joules / seconds))
    return trace


def ina3221_watts(raw: Mapping[str, str]) -> float:
    """hwmon INA3221 files as read: `in<N>_input` (mV) × `curr<N>_input` (mA) per channel,
    or the older ina3221x driver's `in_power<N>_input` (mW). With a label naming the
    board's input (VDD_IN / POM_5V_IN / VIN), that channel alone is the total; else the
    channels that read (an unconnected one fails with EIO) and are not labelled NC add up."""
    power_mw: dict[str, float] = {}
    labels: dict[str, str] = {}
    for name, value in raw.items():
        if match := re.fullmatch(r"in_power(\d+)_input", name):
            power_mw[match[1]] = float(value)
        elif match := re.fullmatch(r"(?:in|rail_name_)(\d+)(?:_label)?", name):
            labels[match[1]] = str(value).strip()
    for name, value in raw.items():
        match = re.fullmatch(r"curr(\d+)_input", name)
        volts = raw.get(f"in{match[1]}_input") if match else None
        if match and volts is not None and match[1] not in power_mw:
            power_mw[match[1]] = float(value) * float(volts) / 1000.0
    if not power_mw:
        raise ParseError(f"ina3221: no channel with power or current+voltage in {sorted(raw)}")
    for channel, label in labels.items():
        if label.upper() in ("VDD_IN", "POM_5V_IN", "VIN"):
            if channel not in power_mw:
                raise ParseError(
                    f"ina3221: the input rail {label} (channel {channel}) could not be read: "
                    f"{raw.get('unreadable') or 'no current and voltage'}"
                )
            return power_mw[channel] / 1000.0
    # "NC": a channel with nothing connected (AGX Orin's second INA3221)
    return sum(mw for ch, mw in power_mw.items() if labels.get(ch, "").upper() != "NC") / 1000.0


def android_watts(raw: Mapping[str, str]) -> float:
    """`current_now` (µA) × `voltage_now` (µV). Vendors disagree on the current's sign
    while discharging (negative on most Pixels, positive on many others), so the
    magnitude is used; `battery_sign` (below) records which convention the phone uses."""
    current_ua = float(raw["current_now"])
    voltage_uv = float(raw["voltage_now"])
    return abs(current_ua) * voltage_uv / 1e12


def battery_sign(samples: Sequence[Mapping[str, Any]]) -> str | None:
    """Which sign the phone gives a discharging current: 'negative', 'positive' or None."""
    signs = {
        math.copysign(1, float(s["raw"]["current_now"]))
        for s in samples
        if str(s["raw"].get("status", "")).lower() == "discharging"
        and float(s["raw"]["current_now"]) != 0
    }
    if len(signs) != 1:
        return None
    return "negative" if signs == {-1.0} else "positive"


def parse_nvidia_smi(text: str) -> dict[int, float]:
    """Watts per GPU from `nvidia-smi --query-gpu=...power.draw... --format=csv`: the
    column is found by its header (`power.draw [W]`, or bare with `nounits`), values with
    or without the ` W` unit; `[N/A]` / `[Not Supported]` (GPUs without a power sensor)
    is an error rather than a zero."""
    lines = [line for line in text.splitlines() if line.strip()]
    header_at = next((i for i, line in enumerate(lines) if "power.draw" in line), None)
    if header_at is None:
        raise ParseError(f"nvidia-smi: no power.draw column in {text.strip()[:160]!r}")
    columns = [c.strip() for c in lines[header_at].split(",")]
    power_at = next(i for i, c in enumerate(columns) if c.startswith("power.draw"))
    watts: dict[int, float] = {}
    for number, line in enumerate(lines[header_at + 1 :]):
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(columns):
            raise ParseError(f"nvidia-smi: a row unlike its header: {line.strip()!r}")
        value = cells[power_at].removesuffix("W").strip()
        try:
            watts[number] = float(value)
        except ValueError:
            raise ParseError(
                f"nvidia-smi reports no power draw ({cells[power_at]!r}): this GPU has no "
                'power sensor; use an external meter (power = "command")'
            ) from None
    if not watts:
        raise ParseError("nvidia-smi printed its header but no GPU")
    return watts


def _meter_watts(text: str) -> float:
    """An external meter command prints watts: the last number of its output."""
    numbers = re.findall(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text)
    if not numbers:
        raise ParseError(f"power command printed no number: {text.strip()[:120]!r}")
    return float(numbers[-1])


# --------------------------------------------------------------------------- energy


def mean_power(trace: Sequence[tuple[float, float]], start_s: float, end_s: float) -> float | None:
    """Time-weighted mean of the piecewise-linear trace over [start, end]; held flat
    beyond its first and last points. None when the trace is empty or the window is."""
    if not trace or end_s <= start_s:
        return None
    return _integral(trace, start_s, end_s) / (end_s - start_s)


def _integral(trace: Sequence[tuple[float, float]], start_s: float, end_s: float) -> float:
    import numpy as np

    times, watts = np.array(sorted(trace), dtype=np.float64).T
    inside = times[(times > start_s) & (times < end_s)]
    knots = np.concatenate(([start_s], inside, [end_s]))
    values = np.interp(knots, times, watts)  # linear inside, held flat beyond the ends
    return float(np.sum(np.diff(knots) * (values[:-1] + values[1:]) / 2))


# A window's mean power is a measurement only when readings fall inside it: with fewer,
# the figure would be interpolated from readings outside the window. The runner and the
# controller's poller hold the idle window open until this many have landed in it.
MIN_READINGS_PER_WINDOW = 3


@dataclass(frozen=True)
class EnergySummary:
    idle_power_w: float | None
    avg_power_w: float | None
    energy_mj: float | None  # per inference, above idle
    samples_in_window: int
    samples_in_idle: int | None  # None: no idle window was asked for
    notes: tuple[str, ...] = ()  # why a figure is missing


def energy_summary(
    trace: Sequence[tuple[float, float]],
    timed_window_ns: Sequence[int],
    iterations: int,
    idle_window_ns: Sequence[int] | None = None,
) -> EnergySummary:
    """The result columns from a power trace and the runner's windows. A window holding
    fewer than MIN_READINGS_PER_WINDOW readings gets no figure (and neither does the
    energy that needs it), with a note that says what to change."""
    start, end = timed_window_ns[0] / 1e9, timed_window_ns[1] / 1e9
    inside = _readings_in(trace, start, end)
    notes = []
    idle = None
    in_idle = None
    if idle_window_ns:
        idle_start, idle_end = idle_window_ns[0] / 1e9, idle_window_ns[1] / 1e9
        in_idle = _readings_in(trace, idle_start, idle_end)
        if in_idle >= MIN_READINGS_PER_WINDOW:
            idle = mean_power(trace, idle_start, idle_end)
        else:
            notes.append(
                f"the idle window ({idle_end - idle_start:.2f} s) held {in_idle} power "
                f"reading(s), fewer than the {MIN_READINGS_PER_WINDOW} a baseline needs: no "
                "idle power and no energy per inference; lengthen idle_s or sample faster "
                "(interval_ms), both under the device's [power]"
            )
    average = None
    if inside >= MIN_READINGS_PER_WINDOW:
        average = mean_power(trace, start, end)
    else:
        notes.append(
            f"the timed window ({end - start:.3f} s) held {inside} power reading(s), fewer "
            f"than the {MIN_READINGS_PER_WINDOW} a mean needs: no average power and no energy "
            "per inference; run longer (iterations, max_seconds) or sample faster "
            "(interval_ms under the device's [power])"
        )
    baseline_ok = not idle_window_ns or idle is not None
    energy = None
    if average is not None and baseline_ok and iterations > 0:
        energy = (average - (idle or 0.0)) * (end - start) / iterations * 1000.0
    return EnergySummary(idle, average, energy, inside, in_idle, tuple(notes))


def _readings_in(trace: Sequence[tuple[float, float]], start_s: float, end_s: float) -> int:
    return sum(1 for t, _ in trace if start_s <= t <= end_s)


def reading_notes(source: str, samples: Sequence[Mapping[str, Any]]) -> list[str]:
    """What a reader of the energy figures must know of the raw readings: channels left
    out as unreadable (e.g. an INA3221 channel with nothing connected), a phone charging."""
    notes = []
    unreadable = {
        str(s["raw"]["unreadable"])
        for s in samples
        if isinstance(s.get("raw"), dict) and s["raw"].get("unreadable")
    }
    if unreadable:
        notes.append(f"{source}: left out, unreadable: {'; '.join(sorted(unreadable))}")
    statuses = {str((s.get("raw") or {}).get("status", "")).lower() for s in samples}
    if source == "android-battery" and "charging" in statuses:
        notes.append("the phone was charging: battery power does not measure its consumption")
    return notes


def power_spec(device: Device) -> PowerSpec | None:
    """What the device's sampler reads, how often, and how long the idle baseline is."""
    power = device.power
    if power is None:
        return None
    interval_ms = power.interval_ms or DEFAULT_INTERVAL_MS.get(power.source, FALLBACK_INTERVAL_MS)
    return {
        "source": power.source,
        "root": device.placement.sysfs_root,
        "interval_s": interval_ms / 1000.0,
        "command": power.command,
        "idle_s": power.idle_s,
        "min_readings": MIN_READINGS_PER_WINDOW,  # the idle window is held open until then
    }
