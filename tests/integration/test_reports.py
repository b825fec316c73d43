"""Reports, gates, history and run comparison, from real runs on the local device."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import MODELS_DIR, ROOT
from device_files import local_device_file

from harness.calibration_store import read_calibrations
from harness.history import compare_runs, noise_floor
from harness.scheduler import prepare_run, run_prepared
from harness.store import RunStore, load_history

BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / ".test-artifacts"
PLAN = """name = "{name}"
devices = ["local"]
models = ["digits_cnn"]
variants = ["fp32", "int8-static"]
devices_dir = "{root}/devices"
models_dir = "{root}/models"
output_dir = "{root}/runs"
[measure]
warmup = 5
iterations = 200
[inputs]
dims = {{ batch = 1 }}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RunStore]]:
    """Two runs of the same plan, real runner, real onnxruntime."""
    root = tmp_path_factory.mktemp("reports")
    (root / "devices").mkdir()
    (root / "devices" / "local.toml").write_text(
        local_device_file(root / "wd") + '[labels]\nclass = "controller"\n'
    )
    shutil.copytree(MODELS_DIR / "zoo", root / "models" / "zoo")
    shutil.copy(MODELS_DIR / "digits_cnn.toml", root / "models" / "digits_cnn.toml")
    stores = []
    for index in range(2):
        plan = root / f"plan{index}.toml"
        plan.write_text(PLAN.format(name=f"nightly{index}", root=root))
        prepared = prepare_run(plan)
        run_prepared(prepared)
        stores.append(prepared.store)
    return root, stores


