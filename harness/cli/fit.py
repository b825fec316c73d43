"""Tables that fit the terminal: never a cut cell ("peak_r…") or a wrapped number. A table
wider than the terminal (off a terminal: `COLUMNS`, else 120) first lets its prose columns
wrap, then drops its least needed columns, in the order the caller gives (then from the
right), and says which."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# off a terminal (CI logs, pipes) the width tables are made to fit
PIPED_WIDTH = 120
# a prose column (a reason, a note) wraps, but keeps at least this many characters a line
PROSE_MIN = 24


@dataclass(frozen=True)
class Column:
    header: str
    numeric: bool = False
    prose: bool = False  # wraps instead of widening the table
    narrowest: int = PROSE_MIN  # a prose column's least width


def piped_width() -> int:
    """The width off a terminal: `COLUMNS` where the caller set it (a CI log, `COLUMNS=80
    harness show | less`), else PIPED_WIDTH."""
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) >= 40 else PIPED_WIDTH


def width_for(console: Any) -> int:
    """The width tables fit: the terminal's, or off a terminal `piped_width()`."""
    return console.width if console.is_terminal else piped_width()


def table_width(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> int:
    """The printed width: cells, their padding (1 a side), a separator between columns
    and one at each edge (rich's SIMPLE_HEAD box); prose columns at their narrowest."""
    total = len(columns) + 1
    for i, column in enumerate(columns):
        natural = max([len(column.header), *(len(row[i]) for row in rows)])
        total += (min(natural, column.narrowest) if column.prose else natural) + 2
    return total


def lift_uniform(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], headers: Sequence[str]
) -> tuple[list[Column], list[list[str]], dict[str, str]]:
    """Columns among `headers` that hold one value in every row leave the table; their
    values are returned to be said once above it (`on local, CPUExecutionProvider t1`)."""
    lifted = {
        column.header: rows[0][i]
        for i, column in enumerate(columns)
        if column.header in headers and rows and len({row[i] for row in rows}) == 1
    }
    kept = [i for i, column in enumerate(columns) if column.header not in lifted]
    return [columns[i] for i in kept], [[row[i] for i in kept] for row in rows], lifted


def print_fitted(
    console: Any,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    drop_first: Sequence[str] = (),
    styles: Sequence[str | None] | None = None,
) -> list[str]:
    """Print `rows` under `columns` within the console's width; returns the headers that
    did not fit (also said under the table)."""
    from rich import box
    from rich.table import Table

    width = width_for(console)
    kept = list(range(len(columns)))

    def needed(indexes: list[int]) -> int:
        return table_width(
            [columns[i] for i in indexes], [[row[i] for i in indexes] for row in rows]
        )

    dropped = []
    # the caller's order first, then from the right; the first column (what a row is) stays
    order = [*drop_first, *(c.header for c in reversed(columns[1:]))]
    for header in order:
        if needed(kept) <= width:
            break
        index = next((i for i in kept if columns[i].header == header), None)
        if index is not None:
            kept.remove(index)
            dropped.append(header)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for i in kept:
        column = columns[i]
        table.add_column(
            column.header,
            justify="right" if column.numeric else "left",
            no_wrap=not column.prose,
            overflow="fold" if column.prose else "ellipsis",
            min_width=min(column.narrowest, len(column.header)) if column.prose else None,
        )
    for index, row in enumerate(rows):
        table.add_row(*(row[i] for i in kept), style=styles[index] if styles else None)
    console.print(table)
    if dropped:
        console.print(
            f"  (not shown at {width} columns: {', '.join(dropped)}; a wider terminal or "
            "`harness report` has them)",
        )
    return dropped
