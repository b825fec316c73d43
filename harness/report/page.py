"""`report.html`: one self-contained page (Vega, Vega-Lite and vega-embed inlined, every
chart's spec and data in the page: it opens with no network). Pure: the report's parts
in, HTML text out.

The first screen answers "which variant do we ship on which device": the gate's verdict,
the strategy × device matrix of speedups (first when the run covers several devices), the
speedup against fidelity per device with the front drawn, and per device the variants
worth shipping (Pareto-optimal on latency, fidelity, size and memory, within budgets).
"""

from __future__ import annotations

import html
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.gate import GateVerdict
    from harness.report.model import ReportModel
    from harness.stored_run import RunMeta

e = html.escape
TEXT_COLUMNS = {"model", "variant", "status", "setting", "changes"}
FILTER_KEYS = ("device", "model", "strategy")
METADATA_KEYS = ("run_id", "started_at", "finished_at", "status_counts", "controller", "devices")


def split_warnings(text: str) -> list[str]:
    """A row's "; "-joined warnings, split where no parenthesis is open."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and text.startswith("; ", index):
            parts.append(text[start:index])
            start = index + 2
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def warning_kind(message: str) -> str:
    """What a warning is about, without its figures: its label before a colon, else its
    words with the numbers taken out."""
    head, colon, _ = message.partition(":")
    if colon and len(head) <= 40:
        return head.strip()
    figures = re.sub(r"(?<![\w.])[-+±]?\d[\d.,]*(?:\s?%|x\b|×)?", "…", message)
    return re.sub(r"\s+", " ", figures)[:70].strip()


def grouped_warnings(notes: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(where, message) pairs by kind, the largest group first."""
    groups: dict[str, list[str]] = {}
    for where, message in notes:
        for one in split_warnings(message):
            groups.setdefault(warning_kind(one), []).append(f"{where}: {one}" if where else one)
    return dict(sorted(groups.items(), key=lambda item: -len(item[1])))


def warning_summary(notes: list[tuple[str, str]]) -> list[tuple[str, int, str]]:
    """One line's worth a kind, the largest group first: (kind, how many, the worst case
    as `where: message`): the case whose first figure is largest (the worst CV, the widest
    spread), else the first."""
    cases: dict[str, list[tuple[float, str]]] = {}
    for where, message in notes:
        for one in split_warnings(message):
            found = re.search(r"\d+(?:\.\d+)?", one)
            figure = float(found.group()) if found else 0.0
            cases.setdefault(warning_kind(one), []).append((figure, f"{where}: {one}"))
    ordered = sorted(cases.items(), key=lambda item: -len(item[1]))
    return [(kind, len(items), max(items, key=lambda c: c[0])[1]) for kind, items in ordered]


def _align(key: str) -> str:
    """Text left, numbers right (the CSS classes)."""
    return "text" if key in TEXT_COLUMNS else "num"


def _cell_class(key: str) -> str:
    return f"{_align(key)} ci" if key.endswith("_ci") else _align(key)


