"""Tables that fit the terminal: never a cut cell ("peak_r…") or a wrapped number. A table
wider than the terminal (120 columns off a terminal) first lets its prose columns wrap,
then drops its least needed columns, in the order the caller gives (then from the right),
and says which."""

from __future__ import annotations

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

    width = min(console.width, PIPED_WIDTH) if not console.is_terminal else console.width
    kept = list(range(len(columns)))

    def needed(indexes: list[int]) -> int:
        """The printed width: cells, their padding (1 a side), a separator between
        columns and one at each edge (rich's SIMPLE_HEAD box)."""
        total = len(indexes) + 1
        for i in indexes:
            natural = max([len(columns[i].header), *(len(row[i]) for row in rows)])
            total += (min(natural, PROSE_MIN) if columns[i].prose else natural) + 2
        return total

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
            min_width=min(PROSE_MIN, len(column.header)) if column.prose else None,
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