def test_html_report_in_headless_chromium(
    runs: tuple[Path, list[RunStore]], tmp_path: Path
) -> None:
    root, (store, _) = runs
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(
        '[[budget]]\nmodel = "digits_cnn"\nvariant = "int8-static"\np90_ms = 50\nmax_accuracy_drop = 0.05\n'
    )
    args = ["--runs-dir", str(root / "runs")]
    made = subprocess.run([BIN / "harness", "report", store.run_id, *args, "--budgets", str(budgets)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    gate = subprocess.run([BIN / "harness", "gate", str(budgets), store.run_id, *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert gate.returncode == 0, gate.stdout
    # a terminal table whose counts count its rows; Markdown only with --summary
    assert "release gate: PASS (2 checks: 2 pass (in 1 cases: 1 pass))" in gate.stdout
    assert "|---|" not in gate.stdout and "✅" not in gate.stdout
    report = store.run_dir / "report.html"
    assert "PASS" in (store.run_dir / "summary.md").read_text()
    for name in ("speedup_matrix", "speedup_vs_fidelity"):  # what a summary shows
        assert (store.run_dir / "plots" / f"{name}.png").is_file()
        assert (store.run_dir / "plots" / f"{name}.svg").is_file()
    for name in ("latency", "distributions", "size_vs_speedup", "memory"):  # in the page
        assert not (store.run_dir / "plots" / f"{name}.png").exists()
        rows = (store.run_dir / "plots" / f"{name}.csv").read_text().splitlines()
        jobs = 1 if name == "size_vs_speedup" else 2  # (fp32 is not drawn against itself)
        assert len(rows) == 1 + jobs and "digits_cnn" in rows[1]  # a row a job
    page = report.read_text()
    # the verdict first, PASS (and the gate's exit code was 0); the page needs no network
    assert page.index("id='verdict'") < page.index("id='ship'")
    assert "<span class='outcome'>PASS</span>" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://cdn" not in page
    # (tests/integration/test_report_in_browser.py opens a report in Chromium)


def test_gate_names_every_case_at_80_columns_and_for_scripts(
    runs: tuple[Path, list[RunStore]], tmp_path: Path
) -> None:
    """One budget over two variants: each row says which variant, its figure with the
    interval, the budget and the margin, also piped at COLUMNS=80; `--format json` gives the
    same checks as records; the JUnit the command writes is valid against the Ant schema."""
    from lxml import etree

    root, (store, _) = runs
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[[budget]]\nmodel = "digits_cnn"\np90_ms = 0.0001\npeak_mem_mb = 5000\n')
    args = [BIN / "harness", "gate", str(budgets), store.run_id, "--runs-dir", str(root / "runs")]
    env = {**os.environ, "COLUMNS": "80"}
    narrow = subprocess.run([*args, "--junit", str(tmp_path / "g.xml")], capture_output=True,
                            text=True, timeout=120, env=env)  # fmt: skip
    assert narrow.returncode == 1, narrow.stdout + narrow.stderr
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, narrow.stdout
    for variant in ("fp32", "int8-static"):
        assert f"FAIL digits_cnn {variant} on local (CPUExecutionProvider t1)" in lines
    assert sum("p90_ms:" in line for line in lines) == 2
    assert sum(line.strip().startswith("<= 0.0001 ms, margin -") for line in lines) == 2
    wide = subprocess.run(args, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "160"})  # fmt: skip
    header = next(line for line in wide.stdout.splitlines() if "measured [95% CI]" in line)
    assert header.split() == [
        "outcome",
        "variant",
        "measure",
        "measured",
        "[95%",
        "CI]",
        "budget",
        "margin",
    ]
    assert "model digits_cnn" in wide.stdout and "device local" in wide.stdout
    as_json = subprocess.run(
        [*args, "--format", "json"], capture_output=True, text=True, timeout=120
    )
    checks = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and len(checks) == 4
    assert [c["outcome"] for c in checks] == ["fail", "fail", "pass", "pass"]
    assert {c["variant"] for c in checks} == {"fp32", "int8-static"} and checks[0]["margin"] < 0
    schema = etree.XMLSchema(etree.parse(str(ROOT / "tests/fixtures/junit/ant-junit.xsd")))
    assert schema.validate(etree.parse(str(tmp_path / "g.xml"))), schema.error_log


def test_show_compare_and_history_for_scripts_and_at_80_columns(
    runs: tuple[Path, list[RunStore]],
) -> None:
    """`--format json|csv` gives the stored rows with their documented fields (nothing else
    on stdout); at 80 columns the columns a decision needs are the ones kept."""
    from harness.analysis import COMPARE_COLUMNS
    from harness.rows import RESULT_COLUMNS

    root, (first, second) = runs
    where = ["--runs-dir", str(root / "runs")]

    def cli(*args: str, columns: str = "120") -> subprocess.CompletedProcess[str]:
        return subprocess.run([BIN / "harness", *args], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "COLUMNS": columns})  # fmt: skip

    shown = json.loads(cli("show", second.run_id, *where, "--format", "json").stdout)
    assert [list(row) for row in shown] == [list(RESULT_COLUMNS)] * 2
    assert {row["variant"] for row in shown} == {"fp32", "int8-static"}
    compared = json.loads(
        cli("show", second.run_id, *where, "--compare", "--format", "json").stdout
    )
    assert list(compared[0]) == list(COMPARE_COLUMNS) and compared[1]["speedup"] > 0
    as_csv = cli("history", str(root / "runs"), "--format", "csv").stdout.splitlines()
    assert as_csv[0].split(",")[:4] == list(RESULT_COLUMNS[:4]) and len(as_csv) == 1 + 4
    between = cli("compare", first.run_id, second.run_id, *where, "--format", "json")
    assert between.returncode in (0, 1) and {r["verdict"] for r in json.loads(between.stdout)}
    narrow = cli("show", second.run_id, *where, "--compare", columns="80").stdout
    header = next(line for line in narrow.splitlines() if "speedup" in line)
    for kept in ("variant", "speedup", "Δ acc pts", "quality", "pareto"):
        assert kept in header, narrow
    assert "not shown at 80 columns: strategy" in narrow
    wide = cli("show", second.run_id, *where, "--compare", "--wide", columns="80").stdout
    assert "top-1 agree" in wide and "not shown" not in wide
    why = cli("compare", first.run_id, second.run_id, *where, columns="80").stdout
    assert "why" in next(line for line in why.splitlines() if "verdict" in line)
    stored = [row["warnings"] for row in shown if row["warnings"]]
    listed = cli("show", second.run_id, *where, "--warnings").stdout
    assert all(w.split(";")[0] in listed for w in stored) and (stored or "no warnings" in listed)
    summary = cli("show", second.run_id, *where).stdout
    assert (f"harness show {second.run_id} --warnings" in summary) == bool(stored)
    history = cli("history", str(root / "runs"), columns="80").stdout
    assert "model" in history and any(line.count("0.") >= 2 for line in history.splitlines())


def test_every_run_reads_as_one_dataset(runs: tuple[Path, list[RunStore]]) -> None:
    """pyarrow.dataset and DuckDB over reports/dataset: both runs, their plan and run as
    hive keys, started_at a timestamp, and the variants table with the headline speedup
    of these ordinary (unpaired) runs."""
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds

    root, stores = runs
    results = ds.dataset(root / "dataset" / "results", partitioning="hive").to_table()
    assert sorted(set(results.column("run").to_pylist())) == sorted(s.run_id for s in stores)
    assert set(results.column("plan").to_pylist()) == {"nightly0", "nightly1"}
    assert pa.types.is_timestamp(results.schema.field("started_at").type)
    glob = str(root / "dataset" / "variants" / "**" / "*.parquet")
    speedups = duckdb.sql(
        f"SELECT run, variant, speedup, speedup_low, speedup_high FROM read_parquet('{glob}', "
        "hive_partitioning = true) WHERE variant = 'int8-static' ORDER BY run"
    ).fetchall()
    assert [row[0] for row in speedups] == sorted(s.run_id for s in stores)
    assert all(low <= speedup <= high for _, _, speedup, low, high in speedups)
    samples = duckdb.sql(
        f"SELECT run, count(*) FROM read_parquet('{root / 'dataset' / 'samples' / '**' / '*.parquet'}',"
        " hive_partitioning = true) GROUP BY run"
    ).fetchall()
    assert sorted(n for _, n in samples) == [400, 400]  # 2 jobs x 200 iterations a run
    linked = root / "dataset" / "samples" / "plan=nightly0" / f"run={stores[0].run_id}"
    assert (linked / "part-0.parquet").stat().st_ino == (
        stores[0].run_dir / "samples.parquet"
    ).stat().st_ino


def test_history_and_noise_floor(runs: tuple[Path, list[RunStore]], tmp_path: Path) -> None:
    root, stores = runs
    frame, samples = load_history([root / "runs"], with_samples=True)
    assert set(frame["run_id"]) == {s.run_id for s in stores}
    assert samples is not None and len(samples) == 4 * 200
    assert noise_floor(frame) == {}  # fewer than three runs of a job: no floor yet
    out = tmp_path / "history.parquet"
    shown = subprocess.run([BIN / "harness", "history", str(root / "runs"), "--out", str(out), "--plot", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert len(pd.read_parquet(out)) == 4 and (tmp_path / "trend.png").is_file()
    # a table, and why there is no noise floor with two runs
    assert "p50 ms per run" in shown.stdout and "digits_cnn" in shown.stdout
    assert (
        "no noise floor for local yet" in shown.stdout and "its most-run job has 2" in shown.stdout
    )


def test_compare_runs_gives_a_verdict_per_job(
    runs: tuple[Path, list[RunStore]], tmp_path: Path
) -> None:
    root, (first, second) = runs
    table = compare_runs(first.frames(), second.frames()).set_index("variant")
    assert set(table.index) == {"fp32", "int8-static"}
    assert set(table["verdict"]) <= {"faster", "slower", "no change"}
    assert (table["ratio_low"] <= table["ratio"]).all() and (
        table["ratio"] <= table["ratio_high"]
    ).all()
    assert table["p_value"].between(0, 1).all()
    # a run of a different model file under the same name is not comparable, and says why
    changed = tmp_path / "changed"
    shutil.copytree(first.run_dir, changed)
    record_path = changed / "jobs" / "local.digits_cnn.fp32.cpu.t1.json"
    record = json.loads(record_path.read_text())
    assert record["model_sha256"] != "0" * 64
    record["model_sha256"] = "0" * 64  # as if the model had been retrained
    record_path.write_text(json.dumps(record))
    verdicts = compare_runs(RunStore(changed).frames(), second.frames()).set_index("variant")
    assert verdicts.loc["fp32", "verdict"] == "not comparable"
    assert "model_sha256" in verdicts.loc["fp32", "reason"]
    # ... and so is one taken after a kernel upgrade: the device identity is a key too
    record = json.loads(record_path.read_text())
    assert record["runner"]["device"]["kernel"]
    record["model_sha256"] = json.loads(
        (first.run_dir / "jobs" / "local.digits_cnn.fp32.cpu.t1.json").read_text()
    )["model_sha256"]
    record["runner"]["device"]["kernel"] = "6.99.0-upgraded"
    record_path.write_text(json.dumps(record))
    verdicts = compare_runs(RunStore(changed).frames(), second.frames()).set_index("variant")
    assert verdicts.loc["fp32", "verdict"] == "not comparable"
    assert (
        "kernel" in verdicts.loc["fp32", "reason"]
        and "6.99.0-upgraded" in verdicts.loc["fp32", "reason"]
    )
    cli = subprocess.run([BIN / "harness", "compare", first.run_id, second.run_id, "--runs-dir", str(root / "runs")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert cli.returncode in (0, 1) and "ratio" in cli.stdout


def test_calibrate_measures_a_noise_floor_that_compare_respects(
    runs: tuple[Path, list[RunStore]], tmp_path: Path
) -> None:
    root, (first, second) = runs
    runs_dir = tmp_path / "reports" / "runs"
    runs_dir.mkdir(parents=True)
    for store in (first, second):
        shutil.copytree(store.run_dir, runs_dir / store.run_id)
    done = subprocess.run(
        [BIN / "harness", "calibrate", "local", "--model", "digits_cnn", "--processes", "4",
         "--iterations", "100", "--devices-dir", str(root / "devices"),
         "--models-dir", str(root / "models"), "--runs-dir", str(runs_dir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    calibration = json.loads((tmp_path / "reports" / "calibration" / "local.json").read_text())
    # a spread, not a bound: on a loaded machine identical jobs can land over 100 % apart
    assert calibration["device"] == "local" and 0 < calibration["noise_floor"] < float("inf")
    by_processes = {int(n): f for n, f in calibration["noise_floor_by_processes"].items()}
    assert list(by_processes) == [1, 2] and by_processes[1] == calibration["noise_floor"]
    compared = subprocess.run(
        [BIN / "harness", "compare", first.run_id, second.run_id, "--runs-dir", str(runs_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert compared.returncode in (0, 1), compared.stdout + compared.stderr
    floors = read_calibrations(tmp_path / "reports" / "calibration")
    assert floors == {"local": by_processes}
    table = compare_runs(first.frames(), second.frames(), threshold=0.001, floors={"local": 10.0})
    assert (table["threshold"] == 10.0).all()  # never below the device's floor
    assert set(table["verdict"]) == {"no change"}
    table = compare_runs(
        first.frames(), second.frames(), threshold=0.001, calibrated={"local": {1: 9.0, 2: 0.0}}
    )
    assert (table["threshold"] == 9.0).all()  # single-process jobs: the 1-process floor
    budgets = tmp_path / "b.toml"
    budgets.write_text('[[budget]]\nmodel = "digits_cnn"\np50_ms = 0.5\n')
    history = subprocess.run(
        [BIN / "harness", "history", str(runs_dir), "--plot", str(tmp_path / "plots"),
         "--budgets", str(budgets)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert history.returncode == 0, history.stdout + history.stderr
    assert (tmp_path / "plots" / "trend.png").is_file()


def test_gate_extend_reruns_only_inconclusive_jobs(
    runs: tuple[Path, list[RunStore]], tmp_path: Path
) -> None:
    from harness.stats import percentile_ci

    root, (store, _) = runs
    results, samples = store.frames()
    fp32 = results.set_index("variant").loc["fp32", "job_id"]
    latencies = samples.loc[samples["job_id"] == fp32, "latency_ns"].to_numpy() / 1e6
    value, low, high = percentile_ci(latencies, 90)
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(f'[[budget]]\nmodel = "digits_cnn"\nvariant = "fp32"\np90_ms = {(low + high) / 2}\n'
                       '[[budget]]\nmodel = "digits_cnn"\nvariant = "int8-static"\np90_ms = 1000\n')  # fmt: skip
    args = [
        str(budgets),
        store.run_id,
        "--runs-dir",
        str(root / "runs"),
        "--junit",
        str(tmp_path / "j.xml"),
    ]
    before = subprocess.run(
        [BIN / "harness", "gate", *args], capture_output=True, text=True, timeout=120
    )
    assert before.returncode == 2 and "INCONCLUSIVE" in before.stdout
    extended = subprocess.run(
        [BIN / "harness", "gate", *args, "--extend"], capture_output=True, text=True, timeout=300
    )
    assert extended.returncode in (0, 1, 2), extended.stdout + extended.stderr
    assert "re-running 1 inconclusive job(s) with 4x the samples" in extended.stdout
    extension = [p for p in (root / "runs").iterdir() if "-extend-" in p.name]
    assert len(extension) == 1
    ext_results, _ = RunStore(extension[0]).frames()
    assert list(ext_results["variant"]) == ["fp32"] and list(ext_results["n"]) == [800]
    assert "int8-static" in (tmp_path / "j.xml").read_text()  # the decided case is kept
