from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.config import load_device, load_inventory, load_manifest, load_plan
from harness.errors import ConfigError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_ssh_device(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pi.toml",
        'transport = "ssh"\n[connection]\nhost = "10.0.0.2"\nuser = "pi"\n[labels]\nclass = "pi5"\n',
    )
    device = load_device(path)
    assert (device.name, device.connection.host, device.device_class, device.connection.port) == (
        "pi",
        "10.0.0.2",
        "pi5",
        None,
    )
    assert device.connection.trust_on_first_use is False
    assert device.retry.times == 2 and device.power is None  # the sections' defaults


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", 'transport = "ssh\n[connection]\nhost = 1\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML .*line 1"):
        load_device(path)


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "pi.toml", 'transport = "ssh"\n[connection]\nhots = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_device(path)
    assert info.value.key == "connection.hots"
    assert "unknown key. Did you mean 'host'?" in str(info.value)
    assert "pi.toml, key 'connection.hots'" in str(info.value)


def test_unknown_transport_lists_the_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "pi.toml", 'transport = "telnet"\n[connection]\nhost = "x"\n')
    with pytest.raises(ConfigError, match=r"key 'transport': .*'local', 'ssh' or 'adb'.*telnet"):
        load_device(path)


def test_ssh_device_needs_an_address(tmp_path: Path) -> None:
    path = write(tmp_path, "pi.toml", 'transport = "ssh"\n')
    with pytest.raises(ConfigError, match="needs 'host' or 'ssh_alias'"):
        load_device(path)


def test_inventory_has_the_builtin_local_device(tmp_path: Path) -> None:
    inventory = load_inventory(tmp_path / "nothing-here")
    assert list(inventory) == ["local"] and inventory["local"].transport == "local"


def test_password_is_only_an_environment_variable_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pi.toml",
        'transport = "ssh"\n[connection]\nhost = "h"\npassword_env = "hunter2!"\n',
    )
    with pytest.raises(ConfigError, match="password_env"):
        load_device(path)


def test_missing_model_file_says_how_to_make_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.toml",
        'file = "cache/m.onnx"\n[source]\nkind = "generated"\ngenerator = "tiny_mobilenet_v2"\n',
    )
    with pytest.raises(
        ConfigError, match=r"key 'file': model file .*m\.onnx does not exist; run `make models`"
    ):
        load_manifest(path)


def test_model_file_must_be_onnx_or_tflite(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", 'file = "m.pt"\n')
    with pytest.raises(ConfigError, match=r"must end in \.onnx or \.tflite"):
        load_manifest(path, require_files=False)


def test_plan_paths_are_relative_to_the_plan(tmp_path: Path) -> None:
    (tmp_path / "plans").mkdir()
    path = write(
        tmp_path / "plans",
        "p.toml",
        'models = ["m"]\n[measure]\niterations = 5\n[runtime]\nthreads = [1, 4]\n',
    )
    plan = load_plan(path)
    assert plan.name == "p" and plan.devices == ["local"]
    assert plan.models_dir == tmp_path / "plans" / "../models"
    assert plan.measure.iterations == 5 and plan.runtime.threads == [1, 4]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("models = []\n", "key 'models'"),
        ('models = ["m"]\n[measure]\ntarget_ci = 2\n', "key 'measure.target_ci'"),
        (
            'models = ["m"]\n[measure]\nmin_iterations = 50\nmax_iterations = 10\n',
            "max_iterations must be >= min_iterations",
        ),
        (
            'models = ["m"]\n[runtime]\ntflite_delegates = ["hexagon"]\n',
            "'hexagon' is not a TFLite delegate",
        ),
        ('models = ["m"]\n[measure]\nwarmpu = 3\n', "Did you mean 'warmup'"),
        # every duration finite and bounded: `inf` would overflow the watchdog's timer
        (
            'models = ["m"]\n[measure]\ntimeout_s = inf\n',
            "key 'measure.timeout_s': Input should be a finite number",
        ),
        (
            'models = ["m"]\n[measure]\nmax_seconds = nan\n',
            "key 'measure.max_seconds': Input should be a finite number",
        ),
        (
            'models = ["m"]\n[measure]\ntimeout_s = 1e12\n',
            "key 'measure.timeout_s': Input should be less than or equal to 604800",
        ),
        (
            'models = ["m"]\n[inputs]\nseed = -1\n',
            "key 'inputs.seed': Input should be greater than or equal to 0",
        ),
        ('models = ["m"]\nvariants = []\n', "key 'variants': List should have at least 1 item"),
    ],
)
def test_bad_plans(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, "p.toml", body)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_plan(path)


