"""The results table that `harness run` and `harness show` print: data in, data out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

TABLE_COLUMNS = (
    "variant", "device", "runtime", "provider", "threads", "status", "n", "p50_ms", "p90_ms",
    "p99_ms", "p50_ci", "load_ms", "peak_rss_mb",
)  # fmt: skip


def latency_tables(results: pd.DataFrame) -> list[tuple[str, list[dict[str, Any]]]]:
    """One table per model, a row per variant × device × setting, in job order.

    Each row also has a `note` (warnings, or the error of a failed job), printed below."""
    tables = []
    for model, group in results.groupby("model", sort=False):
        rows = [_row(record) for record in group.to_dict("records")]
        tables.append((str(model), rows))
    return tables


def _row(r: dict[str, Any]) -> dict[str, Any]:
    ok = r["status"] == "ok"
    return {
        "variant": r["variant"],
        "device": r["device"],
        "runtime": f"{r['runtime']} {_text(r['runtime_version'])}".strip(),
        "provider": str(r["provider"]).removesuffix("ExecutionProvider"),
        "threads": _int(r["threads"]),
        "status": r["status"],
        "n": _int(r["n"]) if ok else "",
        "p50_ms": _num(r["p50_ms"]) if ok else "",
        "p90_ms": _num(r["p90_ms"]) if ok else "",
        "p99_ms": _num(r["p99_ms"]) if ok else "",
        "p50_ci": _ci(r) if ok else "",
        "load_ms": _num(r["load_ms"], 1),
        "peak_rss_mb": _num(r["peak_rss_mb"], 1),
        "note": _text(r["warnings"]) if ok else _text(r["error"]),
    }


def _ci(r: dict[str, Any]) -> str:
    low, high, p50 = r["p50_ci_low_ms"], r["p50_ci_high_ms"], r["p50_ms"]
    if _missing(low) or _missing(high) or not p50:
        return ""
    return f"±{(high - low) / 2 / p50:.1%}"


def _num(value: Any, digits: int = 3) -> str:
    return "" if _missing(value) else f"{value:.{digits}f}"


def _text(value: Any) -> str:
    return "" if _missing(value) else str(value)


def _int(value: Any) -> str:
    return "" if _missing(value) else str(int(value))


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))
