"""Security end to end against the real sshd: text a user controls reaches the device as
literal text (never as shell), remote paths stay in the work directory, and a secret given
through an environment variable appears in no log, record, parquet file or report."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from conftest import SSHServer
from typer.testing import CliRunner

from harness.cli import app
from harness.config import load_inventory
from harness.errors import ConfigError

HOSTILE = 'it\'s a "lab"; $(touch PWNED) `touch PWNED` & x\ny'


def write_plan(workspace: Path, device: str) -> Path:
    plan = workspace / "plans" / "p.toml"
    plan.write_text(
        f'name = "p"\ndevices = ["{device}"]\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n'
        "[measure]\niterations = 10\n[inputs]\ndims = { batch = 1 }\n"
    )
    return plan


def test_hostile_text_in_paths_and_labels_is_literal(workspace: Path, sshd: SSHServer) -> None:
    workdir = workspace / f"device {HOSTILE.replace(chr(10), ' ')}"
    (workspace / "devices" / "odd.toml").write_text(
        sshd.device_toml("odd", workdir) + f"site = {json.dumps(HOSTILE)}\n"
    )
    assert load_inventory(workspace / "devices")["odd"].labels["site"] == HOSTILE
    result = CliRunner().invoke(app, ["run", str(write_plan(workspace, "odd"))])
    assert result.exit_code == 0, result.output
    assert (workdir / "runner").is_dir()  # the literal folder name, quotes and all
    device_home = Path(pwd.getpwuid(os.getuid()).pw_dir)  # where sshd starts commands
    for place in (device_home, workdir, workspace, Path.cwd()):
        assert not list(place.glob("PWNED*")), f"a command ran in {place}"


def test_device_names_that_are_not_names_are_refused(workspace: Path) -> None:
    (workspace / "devices" / "x.toml").write_text('name = "pi; rm -rf ~"\ntransport = "local"\n')
    with pytest.raises(ConfigError, match="name"):
        load_inventory(workspace / "devices")


def test_a_secret_is_never_written_anywhere(
    workspace: Path, sshd: SSHServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-Pa55w0rd-7f1c"
    monkeypatch.setenv("LAB_PASSWORD", secret)
    (workspace / "devices" / "pw.toml").write_text(
        sshd.device_toml("pw", workspace / "pw-device", password_env="LAB_PASSWORD")
    )
    run = CliRunner().invoke(app, ["run", str(write_plan(workspace, "pw"))])
    assert run.exit_code == 0, run.output
    [run_dir] = [p.parent for p in workspace.rglob("run.json")]
    report = CliRunner().invoke(app, ["report", str(run_dir)])
    listed = CliRunner().invoke(
        app, ["devices", "list"], env={"HARNESS_DEVICES_DIR": str(workspace / "devices")}
    )
    assert "LAB_PASSWORD" in (run_dir / "run.json").read_text()  # where it lives: named
    for output in (run.output, report.output, listed.output):
        assert secret not in output
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in written) and any(
        p.suffix == ".html" for p in written
    )
    for path in written:
        assert secret.encode() not in path.read_bytes(), f"the secret is in {path}"


@pytest.mark.parametrize(
    ("transport", "planted"),
    [("ssh", "runner"), ("ssh", "models"), ("ssh", "jobs"), ("local", "models")],
)
def test_a_symlink_planted_in_the_workdir_is_never_written_through(
    workspace: Path, sshd: SSHServer, transport: str, planted: str
) -> None:
    """A link inside the device's workdir (left by a user, or planted) must not carry the
    runner, a model or a job spec outside it: the write is refused, naming the link."""
    from device_files import local_device_file

    workdir, outside = workspace / "device", workspace / "outside"
    workdir.mkdir()
    outside.mkdir()
    (workdir / planted).symlink_to(outside, target_is_directory=True)
    device = (
        sshd.device_toml("linked", workdir)
        if transport == "ssh"
        else local_device_file(workdir, name="linked")
    )
    (workspace / "devices" / "linked.toml").write_text(device)
    result = CliRunner().invoke(app, ["run", str(write_plan(workspace, "linked"))])
    assert list(outside.iterdir()) == [], "something was written through the link"
    [record] = [json.loads(p.read_text()) for p in workspace.rglob("jobs/*.json")]
    if planted == "jobs":  # the scratch folder, emptied at each start: the link removed
        assert result.exit_code == 0 and record["status"] == "ok", result.output
        assert (workdir / "jobs").is_dir() and not (workdir / "jobs").is_symlink()
        return
    assert result.exit_code == 1, result.output
    assert f"{workdir / planted} is a symbolic link inside the workdir" in result.output
    assert "symbolic link" in record["error"]
