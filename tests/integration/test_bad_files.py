"""Bad files on disk: each gives a clear message naming it, and breaks only what uses it.

Run directories are made with the real store (real JSON and parquet files); the commands
run as a user runs them, through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import SSHServer, harness
from device_files import local_device_file
from typer.testing import CliRunner

from harness.cli import app
from harness.records import JobRecord
from harness.store import RunStore, utc_now


def make_run(
    runs_dir: Path, plan: str, p50_ms: float, statuses: tuple[str, ...] = ("ok",)
) -> RunStore:
    """A finished run of one device with a job per status (threads 1, 2, ...)."""
    store = RunStore.create(runs_dir, plan)
    store.begin({"run_id": store.run_id, "started_at": utc_now(), "plan": {"name": plan}})
    for index, status in enumerate(statuses, start=1):
        ok = status == "ok"
        latencies = tuple(int(p50_ms * 1e6 * (1 + (k % 7) / 100)) for k in range(200)) if ok else ()
        store.write_job(
            JobRecord(
                run_id=store.run_id,
                job_id=f"dev.m.fp32.cpu.t{index}",
                started_at=utc_now(),
                finished_at=utc_now(),
                device="dev",
                device_class="board",
                transport="ssh",
                model="m",
                variant="fp32",
                strategy="fp32",
                runtime="onnxruntime",
                provider="cpu",
                threads=index,
                status=status,
                error=None if ok else "the runner crashed",
                runner={"runtime": {"version": "1.32.0"}, "arch": "aarch64"} if ok else {},
                latencies_ns=latencies,
            )
        )
    store.finalize()
    meta = store.read_run_meta()
    meta.pop("schema")
    store.begin({**meta, "finished_at": utc_now()})
    return store


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_a_corrupt_results_table_breaks_only_its_own_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    before = make_run(runs, "nightly", 1.0)
    after = make_run(runs, "nightly", 1.0)
    broken = make_run(runs, "nightly", 1.0)
    (broken.run_dir / "results.parquet").write_bytes(b"")  # a disk that filled up
    empty_jobs = make_run(runs, "nightly", 1.0)
    (empty_jobs.run_dir / "results.parquet").write_bytes(b"PAR1 not really")
    for job in empty_jobs.jobs_dir.glob("*.json"):
        job.write_text('{"schema": "harness.job-rec')  # its records are gone too
    code, output = invoke("compare", before.run_id, after.run_id, "--runs-dir", str(runs))
    assert code == 0, output
    assert "no change" in output
    assert empty_jobs.run_id in output and "skipped" in output  # said, not a traceback
    code, output = invoke("history", str(runs))
    assert code == 0, output
    assert "4 runs" not in output and "3 runs" in output
    assert f"{broken.run_id}: results.parquet unreadable" in output  # rebuilt from jobs/
    assert f"{empty_jobs.run_id}" in output and "skipped" in output


def test_a_truncated_run_json_is_a_clear_error(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    store = make_run(runs, "nightly", 1.0)
    (store.run_dir / "run.json").write_text('{"run_id": "2026')
    for command in ("show", "report"):
        code, output = invoke(command, store.run_id, "--runs-dir", str(runs))
        assert code == 2, output
        assert "run.json" in output and "unreadable" in output
        assert "Traceback" not in output


def test_runs_with_and_without_errors_union_in_duckdb(tmp_path: Path) -> None:
    """Columns all null in one run (error, board, governor) keep their types: any set of
    runs of one schema version reads as one table."""
    duckdb = pytest.importorskip("duckdb")
    import pyarrow.dataset as ds

    runs = tmp_path / "runs"
    clean = make_run(runs, "nightly", 1.0)
    failing = make_run(runs, "nightly", 2.0, statuses=("ok", "error"))
    files = [str(s.run_dir / "results.parquet") for s in (clean, failing)]
    rows = duckdb.sql(
        f"select status, count(*) from read_parquet({files!r}) group by status order by status"
    ).fetchall()
    assert rows == [("error", 1), ("ok", 2)]
    table = ds.dataset(files, format="parquet").to_table()
    assert table.num_rows == 3 and str(table.schema.field("error").type) == "string"
    samples = [str(s.run_dir / "samples.parquet") for s in (clean, failing)]
    [(count,)] = duckdb.sql(f"select count(*) from read_parquet({samples!r})").fetchall()
    assert count == 400


def test_resume_sets_aside_a_truncated_job_record_and_runs_the_job_again(
    workspace: Path,
) -> None:
    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "local-device"))
    plan = workspace / "plans" / "t.toml"
    plan.write_text(
        'name = "t"\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n'
        "[measure]\nwarmup = 1\niterations = 20\n[runtime]\nthreads = [1, 2]\n"
        "[inputs]\ndims = { batch = 1 }\n"
    )
    code, output = invoke("run", str(plan))
    assert code == 0, output
    [run_dir] = (workspace / "reports" / "runs").iterdir()
    truncated = run_dir / "jobs" / "local.tiny_mbv2.fp32.cpu.t2.json"
    truncated.write_text(truncated.read_text()[:100])  # a crash mid-write of an old harness
    kept = (run_dir / "jobs" / "local.tiny_mbv2.fp32.cpu.t1.json").read_bytes()
    code, output = invoke("run", str(plan), "--resume", run_dir.name)
    assert code == 0, output
    assert "1 already finished" in output
    assert "local.tiny_mbv2.fp32.cpu.t2.json is unreadable" in output and "set aside" in output
    assert json.loads(truncated.read_text())["status"] == "ok"
    assert (run_dir / "jobs" / "local.tiny_mbv2.fp32.cpu.t1.json").read_bytes() == kept
    assert list((run_dir / "jobs" / "unreadable").glob("*.json"))


def test_bad_device_files_break_only_what_uses_them(workspace: Path) -> None:
    devices = workspace / "devices"
    (devices / "good.toml").write_text(local_device_file(workspace / "good-device"))
    (devices / "latin1.toml").write_bytes('host = "caf\xe9"\n'.encode("latin-1"))
    (devices / "folder.toml").mkdir()
    code, output = invoke("devices", "list", "--devices-dir", str(devices))
    assert code == 0, output
    assert "good" in output and "local" in output
    assert "latin1.toml" in output and "not UTF-8" in output
    assert "folder.toml" in output and "not a file" in output
    code, output = invoke("devices", "check", "good", "--devices-dir", str(devices))
    assert code == 0, output
    assert "latin1.toml" in output  # warned about, and the check went on
    code, output = invoke("devices", "check", "latin1", "--devices-dir", str(devices))
    assert code == 2, output
    assert "latin1.toml" in output and "not UTF-8" in output
    plan = workspace / "plans" / "t.toml"
    plan.write_text('name = "t"\ndevices = ["latin1"]\nmodels = ["tiny_mbv2"]\n')
    code, output = invoke("run", str(plan))
    assert code == 2 and "latin1.toml" in output and "not UTF-8" in output, output
    plan.write_bytes(b'name = "t"\nmodels = ["caf\xe9"]\n')
    code, output = invoke("run", str(plan))
    assert code == 2 and "t.toml" in output and "not UTF-8" in output, output


PI = 'transport = "ssh"\n[connection]\nhost = "pi"\n'  # a good start of a device file


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (f'{PI}[retry]\ntimes = "2"\n', "retry.times"),
        ('transport = "ssh"\n[connection]\nhostname = "pi"\n', "Did you mean 'host'?"),
        (f'{PI}[placement]\nworkdir = "../../tmp/x"\n', "placement.workdir"),
        (f"{PI}trust_on_first_use = 1\n", "connection.trust_on_first_use"),
        (f"{PI}port = 22\nport = 23\n", "line 5"),
        ('transport = "ssh"\n[connection]\nhost = ["pi"\n', "at the end of the file, line 4"),
        # the flat files from before the sections: each key is told its new place
        ('transport = "ssh"\nhost = "pi"\n', "'host' belongs in the [connection] table"),
        ('transport = "ssh"\nhostname = "pi"\n', "'hostname' belongs in the [connection]"),
        (f"retries = 3\n{PI}", "`times = ...`"),
        (f'power = "rapl"\n{PI}', "write [power] with source = 'rapl'"),
        (f"power_idle_s = 1\n{PI}", "under [power] as `idle_s = ...`"),
    ],
)
def test_device_file_mistakes_are_named_with_their_fix(
    tmp_path: Path, body: str, expected: str
) -> None:
    (tmp_path / "pi.toml").write_text(body)
    code, output = invoke("devices", "check", "pi", "--devices-dir", str(tmp_path))
    assert code == 2, output
    assert "pi.toml" in output and expected in output


def test_input_files_that_are_not_npz_archives_are_named(tmp_path: Path) -> None:
    import numpy as np

    from harness.data_files import npz_problem

    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "notes.txt").write_text("hello\n")
    np.savez(tmp_path / "good.npz", x=np.zeros(2))
    assert "holds one array" in str(npz_problem(tmp_path / "one.npy"))
    assert "neither .npz nor .npy" in str(npz_problem(tmp_path / "notes.txt"))
    assert "allow_pickle" not in str(npz_problem(tmp_path / "notes.txt"))
    assert npz_problem(tmp_path / "good.npz") is None


def test_a_plan_with_a_bad_input_file_names_it_before_any_job(workspace: Path) -> None:
    (workspace / "inputs.npz").write_text("not numpy")
    plan = workspace / "plans" / "t.toml"
    plan.write_text(
        'name = "t"\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n'
        '[inputs]\ndims = { batch = 1 }\nfiles = { tiny_mbv2 = "../inputs.npz" }\n'
    )
    code, output = invoke("run", str(plan))
    assert code == 2, output
    assert "inputs.npz" in output and "inputs.files.tiny_mbv2" in output
    assert "allow_pickle" not in output


def test_a_missing_key_file_is_bad_input_said_before_any_job(
    workspace: Path, sshd: SSHServer
) -> None:
    missing = workspace / "no-such-key"
    (workspace / "devices" / "loop.toml").write_text(
        sshd.device_toml("loop", workspace / "wd", identity_file=str(missing), retries=3)
    )
    code, output = invoke("devices", "check", "loop", "--devices-dir", str(workspace / "devices"))
    assert code == 2 and f"the key file {missing} does not exist" in output, output
    assert "connection.identity_file" in output and "[connection]" in output
    plan = workspace / "plans" / "t.toml"
    plan.write_text('name = "t"\ndevices = ["loop"]\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n')
    code, output = invoke("run", str(plan))
    assert code == 2 and f"the key file {missing} does not exist" in output, output
    assert not (workspace / "reports").exists()  # refused before a run directory was made


def test_a_jump_host_keeps_the_watchdog_of_its_device_file() -> None:
    from harness.config import Connection, Device
    from harness.transport import open_transport

    link = Connection(host="10.0.0.2", proxy_jump="me@gw:2222", io_timeout_s=5.0)
    device = Device(name="orin", transport="ssh", connection=link)
    transport = open_transport(device)
    assert transport.io_timeout_s == 5.0
    assert transport.jump is not None and transport.jump.io_timeout_s == 5.0
    gateway = Device(
        name="gw",
        transport="ssh",
        role="gateway",
        connection=Connection(host="gw", io_timeout_s=7.0),
    )
    via_gw = device.model_copy(update={"connection": link.model_copy(update={"proxy_jump": "gw"})})
    via = open_transport(via_gw, {"gw": gateway})
    assert via.jump is not None and via.jump.io_timeout_s == 7.0


def _digits_with_eval(workspace: Path, arrays: dict[str, object]) -> Path:
    """The digits CNN, fp32 only, with an eval set made of `arrays`; a plan running it."""
    import numpy as np

    np.savez(workspace / "models" / "zoo" / "odd_eval.npz", **arrays)  # type: ignore[arg-type]
    manifest = workspace / "models" / "digits_cnn.toml"
    text = manifest.read_text().replace('"zoo/digits_eval.npz"', '"zoo/odd_eval.npz"')
    manifest.write_text(text.replace('calibration_file = "zoo/digits_calib.npz"', ""))
    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "wd"))
    plan = workspace / "plans" / "e.toml"
    plan.write_text(
        'name = "e"\nmodels = ["digits_cnn"]\nvariants = ["fp32"]\n'
        "[measure]\nwarmup = 1\niterations = 30\n[inputs]\ndims = { batch = 1 }\n"
    )
    return plan


def test_an_eval_set_without_labels_is_refused_before_any_job(workspace: Path) -> None:
    """It once crashed a run after 101 s of jobs with a raw KeyError and no record kept."""
    import numpy as np

    plan = _digits_with_eval(workspace, {"input": np.zeros((4, 1, 8, 8), np.float32)})
    code, output = invoke("run", str(plan))
    assert code == 2, output
    assert "odd_eval.npz has no labels array 'labels'" in output and "eval.labels" in output
    assert not list((workspace / "reports").rglob("jobs/*.json"))


def test_an_eval_that_fails_on_the_device_keeps_the_latencies(workspace: Path) -> None:
    """Arrays with the right names and counts but the wrong shape pass the check and fail
    in the runner's eval pass, after the timed loop: the job stays `ok`, its latencies
    kept, and the row says why it has no accuracy."""
    import numpy as np

    plan = _digits_with_eval(
        workspace,
        {"input": np.zeros((4, 3), np.float32), "labels": np.zeros(4, np.int64)},
    )
    code, output = invoke("run", str(plan))
    assert code == 0, output
    [record] = [json.loads(p.read_text()) for p in (workspace / "reports").rglob("jobs/*.json")]
    assert record["status"] == "ok" and len(record["latencies_ns"]) == 30
    assert "eval_error" in record["eval_metrics"]
    [run_dir] = (workspace / "reports" / "runs").iterdir()
    row = pd.read_parquet(run_dir / "results.parquet").iloc[0]
    assert "eval failed (latency kept)" in row["warnings"] and pd.isna(row["accuracy"])


def test_a_message_off_a_terminal_is_one_whole_line_brackets_and_all(workspace: Path) -> None:
    """Piped (CI logs), a message longer than any terminal stays one line, and the TOML
    table names in it (`[placement]`) are printed, not taken for markup."""
    python = workspace / ("a-folder-with-a-long-name-" * 4) / "bin" / "python3"
    (workspace / "devices" / "nopy.toml").write_text(
        local_device_file(workspace / "nopy-device", python=python)
    )
    checked = harness("devices", "check", "nopy", "--devices-dir", workspace / "devices")
    [line] = [ln for ln in checked.stdout.splitlines() if "not found there" in ln]
    assert len(line) > 120 and str(python) in line, checked.stdout
    assert "set `python` under [placement] in the device file" in line
    plan = workspace / "plans" / "p.toml"
    plan.write_text('name = "p"\ndevices = ["nopy"]\nmodels = ["tiny_mbv2"]\nvariants = ["fp32"]\n')
    ran = harness("run", plan)
    assert ran.returncode == 1, ran.stdout
    summary = [ln for ln in ran.stdout.splitlines() if ln.startswith("  nopy: 1 job(s) skipped")]
    assert len(summary) == 1 and "under [placement] in the device file" in summary[0]
    assert "device nopy skipped:" in ran.stdout and str(python) in ran.stdout


@pytest.mark.parametrize(
    ("variants", "args", "said"),
    [
        ('["int9"]', [], "key 'variants': ['int9']: no model of this plan has such a variant"),
        ('["fp32 "]', [], "no model of this plan has such a variant"),
        ('["fp32"]', ["--devices", ""], "--devices: is empty (an unset variable?)"),
        ('["fp32"]', ["--shard", "2/2"], "--shard: shard 2/2 has no device"),
    ],
)
def test_a_run_that_would_run_nothing_is_bad_input(
    workspace: Path, variants: str, args: list[str], said: str
) -> None:
    """A typo or an empty CI variable must never make a green step that measured nothing."""
    plan = workspace / "plans" / "p.toml"
    plan.write_text(f'name = "p"\nmodels = ["tiny_mbv2"]\nvariants = {variants}\n')
    code, output = invoke("run", str(plan), *args)
    assert code == 2 and said in output, output
    if "variant" in said:
        assert "variants are channels-25, fp16, fp32, int8-static" in output  # to choose from
    assert not (workspace / "reports").exists()


def test_merging_a_run_without_its_run_json_says_what_is_missing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    kept, lost = make_run(runs, "nightly", 1.0), make_run(runs, "nightly", 1.0)
    (lost.run_dir / "run.json").unlink()
    code, output = invoke("merge", kept.run_id, lost.run_id, "--runs-dir", str(runs))
    assert code == 2, output
    assert f"{lost.run_dir / 'run.json'} is missing" in output
    assert "cannot be merged" in output and "harness show" in output
