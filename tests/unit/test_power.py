"""Power parsers on recorded real output, and energy per inference from traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import ParseError
from harness.probes.power import (
    android_watts,
    battery_sign,
    energy_summary,
    ina3221_watts,
    mean_power,
    parse_nvidia_smi,
    parse_pmic_read_adc,
    parse_tegrastats,
    power_trace,
    rapl_counted,
)
from harness.rows import power_columns
from harness.runner import sampler
from harness.runner.result_document import ResultDocument

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(
    "name", sorted(json.loads((FIXTURES / "tegrastats" / "expected.json").read_text()))
)
def test_tegrastats_lines_of_every_board_format(name: str) -> None:
    expected = json.loads((FIXTURES / "tegrastats" / "expected.json").read_text())[name]
    lines = (FIXTURES / "tegrastats" / name).read_text().splitlines()
    assert expected["source"] and len(lines) == len(expected["lines"])
    for line, case in zip(lines, expected["lines"], strict=True):
        reading = parse_tegrastats(line)
        assert reading.total_w == pytest.approx(case["total_w"]), case["board"]
        assert reading.total_from == case["total_from"], case["board"]
        assert {r: reading.rails_w[r] for r in case["rails"]} == pytest.approx(case["rails"])
        for zone, celsius in case["temps_c"].items():
            assert reading.temps_c[zone] == celsius, (case["board"], zone)
        assert not {"RAM", "SWAP", "IRAM"} & set(reading.rails_w)
        if not case["rails"]:
            assert not reading.rails_w


def test_tegrastats_without_rails_says_what_measures_instead() -> None:
    line = (FIXTURES / "tegrastats" / "tx1_l4t28_no_rails.txt").read_text().splitlines()[0]
    samples = [{"t_ns": 0, "raw": line}]
    with pytest.raises(ParseError, match="prints no power rails on this board.*'ina3221'"):
        power_trace("tegrastats", samples)
    with pytest.raises(ParseError, match="not a tegrastats line"):
        parse_tegrastats("CPU [2%@102]")


def test_pi5_pmic_pairs_rails_by_name() -> None:
    name = "pi5_pmic_read_adc_loaded.txt"
    meta = json.loads((FIXTURES / "vcgencmd" / "expected.json").read_text())[name]
    rails = parse_pmic_read_adc((FIXTURES / "vcgencmd" / name).read_text())
    assert meta["source"]
    assert sum(rails.values()) == pytest.approx(meta["expected"]["total_w"])
    assert len(rails) == meta["expected"]["rails"] and "EXT5V" not in rails
    assert rails["VDD_CORE"] == pytest.approx(meta["expected"]["vdd_core_w"])
    with pytest.raises(ParseError, match="Pi 4 or older"):
        parse_pmic_read_adc("     EXT5V_V volt(24)=5.09066000V\n")
    with pytest.raises(ParseError, match="cannot read the line"):
        parse_pmic_read_adc('error=1 error_msg="Command not registered"\n')


def test_rapl_counters_wrap_and_become_power() -> None:
    maximum = 262_143_328_850
    samples = [
        {"t_ns": 0, "raw": {"energy_uj": {"package-0": maximum - 1_000_000}, "max_energy_range_uj": {"package-0": maximum}}},
        {"t_ns": 500_000_000, "raw": {"energy_uj": {"package-0": 1_500_000}, "max_energy_range_uj": {"package-0": maximum}}},
    ]  # fmt: skip
    [(t, watts)] = power_trace("rapl", samples)
    assert t == 0.25 and watts == pytest.approx(2.5 / 0.5)


def _rapl_tree(root: Path, zones: dict[str, tuple[str, int]]) -> None:
    """A powercap tree as sysfs lays it out: every zone listed flat under class/powercap."""
    for zone, (name, energy_uj) in zones.items():
        folder = root / "class" / "powercap" / zone
        folder.mkdir(parents=True)
        (folder / "name").write_text(name + "\n")
        (folder / "energy_uj").write_text(f"{energy_uj}\n")
        (folder / "max_energy_range_uj").write_text("262143999938\n")


def _rapl_watts(
    tmp_path: Path, before: dict[str, tuple[str, int]], joules: dict[str, float]
) -> float:
    _rapl_tree(tmp_path / "a", before)
    after = {z: (name, uj + int(joules.get(z, 0) * 1e6)) for z, (name, uj) in before.items()}
    _rapl_tree(tmp_path / "b", after)
    samples = [
        {"t_ns": 0, "raw": sampler.rapl({"root": str(tmp_path / "a")})},
        {"t_ns": 1_000_000_000, "raw": sampler.rapl({"root": str(tmp_path / "b")})},
    ]
    [(_, watts)] = power_trace("rapl", samples)
    return watts


def test_rapl_adds_the_dram_zone_and_never_the_package_sub_zones(tmp_path: Path) -> None:
    """A Haswell desktop's layout (intel/thermal_daemon issue #45: package-0 with core,
    uncore and dram sub-zones; the core and dram counters as recorded there): the package
    counter excludes DRAM, and core/uncore lie inside the package."""
    zones = {
        "intel-rapl:0": ("package-0", 40_000_000_000),
        "intel-rapl:0:0": ("core", 16_834_313_903),
        "intel-rapl:0:1": ("uncore", 1_000_000),
        "intel-rapl:0:2": ("dram", 2_469_474_853),
    }
    joules = {
        "intel-rapl:0": 10.0,
        "intel-rapl:0:0": 6.0,
        "intel-rapl:0:1": 1.0,
        "intel-rapl:0:2": 2.0,
    }
    assert _rapl_watts(tmp_path, zones, joules) == pytest.approx(12.0)


def test_rapl_psys_alone_where_the_platform_has_it(tmp_path: Path) -> None:
    """A NUC's layout (intel/thermal_daemon issue #556: intel-rapl:0 package-0,
    intel-rapl:1 psys): psys already covers the package, so the two are not added."""
    zones = {"intel-rapl:0": ("package-0", 5_000_000), "intel-rapl:1": ("psys", 9_000_000)}
    joules = {"intel-rapl:0": 10.0, "intel-rapl:1": 25.0}
    assert _rapl_watts(tmp_path, zones, joules) == pytest.approx(25.0)
    assert rapl_counted(["intel-rapl:0:package-0", "intel-rapl:1:psys"]) == ["intel-rapl:1:psys"]


def test_ina3221_channel_whose_read_fails_leaves_the_others(tmp_path: Path) -> None:
    """AGX Orin's second INA3221 (1-0041) has unconnected channels labelled NC whose
    `in3_input` read fails with EIO (alumet-dev/alumet issue #212; NC and VDDQ_VDD2_1V8AO
    as jtop logs an Orin's channels in rbonghi/jetson_stats issue #381). Here that file cannot be read either (a
    folder in its place): the sampler names it, the readable rail still counts."""
    hwmon = tmp_path / "class" / "hwmon" / "hwmon2"
    hwmon.mkdir(parents=True)
    files = {"name": "ina3221", "in1_label": "NC", "in2_label": "VDDQ_VDD2_1V8AO",
             "in3_label": "NC", "in1_input": "0", "curr1_input": "0", "in2_input": "5000",
             "curr2_input": "400", "curr3_input": "0"}  # fmt: skip
    for name, text in files.items():
        (hwmon / name).write_text(text + "\n")
    (hwmon / "in3_input").mkdir()
    raw = sampler.ina3221({"root": str(tmp_path)})
    assert "in3_input" in raw["unreadable"] and "in3_input" not in raw
    assert ina3221_watts(raw) == pytest.approx(2.0)
    raw["in2_label"] = "VIN"  # the input rail itself unreadable: said, never a wrong total
    del raw["in2_input"]
    with pytest.raises(ParseError, match="input rail VIN .channel 2. could not be read"):
        ina3221_watts(raw)


def test_a_left_out_channel_is_said_in_the_results_warnings() -> None:
    raw = {"in1_label": "VDD_CPU", "in1_input": "5000", "curr1_input": "200",
           "unreadable": "in3_input (Input/output error)"}  # fmt: skip
    samples = [{"t_ns": t * 100_000_000, "raw": raw} for t in range(12)]
    power = {"source": "ina3221", "samples": samples, "timed_window_ns": [0, 1_100_000_000],
             "iterations": 10}  # fmt: skip
    columns, notes = power_columns(ResultDocument({"power": power}).power)
    assert columns["avg_power_w"] == pytest.approx(1.0)
    assert notes == ["ina3221: left out, unreadable: in3_input (Input/output error)"]


def test_ina3221_channels_and_the_input_rail() -> None:
    channels = {"in1_label": "VDD_IN", "in1_input": "5000", "curr1_input": "1200",
                "in2_label": "VDD_CPU_GPU_CV", "in2_input": "5000", "curr2_input": "300"}  # fmt: skip
    assert ina3221_watts(channels) == pytest.approx(6.0)  # the input rail alone
    unlabeled = {
        "in1_input": "5000",
        "curr1_input": "100",
        "in2_input": "3300",
        "curr2_input": "200",
    }
    assert ina3221_watts(unlabeled) == pytest.approx(0.5 + 0.66)
    legacy = {"rail_name_0": "POM_5V_IN", "in_power0_input": "2500", "in_power1_input": "400"}
    assert ina3221_watts(legacy) == pytest.approx(2.5)


def test_android_battery_sign_conventions() -> None:
    assert android_watts({"current_now": "-450000", "voltage_now": "3900000"}) == pytest.approx(
        1.755
    )
    pixel = [{"raw": {"current_now": "-450000", "voltage_now": "3900000", "status": "Discharging"}}]
    other = [{"raw": {"current_now": "450000", "voltage_now": "3900000", "status": "Discharging"}}]
    charging = [{"raw": {"current_now": "900000", "voltage_now": "4200000", "status": "Charging"}}]
    assert (battery_sign(pixel), battery_sign(other), battery_sign(charging)) == (
        "negative", "positive", None,
    )  # fmt: skip


def test_energy_per_inference_above_idle() -> None:
    # 2 W idle for 1 s, then 7 W for a 2 s timed window of 1000 inferences
    trace = [(t / 10, 2.0) for t in range(0, 11)] + [(1.0 + t / 10, 7.0) for t in range(1, 31)]
    summary = energy_summary(trace, (int(1.1e9), int(3.1e9)), 1000, (0, int(1e9)))
    assert summary.idle_power_w == pytest.approx(2.0)
    assert summary.avg_power_w == pytest.approx(7.0)
    assert summary.energy_mj == pytest.approx(5.0 * 2.0 / 1000 * 1000)  # 10 mJ each
    assert summary.samples_in_window == 21
    no_idle = energy_summary(trace, (int(1.1e9), int(3.1e9)), 1000)
    assert no_idle.idle_power_w is None and no_idle.energy_mj == pytest.approx(14.0)
    assert mean_power([], 0, 1) is None


def test_a_window_without_enough_readings_gets_no_figure() -> None:
    """The phone case: battery polled every 650 ms against a 0.5 s idle window. Before,
    idle power was interpolated from readings outside the window and shown as measured."""
    trace = [(t * 0.65, 4.0) for t in range(12)]  # 0 … 7.15 s, 4 W
    idle_window = (int(0.1e9), int(0.6e9))  # no reading inside
    summary = energy_summary(trace, (int(1.0e9), int(7.0e9)), 100, idle_window)
    assert summary.samples_in_idle == 0 and summary.samples_in_window == 9
    assert summary.idle_power_w is None and summary.energy_mj is None
    assert summary.avg_power_w == pytest.approx(4.0)
    [note] = summary.notes
    assert "idle window" in note and "lengthen idle_s" in note and "[power]" in note
    # a timed window with two readings: no mean, no energy; the note says what to change
    short = energy_summary(trace, (int(1.2e9), int(2.0e9)), 10, (0, int(1.4e9)))
    assert short.samples_in_window == 2 and short.avg_power_w is None
    assert short.idle_power_w == pytest.approx(4.0) and short.energy_mj is None
    assert any("timed window" in n and "interval_ms under" in n for n in short.notes)


def test_nvidia_smi_power_draw_by_header() -> None:
    folder = FIXTURES / "nvidia-smi"
    case = json.loads((folder / "expected.json").read_text())["query_gpu_power_draw.csv"]
    watts = parse_nvidia_smi((folder / "query_gpu_power_draw.csv").read_text())
    assert case["source"]
    assert {str(k): v for k, v in watts.items()} == case["expected"]["watts_by_gpu"]
    # the sampler's own query (index first, `nounits`), two GPUs summed in the trace
    two = "index, power.draw [W], memory.used [MiB]\n0, 71.52, 1024\n1, 68.10, 980\n"
    assert parse_nvidia_smi(two) == {0: 71.52, 1: 68.10}
    [(_, total)] = power_trace("nvidia-smi", [{"t_ns": 10**9, "raw": two}])
    assert total == pytest.approx(139.62)
    with pytest.raises(ParseError, match="no power sensor"):
        parse_nvidia_smi("power.draw [W], memory.used [MiB]\n[N/A], [N/A]\n")
    with pytest.raises(ParseError, match="no power.draw column"):
        parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the driver")
