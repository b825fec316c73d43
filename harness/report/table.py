"""The results table that `harness run` and `harness show` print, and the cell formatting
every table of the reports shares (terminal, HTML, Markdown): data in, text out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.frames import Row

if TYPE_CHECKING:
    import pandas as pd

TERMINAL_COLUMNS = (
    "variant", "device", "runtime", "provider", "threads", "status", "n", "p50_ms", "p90_ms",
    "p99_ms", "p50_ci", "load_ms", "peak_rss_mb",
)  # fmt: skip


def latency_tables(results: pd.DataFrame) -> list[tuple[str, list[Row]]]:
    """One table per model, a row per variant × device × setting, in job order.

    Each row also has a `note` (warnings, or the error of a failed job), printed below."""
    tables = []
    for model, group in results.groupby("model", sort=False):
        rows = [_row(record) for record in group.to_dict("records")]
        tables.append((str(model), rows))
    return tables


def _row(r: Row) -> Row:
    ok = r["status"] == "ok"
    return {
        "variant": r["variant"],
        "device": r["device"],
        "runtime": f"{r['runtime']} {text(r['runtime_version'])}".strip(),
        "provider": str(r["provider"]).removesuffix("ExecutionProvider"),
        "threads": integer(r["threads"]),
        "status": r["status"],
        "n": integer(r["n"]) if ok else "",
        "p50_ms": num(r["p50_ms"]) if ok else "",
        "p90_ms": num(r["p90_ms"]) if ok else "",
        "p99_ms": num(r["p99_ms"]) if ok else "",
        "p50_ci": ci_half_width(r) if ok else "",
        "load_ms": num(r["load_ms"], 1),
        "peak_rss_mb": num(r["peak_rss_mb"], 1),
        "note": text(r["warnings"]) if ok else text(r["error"]),
    }


def ci_half_width(r: Row) -> str:
    """The 95 % CI of the median as ± a share of it: `±0.4%`."""
    low, high, p50 = r["p50_ci_low_ms"], r["p50_ci_high_ms"], r["p50_ms"]
    if missing(low) or missing(high) or not p50:
        return ""
    return f"±{(high - low) / 2 / p50:.1%}"


def num(value: Any, digits: int = 3) -> str:
    return "" if missing(value) else f"{float(value):.{digits}f}"


def text(value: Any) -> str:
    return "" if missing(value) else str(value)


def integer(value: Any) -> str:
    return "" if missing(value) else str(int(value))


def missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def ci_range(row: Row) -> str:
    """The 95 % CI of the median as its two ends in ms: `1.012–1.034`."""
    if missing(row["p50_ci_low_ms"]):
        return ""
    return f"{row['p50_ci_low_ms']:.3f}–{row['p50_ci_high_ms']:.3f}"


def pct(value: Any) -> str:
    return "" if missing(value) else f"{float(value):.1%}"