def test_devices_are_selected_by_name_and_labels() -> None:
    from harness.config import Connection, Device, select_devices

    inventory = {
        name: Device(name=name, transport="ssh", connection=Connection(host=name), labels=labels)
        for name, labels in [
            ("pi-a", {"class": "pi5", "soc": "bcm2712"}),
            ("pi-b", {"class": "pi5", "soc": "bcm2712"}),
            ("rock", {"class": "rock5", "soc": "rk3588"}),
        ]
    }
    names = ["pi-a", "pi-b", "rock"]
    assert select_devices(names, inventory, ["class=pi5"]) == ["pi-a", "pi-b"]
    assert select_devices(names, inventory, ["soc=rk3588", "class=rock5"]) == ["rock"]
    assert select_devices(names, inventory, ["pi-b", "class=pi5"]) == ["pi-b"]
    with pytest.raises(ConfigError, match="no device of this plan matches class=jetson"):
        select_devices(names, inventory, ["class=jetson"])
    with pytest.raises(ConfigError, match=r"\['orin'\] are not devices of this plan"):
        select_devices(names, inventory, ["orin"])
    for empty in ([""], [" ", ""], []):  # `--devices "$UNSET"` is no selection of all
        with pytest.raises(ConfigError, match=r"--devices: is empty \(an unset variable\?\)"):
            select_devices(names, inventory, empty)


@pytest.mark.parametrize(
    ("section", "key"),
    [("connection", "connect_timeout_s"), ("connection", "io_timeout_s"),
     ("retry", "backoff_s"), ("retry", "lease_wait_s"), ("thermal", "cooldown_max_s")],
)  # fmt: skip
def test_a_device_duration_is_finite_and_bounded(tmp_path: Path, section: str, key: str) -> None:
    head = 'transport = "ssh"\n[connection]\nhost = "pi"\n'
    for value, said in (("inf", "a finite number"), ("1e9", "less than or equal to 604800")):
        body = head + (
            f"{key} = {value}\n" if section == "connection" else f"[{section}]\n{key} = {value}\n"
        )
        with pytest.raises(ConfigError, match=f"key '{section}.{key}': Input should be {said}"):
            load_device(write(tmp_path, "pi.toml", body))


def test_a_phone_needs_a_serial_and_defaults_to_the_native_runner(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs 'serial'"):
        load_device(write(tmp_path, "phone.toml", 'transport = "adb"\n'))
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "benchmark_model").write_bytes(b"\x7fELF")
    phone = load_device(
        write(
            tmp_path,
            "phone.toml",
            'transport = "adb"\n[connection]\nserial = "R58M"\n[placement]\ncores = "4-7"\n'
            '[placement.binaries.benchmark_model]\nlocal = "tools/benchmark_model"\n'
            '[placement.binaries.onnxruntime_perf_test]\ndevice = "/data/local/tmp/ort/perf_test"\n',
        )
    )
    assert phone.runner_kind == "native" and phone.device_workdir == "/data/local/tmp/harness"
    assert (
        phone.placement.binaries["benchmark_model"].local == tmp_path / "tools" / "benchmark_model"
    )


def test_an_ambiguous_binary_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of 'local'"):
        load_device(
            write(
                tmp_path,
                "jetson.toml",
                'transport = "ssh"\n[connection]\nhost = "h"\n[placement.binaries.trtexec]\n'
                'local = "a"\ndevice = "/usr/src/tensorrt/bin/trtexec"\n',
            )
        )


def test_the_shipped_device_examples_load() -> None:
    """devices/*.toml are what users copy: they must stay valid as the format moves."""
    from conftest import ROOT

    inventory = load_inventory(ROOT / "devices")
    assert set(inventory) >= {"pi5-lab1", "orin-nano-lab1", "lab-gateway", "pixel8-lab1"}
    pixel, orin = inventory["pixel8-lab1"], inventory["orin-nano-lab1"]
    assert pixel.connection.serial and pixel.placement.cores == "4-7"
    assert pixel.runner_kind == "native" and set(pixel.placement.binaries) == {
        "benchmark_model",
        "onnxruntime_perf_test",
    }
    assert orin.connection.proxy_jump == "lab-gateway" and "trtexec" in orin.placement.binaries
    assert orin.power is not None and orin.power.source == "tegrastats"
    assert inventory["lab-gateway"].role == "gateway"


def test_a_plans_quality_table_takes_the_known_tolerances_only(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text('models = ["m"]\n[quality]\nmin_top1_agreement = 0.99\nmin_snr_db = 30\n')
    assert load_plan(path).quality == {"min_top1_agreement": 0.99, "min_snr_db": 30.0}
    path.write_text('models = ["m"]\n[quality]\nmin_top_1 = 0.99\n')
    with pytest.raises(ConfigError) as refused:
        load_plan(path)
    assert "unknown ['min_top_1']" in str(refused.value) and "min_top1_agreement" in str(
        refused.value
    )


def test_data_takes_one_source_and_what_it_needs(tmp_path: Path) -> None:
    base = 'file = "m.onnx"\n[data]\n'
    path = tmp_path / "m.toml"
    for body, words in (
        ('images = "a/*"\naudio = "b/*"\n', "takes one of file (.npz), images, audio or binary"),
        ('images = "a/*"\n', "images need size = [height, width]"),
        ('audio = "b/*"\nsample_rate = 16000\n', "audio needs sample_rate and frame_length"),
        ('binary = "c/*"\n', "binary files need length"),
    ):
        path.write_text(base + body)
        with pytest.raises(ConfigError, match=re.escape(words)):
            load_manifest(path, require_files=False)
    path.write_text(base + 'images = "a/*"\nsize = [8, 8]\n[outputs.y]\nkind = "masks"\n')
    with pytest.raises(ConfigError, match="outputs.y.kind"):
        load_manifest(path, require_files=False)
