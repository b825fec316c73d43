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
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_tegrastats_lines_of_every_board_format() -> None:
    expected = json.loads((FIXTURES / "tegrastats" / "expected.json").read_text())
    lines = (FIXTURES / "tegrastats" / "datadog_jetson_samples.txt").read_text().splitlines()
    assert expected["source"] and len(lines) == len(expected["lines"])
    for line, case in zip(lines, expected["lines"], strict=True):
        reading = parse_tegrastats(line)
        assert reading.total_w == pytest.approx(case["total_w"]), case["board"]
        assert reading.total_from == case["total_from"], case["board"]
        for rail, watts in case["rails"].items():
            assert reading.rails_w[rail] == pytest.approx(watts), (case["board"], rail)
        for zone, celsius in case["temps_c"].items():
            assert reading.temps_c[zone] == celsius, (case["board"], zone)
        assert not {"RAM", "SWAP", "IRAM"} & set(reading.rails_w)


def test_tegrastats_without_rails_is_refused() -> None:
    with pytest.raises(ParseError, match="no power rails"):
        parse_tegrastats("RAM 613/3964MB (lfb 634x4MB) CPU [2%@102]")


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
