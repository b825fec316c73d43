"""Results for scripts: `--format json|csv` prints records with stable, documented fields
(docs/outputs.md) on stdout, nothing else; `table` (the default) is for people."""

from __future__ import annotations

import csv
import enum
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import typer


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


FormatOption = Annotated[
    Format,
    typer.Option(
        "--format",
        help="table (for people), or json / csv for scripts: the fields docs/outputs.md lists.",
    ),
]


WIDE_COLUMNS = 400


def _wide(value: bool) -> None:
    """Tables as wide as they need: every column kept (the terminal wraps the lines)."""
    if value:
        os.environ["COLUMNS"] = str(WIDE_COLUMNS)


WideOption = Annotated[
    bool,
    typer.Option("--wide", callback=_wide, is_eager=True, help="Keep every column."),
]


def plain(value: Any) -> Any:
    """A value JSON and CSV can hold: numpy scalars as Python ones, NaN and NA as null,
    timestamps as ISO 8601."""
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def print_records(records: Iterable[dict[str, Any]], fields: Sequence[str], fmt: Format) -> None:
    """Each record's `fields`, in that order, as a JSON array of objects or CSV with a
    header row."""
    rows = [{field: plain(record.get(field)) for field in fields} for record in records]
    if fmt == Format.json:
        json.dump(rows, sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:  # a list or a table in a cell: as JSON
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()}
        )
