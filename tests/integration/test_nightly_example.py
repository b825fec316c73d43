"""examples/nightly.yml, run: each step's commands (its `run:` text, as GitHub Actions runs
it: bash -eo pipefail, the expressions filled in) against the test servers, the
controllers' jobs as two workers in parallel with the job that waits, reports and gates.
A step that changed shape (a new expression, a command that fails) fails this test."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import HARNESS
from servers import PostgresServer, SeaweedServer
from test_lab_queue import controller, plan_text

pytestmark = pytest.mark.integration

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "nightly.yml"
SETUP_STEPS = ("make venv", "make venv models")  # this checkout is set up already
RELEASE_EXPRESSION = "${{ startsWith(github.ref, 'refs/tags/release-') && 'release' || 'nightly' }}"


def job_steps(workflow: dict, job: str, values: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """A job's commands with the expressions filled in, and each step's env."""
    steps = []
    for step in workflow["jobs"][job]["steps"]:
        command = step.get("run")
        if command is None or command.strip() in SETUP_STEPS:
            continue  # `uses:` steps (checkout, artefacts) and the set-up done here already
        env = {k: fill(str(v), values) for k, v in (step.get("env") or {}).items()}
        steps.append((fill(command, values).replace(".venv/bin/harness", str(HARNESS)), env))
    return steps


def fill(text: str, values: dict[str, str]) -> str:
    for expression, value in values.items():
        text = text.replace(expression, value)
    left = re.findall(r"\$\{\{.*?\}\}", text)
    assert not left, f"{WORKFLOW.name}: expressions this test does not know: {left}"
    return text


def bash(command: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command], cwd=cwd,
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def finished(process: subprocess.Popen[str], what: str) -> str:
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, f"{what} exited {process.returncode}:\n{output}"
    return output


def test_the_nightly_example_runs_on_a_lab_with_two_controllers(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path
) -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    kept = [
        s for j in workflow["jobs"].values() for s in j["steps"] if "clean" in s.get("with", {})
    ]
    assert not kept, kept  # nothing is kept on a runner's disk between nights
    devices = ["bench-1", "bench-2", "bench-3"]
    plan = plan_text(devices)
    labels = {"bench-1": "lab-a", "bench-2": "lab-a", "bench-3": "lab-b"}

    def checkout(name: str) -> Path:
        """A runner's checkout: the plan, the lab's device files, the release budgets."""
        workspace = controller(tmp_path, name, devices, plan)
        for device, site in labels.items():
            path = workspace / "devices" / f"{device}.toml"
            path.write_text(path.read_text() + f'[labels]\ncontroller = "{site}"\n')
        (workspace / "budgets").mkdir()
        (workspace / "budgets" / "release.toml").write_text(
            '[[budget]]\nmodel = "digits_cnn"\nvariant = "fp32"\np50_ms = 10000\n'
        )
        return workspace

    # the submit job, on a release tag: its run id goes out through GITHUB_OUTPUT
    submitter = checkout("submit")
    outputs = tmp_path / "github-output"
    values = {RELEASE_EXPRESSION: "release"}
    for command, env in job_steps(workflow, "submit", values):
        finished(bash(command, submitter, {**env, "GITHUB_OUTPUT": str(outputs)}), "submit")
    run_id = outputs.read_text().strip().removeprefix("run=")
    assert run_id and "\n" not in run_id, outputs.read_text()
    values["${{ needs.submit.outputs.run }}"] = run_id

    # the serve matrix (two controllers) beside the report job, as GitHub schedules them
    serving = []
    for site in workflow["jobs"]["serve"]["strategy"]["matrix"]["controller"]:
        workspace = checkout(site)
        steps = job_steps(workflow, "serve", {**values, "${{ matrix.controller }}": site})
        assert len(steps) == 1
        command, env = steps[0]
        serving.append((site, bash(command, workspace, env)))
    summary = tmp_path / "step-summary.md"
    reporter = checkout("report")
    for command, env in job_steps(workflow, "report", values):
        output = finished(bash(command, reporter, {**env, "GITHUB_STEP_SUMMARY": str(summary)}),
                          "report")  # fmt: skip
        assert "::warning::" not in output, output  # every job ok
    for site, process in serving:
        output = finished(process, f"serve {site}")
        assert "run(s) published" in output
    assert run_id in summary.read_text() or "digits_cnn" in summary.read_text()
    # the release gate, on another fresh runner
    gate = checkout("gate")
    for command, env in job_steps(workflow, "release-gate", values):
        finished(bash(command, gate, {**env, "GITHUB_STEP_SUMMARY": str(summary)}), "gate")
    assert (gate / "gate.xml").is_file()
    assert "PASS" in summary.read_text()