def _table(rows: list[dict[str, str]], columns: list[tuple[str, str]], cls: str) -> str:
    """Empty columns dropped; text left, numbers right; a row's class from its status and
    speed (failed, slower, worth shipping)."""
    shown = [(key, title) for key, title in columns if any(row.get(key) for row in rows)]
    head = "".join(f"<th class='{_align(k)}'>{e(t)}</th>" for k, t in shown)
    body = []
    for row in rows:
        cells = "".join(f"<td class='{_cell_class(k)}'>{e(row.get(k, ''))}</td>" for k, _ in shown)
        data = "".join(f" data-{key}='{e(row[key])}'" for key in FILTER_KEYS if row.get(key))
        body.append(f"<tr class='{e(row.get('row_class', ''))}'{data}>{cells}</tr>")
    return (
        f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _chart(name: str, spec: dict[str, Any], files: dict[str, str]) -> str:
    """A chart's place in the page, its spec beside it, its data (CSV) and images a click
    away in plots/ beside the page (written by report/document.py, not inlined: the page
    stays small)."""
    inline = json.dumps(spec, separators=(",", ":")).replace("</", "<\\/")  # no "</script>"
    links = [f"<a href='{e(path)}'>{'data (CSV)' if kind == 'CSV' else e(kind)}</a>"
             for kind, path in files.items()]  # fmt: skip
    return (
        f"<figure class='chart'><div class='vega' id='chart-{e(name)}'></div>"
        f"<script type='application/json' id='spec-{e(name)}'>"
        f"{inline}</script>"
        f"<figcaption>{e(name.replace('_', ' '))} · {' · '.join(links)}</figcaption></figure>"
    )


def chart_values(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a chart draws (its inlined datasets)."""
    datasets = spec.get("datasets") or {}
    return [row for values in datasets.values() for row in values]


def chart_csv(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def render_html(model: ReportModel, script: str) -> str:
    """The page of `model`; its charts are Vega-Lite specs by name (report/charts.py),
    `script` the JavaScript that renders them (vl-convert's bundle of Vega, Vega-Lite and
    vega-embed)."""
    run_id, tables, charts, chart_files = (
        model.run_id,
        model.tables,
        model.charts,
        model.chart_files,
    )
    verdict, profile_diffs, notes = model.verdict, model.profile_diffs, model.notes
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width'>",
        f"<title>harness report {e(run_id)}</title>",
        f"<style>{CSS}</style></head><body><h1>Benchmark report <code>{e(run_id)}</code></h1>",
    ]
    parts.append(_filter_bar(model.filters))
    if verdict is not None:
        parts.append(_verdict(verdict))
    first = ["speedup_matrix", "speedup_vs_fidelity"]
    parts.append("<section id='ship'><h2>Which variant to ship on which device</h2>")
    parts += [_chart(n, charts[n], chart_files.get(n, {})) for n in first if n in charts]
    parts.append("<div class='shipping'>")
    for device, variants in model.shipping.items():
        # each line is `model/variant (setting): ...`: the model filter hides the others'
        listed = (
            "".join(f"<li data-model='{e(v.split('/', 1)[0])}'>{e(v)}</li>" for v in variants)
            or "<li>none beats fp32 here</li>"
        )
        parts.append(
            f"<div data-device='{e(device)}'><h3>{e(device)}: worth shipping</h3>"
            f"<ul>{listed}</ul></div>"
        )
    parts.append(
        "</div><p class='legend'>Worth shipping: no other variant of the model is at least as "
        "fast, as faithful, as small and as light (and better in one); not slower than fp32 and "
        "faster for sure or at most 90 % of its size or memory; within the budgets. Speedups "
        "are fp32's latency over the variant's, with 95 % intervals; fp32 is the cross at "
        "(0, 1), the dashed line the variants no other beats on both speed and fidelity, a "
        "black ring a variant worth shipping. <b>~</b> marks a speedup within the noise: the "
        "95 % interval includes no change, or the processes of the job disagree by more than "
        "the difference.</p></section>"
    )
    for device, rows in tables.items():
        parts.append(f"<section class='device' data-device='{e(device)}'><h2>{e(device)}</h2>")
        parts.append(
            "<div class='scroll'>" + _table(rows, model.columns, "results") + "</div></section>"
        )
    if profile_diffs:
        keys = [(k, k) for k in ("device", "model", "variant", "setting")]
        keys.append(("changes", "largest changes by op type, ms per run"))
        parts.append("<section id='profiles'><h2>Where the time went, against fp32</h2>")
        parts.append(_table(profile_diffs, keys, "diff") + "</section>")
    parts.append(_warnings(grouped_warnings(notes)))
    parts.append("<section id='plots'><h2>Charts</h2>")
    parts += [_chart(n, s, chart_files.get(n, {})) for n, s in charts.items() if n not in first]
    if "power" not in charts:
        parts.append("<p>No power samples in this run: energy per inference is not measured.</p>")
    parts.append("</section>" + _metadata(model.meta))
    parts.append(f"<script>{script}</script><script>{RENDER}</script></body></html>")
    return "".join(parts)


def _filter_bar(filters: dict[str, list[str]]) -> str:
    """One drop-down per key: it filters every chart (their `<key>_filter` signal) and the
    tables' rows and device sections."""
    selects = []
    for key, values in filters.items():
        options = "".join(f"<option value='{e(v)}'>{e(v)}</option>" for v in values)
        selects.append(
            f"<label>{e(key)} <select id='filter-{e(key)}' data-filter='{e(key)}'>"
            f"<option value=''>all</option>{options}</select></label>"
        )
    return f"<nav id='filters'>Show: {' '.join(selects)}</nav>"


def _verdict(verdict: GateVerdict) -> str:
    rows = [
        {"case": case.name, "metric": check.metric, "outcome": check.outcome,
         "measured": check.message, "row_class": check.outcome}
        for case in verdict.cases
        for check in case.checks
    ]  # fmt: skip
    columns = [("case", "case"), ("metric", "metric"), ("outcome", "outcome"),
               ("measured", "measured")]  # fmt: skip
    table = _table(rows, columns, "verdict-table").replace("class='num'", "class='text'")
    return (
        f"<section id='verdict' class='verdict {e(verdict.outcome)}'><h2>Release gate: "
        f"<span class='outcome'>{e(verdict.outcome.upper())}</span></h2>{table}</section>"
    )


def _warnings(groups: dict[str, list[str]]) -> str:
    if not groups:
        return "<section id='warnings'><h2>Warnings</h2><p>none</p></section>"
    total = sum(len(v) for v in groups.values())
    parts = [f"<section id='warnings'><h2>Warnings ({total})</h2>"]
    for kind, items in groups.items():
        parts.append(
            f"<details class='warning-group'><summary>{e(kind)} <span class='count'>"
            f"({len(items)})</span></summary><ul>{''.join(f'<li>{e(i)}</li>' for i in items)}"
            "</ul></details>"
        )
    return "".join(parts) + "</section>"


def _metadata(meta: RunMeta) -> str:
    rows = []
    for key in METADATA_KEYS:
        value = meta.get(key)
        if isinstance(value, dict):
            value = ", ".join(
                f"{k} ({v.get('transport', '')})" if isinstance(v, dict) else f"{k}: {v}"
                for k, v in value.items()
            )
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        shown = "" if value is None else str(value)
        rows.append(
            f"<tr><th class='text'>{e(key.replace('_', ' '))}</th>"
            f"<td class='text'>{e(shown)}</td></tr>"
        )
    table = f"<table class='meta'>{''.join(rows)}</table>"
    return f"<section id='metadata'><h2>Run metadata</h2>{table}</section>"


RENDER = """
var views = [];
document.querySelectorAll('div.vega').forEach(function (place) {
  var spec = JSON.parse(document.getElementById(place.id.replace('chart-', 'spec-')).textContent);
  vegaEmbed('#' + place.id, spec, {actions: {export: true, source: true, compiled: false,
    editor: false}, renderer: 'svg'}).then(function (result) { views.push(result.view); })
    .catch(function (error) {
      place.textContent = 'chart failed: ' + error; console.error(error); });
});
function applyFilters() {
  var chosen = {};
  document.querySelectorAll('select[data-filter]').forEach(function (select) {
    chosen[select.dataset.filter] = select.value || null;
  });
  views.forEach(function (view) {
    Object.keys(chosen).forEach(function (key) {
      try { view.signal(key + '_filter', chosen[key]); } catch (missing) { /* not in this chart */ }
    });
    view.runAsync();
  });
  document.querySelectorAll('[data-device], [data-model], [data-strategy]').forEach(function (el) {
    var shown = Object.keys(chosen).every(function (key) {
      var mine = el.getAttribute('data-' + key);
      return !chosen[key] || mine === null || mine === chosen[key];
    });
    el.style.display = shown ? '' : 'none';
  });
}
document.querySelectorAll('select[data-filter]').forEach(function (select) {
  select.addEventListener('change', applyFilters);
});
"""

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1500px}
.scroll,figure.chart,.vega{max-width:100%;overflow-x:auto}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px}th{background:#f0f0f0}
.num{text-align:right;font-variant-numeric:tabular-nums}.text{text-align:left}
td.ci{white-space:nowrap}
tr.error td,tr.timeout td,tr.skipped td,tr.fail td,tr.interrupted td{background:#fde2e2}
tr.slower td{background:#fff0e0}tr.ship td{background:#e6f4ea}
tr.inconclusive td,tr.missing td{background:#fff4d6}
.verdict.pass .outcome{color:#1a7f37}.verdict.fail .outcome{color:#cf222e}
.verdict.inconclusive .outcome,.verdict.missing .outcome{color:#9a6700}
figure.chart{margin:1em 0}figcaption{font-size:12px;color:#555}
.shipping{display:flex;flex-wrap:wrap;gap:2em}.shipping h3{font-size:1em;margin:.3em 0}
.legend{font-size:12px;color:#555}details.warning-group{margin:.3em 0}
details summary{cursor:pointer}.count{color:#666}
#vg-tooltip-element{font-size:12px}
nav#filters{background:#fafafa;padding:.4em;border:1px solid #ddd;z-index:5}
nav#filters label{margin-right:1em}
@media (max-width:600px){body{margin:.6em}h1{font-size:1.2em}
table{font-size:12px;display:block;overflow-x:auto;max-width:100%}
nav#filters label{display:block;margin:.2em 0}}
"""
