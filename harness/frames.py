"""The one untyped shape the decisions keep on purpose: a row of a table (results,
comparisons, profiles, the variant analysis, a history), as pandas gives it
(`frame.to_dict("records")`) and takes it back (`pd.DataFrame(rows)`). Its columns and
their types are the table's own (rows.RESULT_COLUMN_TYPES, comparisons.
COMPARISON_COLUMN_TYPES, ...), checked where the table is written."""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]  # column -> value
