"""The HTML report of a real two-device, multi-strategy run (the local device and the
loopback SSH device), opened in the system Chromium driven by Playwright (no browser
download): offline, every chart drawn, a hover's tooltip, the filter bar; the charts' specs
checked as data against the run's records."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT, SSHServer, harness, run_plan_ok
from device_files import local_device_file

from harness.analysis import compare_variants
from harness.store import RunStore

ARTIFACTS = ROOT / ".test-artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip


@pytest.fixture
def lab_run(workspace: Path, sshd: SSHServer) -> RunStore:
    (workspace / "devices" / "local.toml").write_text(local_device_file(workspace / "wd"))
    (workspace / "devices" / "loop.toml").write_text(sshd.device_toml("loop", workspace / "ssh"))
    plan = workspace / "plans" / "lab.toml"
    plan.write_text(
        'name = "lab"\ndevices = ["local", "loop"]\nmodels = ["digits_cnn"]\n'
        'variants = ["fp32", "fp16", "int8-static", "sparse-60"]\n'
        "[measure]\nwarmup = 3\niterations = 40\n[inputs]\ndims = { batch = 1 }\n"
    )
    prepared, records = run_plan_ok(plan)
    return prepared.store


def _chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("the system Chromium is needed: `apt-get install chromium` (make test does it)")
    return chromium


def test_the_report_of_a_lab_run_in_chromium(lab_run: RunStore) -> None:
    from playwright.sync_api import sync_playwright

    made = harness("report", lab_run.run_dir, "--all-images", timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    report = lab_run.run_dir / "report.html"
    for name in ("speedup_matrix", "speedup_vs_fidelity", "latency", "memory"):
        assert (lab_run.run_dir / "plots" / f"{name}.png").stat().st_size > 5_000
        assert (lab_run.run_dir / "plots" / f"{name}.svg").read_text().startswith("<svg")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        requests: list[str] = []
        problems: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(report.as_uri())
        charts = page.locator("div.vega").count()
        page.wait_for_function(f"typeof views !== 'undefined' && views.length === {charts}")
        # offline: nothing but the file itself (and the data URIs inside it)
        assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
        assert problems == []
        # the first screen: the model x variant heatmap first, every chart drawn, titled
        order = page.eval_on_selector_all("div.vega", "els => els.map(e => e.id)")
        titles = page.eval_on_selector_all("div.vega", "els => els.map(e => "
                                           "(e.querySelector('.role-title-text') || {}).textContent)")  # fmt: skip
        assert all(titles), dict(zip(order, titles, strict=True))
        assert order[:2] == ["chart-speedup_matrix", "chart-speedup_vs_fidelity"]
        marks = page.eval_on_selector_all(
            "div.vega",
            "els => els.map(e => e.querySelectorAll('.mark-symbol path, "
            ".mark-rect path, .mark-line path, .mark-rule line, .mark-text text').length)",
        )
        assert len(marks) == charts >= 6 and all(count > 0 for count in marks), marks
        # a hover shows the exact value and its interval
        point = page.locator(
            "#chart-speedup_vs_fidelity .mark-symbol path[aria-label*='variant: int8-static']"
        ).first
        point.hover()
        page.wait_for_selector("#vg-tooltip-element.visible")
        tooltip = page.inner_text("#vg-tooltip-element")
        assert "int8-static" in tooltip and "95% CI low" in tooltip
        # the device filter: the other device's points, its table and its list go away
        symbols = "#chart-speedup_vs_fidelity .mark-symbol path[aria-label*='device: local']"
        before = page.locator(symbols).count()
        assert before >= 3
        page.select_option("#filter-device", "loop")
        page.wait_for_function(f'document.querySelectorAll("{symbols}").length === 0')
        assert not page.locator("section.device[data-device='local']").is_visible()
        assert page.locator("section.device[data-device='loop']").is_visible()
        page.select_option("#filter-device", "")
        page.wait_for_function(f'document.querySelectorAll("{symbols}").length === {before}')
        # the heatmap answers per model: the model filter changes its cells, like every chart
        cells = "#chart-speedup_matrix .mark-rect path[aria-label*='variant: ']"
        assert page.locator(cells).count() == 6  # 2 devices x 3 variants of the one model
        page.evaluate("views.forEach(v => v.signal('model_filter', 'another').runAsync())")
        page.wait_for_function(f'document.querySelectorAll("{cells}").length === 0')
        page.evaluate("views.forEach(v => v.signal('model_filter', null).runAsync())")
        page.wait_for_function(f'document.querySelectorAll("{cells}").length === 6')
        # the tables and lists follow the model filter too (report/page.py's data-model)
        rows = page.locator("section.device tr[data-model='digits_cnn']")
        page.eval_on_selector("#filter-model", "s => { s.add(new Option('x', 'x')); }")
        page.select_option("#filter-model", "x")
        assert rows.count() == 8 and not rows.first.is_visible()
        page.select_option("#filter-model", "")
        assert rows.first.is_visible()
        assert "~" in page.inner_text("#ship .legend")  # the mark is explained on the page
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        # a phone: the page itself does not scroll sideways (wide charts scroll in their box)
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(report.as_uri())
        phone.wait_for_function(f"typeof views !== 'undefined' && views.length === {charts}")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        assert phone.evaluate("getComputedStyle(document.querySelector('h1')).fontSize") == "19.2px"
        phone.screenshot(path=str(ARTIFACTS / "report-390px.png"), full_page=False)
        browser.close()
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000
    _check_specs_against_records(lab_run)


def _check_specs_against_records(store: RunStore) -> None:
    """The charts as data: each point of the speedup-vs-fidelity spec is a variant's
    speedup as compare_variants computes it from the stored run; each matrix cell the
    strategy's speedup on that device."""
    from harness.report import charts, detail_charts

    results, samples = store.frames()
    comparison = compare_variants(results, samples, store.comparisons())
    spec = charts.spec(charts.speedup_vs_fidelity(comparison))
    [values] = spec["datasets"].values()
    plotted = {(p["device"], p["variant"]): p["speedup"] for p in values}
    expected = {(r.device, r.variant): r.speedup for r in comparison.itertuples()}
    assert len(plotted) == 8 and plotted == pytest.approx(expected)  # 2 devices x 4 variants
    [cells] = charts.spec(charts.speedup_matrix(comparison))["datasets"].values()
    assert {(c["model"], c["variant"], c["device"]) for c in cells} == {
        ("digits_cnn", v, d)
        for v in ("fp16", "int8-static", "sparse-60")
        for d in ("local", "loop")
    }
    for cell in cells:  # each cell is that variant's own speedup and interval, no average
        row = comparison[(comparison["device"] == cell["device"])
                         & (comparison["variant"] == cell["variant"])].iloc[0]  # fmt: skip
        assert (cell["speedup"], cell["speedup_low"], cell["speedup_high"]) == pytest.approx(
            (row["speedup"], row["speedup_low"], row["speedup_high"]))  # fmt: skip
        assert cell["label"].startswith(f"{row['speedup']:.2f}×")
    [memory] = charts.spec(detail_charts.memory(results))["datasets"].values()
    assert {m["label"]: m["model_mem_mb"] for m in memory} == {
        f"{r.model}/{r.variant} t{r.threads}": r.model_mem_mb for r in results.itertuples()
    }
