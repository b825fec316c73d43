"""`summary.md`: a run for a pull request's comment or a CI job's step summary. Pure: the
report model in, GitHub-flavoured Markdown out.

What GitHub renders it in decides its shape: what needs a look comes first, the tables
are narrow (seven columns, one line a row), a picture is linked only where the caller
gives a URL the page can reach (a relative link is broken in a comment), and the text
stays under a comment's 65,536 characters (the rows past that are in report.html)."""

from __future__ import annotations

from harness.report.model import ReportModel
from harness.report.page import warning_summary
from harness.report.verdict import markdown_summary

# (key of a table row, title): the columns a reader of a PR decides with
SUMMARY_COLUMNS = [
    ("model", "model"), ("variant", "variant"), ("p50_ms", "p50 ms"), ("p50_ci", "95% CI"),
    ("speedup", "vs fp32"), ("size_kb", "KB"), ("quality", "quality"),
]  # fmt: skip
COMMENT_LIMIT = 65_536
# what a note must say to be listed before everything else
NEEDS_A_LOOK = ("did not succeed", "SLOWER", "quality loss", "results not comparable")


def render_markdown(model: ReportModel, image_url: str | None = None) -> str:
    """`image_url`: where plots/ is served (a CI artifact, GitHub Pages); without it the
    summary has no pictures."""
    head = [f"# Benchmark report `{model.run_id}`", ""]
    if model.verdict is not None:
        head += [markdown_summary(model.verdict), ""]
    attention = [(w, t) for w, t in model.notes if any(k in t for k in NEEDS_A_LOOK)]
    if attention:
        head += [f"## Needs a look ({len(attention)})", ""]
        head += [f"- **{where}**: {_cell(text)}" for where, text in attention] + [""]
    head += ["## Worth shipping", ""]
    for device, variants in model.shipping.items():
        head += [f"- **{device}**: " + ("; ".join(variants) or "none beats fp32 here")]
    head.append("")
    if image_url:
        base = image_url.rstrip("/")
        for name in ("speedup_matrix", "speedup_vs_fidelity"):
            if name in model.chart_files:
                png = model.chart_files[name]["PNG"].removeprefix("plots/")
                head += [f"![{name.replace('_', ' ')}]({base}/{png})", ""]
    others = [note for note in model.notes if note not in attention]
    tail = _profile_diffs(model) + _warnings(others)
    tables, cut = _tables(model, COMMENT_LIMIT - len("\n".join(head + tail)) - 200)
    if cut:
        tables += [f"*{cut} more rows in report.html*", ""]
    return "\n".join(head + tables + tail).rstrip() + "\n"


def _tables(model: ReportModel, room: int) -> tuple[list[str], int]:
    """A table per device, as many rows as `room` characters hold; the rows left out."""
    lines: list[str] = []
    left_out = 0
    for device, rows in model.tables.items():
        shown = [(k, t) for k, t in SUMMARY_COLUMNS if any(row.get(k) for row in rows)]
        align = "".join("---|" if k in ("model", "variant") else "--:|" for k, _ in shown)
        table = [f"## {device}", "", "| " + " | ".join(t for _, t in shown) + " |", "|" + align]
        for row in rows:
            line = "| " + " | ".join(_cell(_with_status(row, k)) for k, _ in shown) + " |"
            if sum(len(x) + 1 for x in lines + table) + len(line) > room:
                left_out += 1
                continue
            table.append(line)
        lines += table + [""]
    return lines, left_out


def _with_status(row: dict[str, str], key: str) -> str:
    """A failed job's status where its figure would be."""
    if key == "p50_ms" and row.get("status") not in (None, "", "ok"):
        return f"**{row['status']}**"
    return row.get(key) or ""


def _profile_diffs(model: ReportModel) -> list[str]:
    if not model.profile_diffs:
        return []
    keys = ("device", "model", "variant", "setting", "changes")
    lines = ["## Where the time went, against fp32", ""]
    lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(d[k]) for k in keys) + " |" for d in model.profile_diffs]
    return lines + [""]


def _warnings(notes: list[tuple[str, str]]) -> list[str]:
    summary = warning_summary(notes)
    if not summary:
        return []
    total = sum(count for _, count, _ in summary)
    lines = [f"<details><summary>Warnings: {total} in {len(summary)} kind(s), each in "
             "report.html</summary>", ""]  # fmt: skip
    lines += [f"- {count}× {_cell(kind)}; worst: {_cell(worst)}" for kind, count, worst in summary]
    return lines + ["", "</details>", ""]


def _cell(text: str) -> str:
    """Text safe inside a table cell or a list item: no pipe, no line break, no HTML."""
    return text.replace("|", "/").replace("\n", " ").replace("<", "&lt;")
