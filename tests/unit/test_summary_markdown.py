"""summary.md as GitHub shows it: rendered by a CommonMark + GFM-tables renderer
(markdown-it-py), it has no broken link, what needs a look comes first, its tables are
narrow and whole, and it fits a PR comment."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from harness.report.model import ReportModel
from harness.report.summary import COMMENT_LIMIT, SUMMARY_COLUMNS, render_markdown


def render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def model_of(jobs: int) -> ReportModel:
    rows = [
        {"model": f"model_{i // 4}", "variant": ["fp32", "fp16", "int8", "pruned"][i % 4],
         "threads": "1", "status": "ok" if i != 5 else "timeout", "n": "300",
         "p50_ms": f"{1 + i / 10:.3f}", "p50_ci": "0.98–1.02", "p90_ms": "1.2", "p99_ms": "1.4",
         "speedup": "1.21x [1.1–1.3]", "size_kb": "120", "peak_rss_mb": "80", "accuracy": "",
         "top1_agreement": "99.0%", "psnr_db": "41.0", "quality": "ok n=64 | fine"}
        for i in range(jobs)
    ]  # fmt: skip
    notes = [
        ("pi: model_1/fp16 t1", "did not succeed (timeout): the job ran past 120 s"),
        ("pi: model_0/int8 t1", "SLOWER than fp32 on this device (0.6x)"),
        *[(f"pi: model_{i}/fp32 t1", f"unstable: CV {20 + i}% > 10%") for i in range(jobs // 4)],
    ]
    return ReportModel(
        "r1", {}, {"pi": rows}, [], {"pi": ["model_0/int8 (CPU t1): 1.5x"]}, notes,
        chart_files={"speedup_matrix": {"PNG": "plots/speedup_matrix.png"}},
    )  # fmt: skip


def test_the_summary_renders_whole_with_what_needs_a_look_first() -> None:
    text = render_markdown(model_of(22))
    html = render(text)
    assert text.index("## Needs a look (2)") < text.index("## Worth shipping") < text.index("## pi")
    assert "<img" not in html and "href=" not in html  # no relative link, which breaks
    (table,) = re.findall(r"<table>.*?</table>", html, flags=re.S)
    header = re.findall(r"<th[^>]*>(.*?)</th>", table)
    assert header == [title for _, title in SUMMARY_COLUMNS]
    rows = table.split("<tr>")[2:]
    assert len(rows) == 22 and all(row.count("<td") == len(header) for row in rows)
    assert "<strong>timeout</strong>" in rows[5]  # a failed job's status where its figure is
    # the warnings folded, a line per kind with its worst case
    assert "<details><summary>Warnings: 5 in 1 kind(s)" in html
    assert "5× unstable; worst: pi: model_4/fp32 t1: unstable: CV 24% &gt; 10%" in html


def test_pictures_only_where_they_can_be_reached() -> None:
    html = render(render_markdown(model_of(4), image_url="https://ci.example/artifacts/r1/plots/"))
    assert '<img src="https://ci.example/artifacts/r1/plots/speedup_matrix.png"' in html


def test_a_large_lab_fits_a_pr_comment_and_says_what_was_left_out() -> None:
    text = render_markdown(model_of(1200))
    assert len(text) < COMMENT_LIMIT
    left_out = int(re.search(r"\*(\d+) more rows in report.html\*", text).group(1))
    assert left_out > 0 and text.count("\n| model_") + left_out == 1200
    assert text.index("## Needs a look") < text.index("## pi")
