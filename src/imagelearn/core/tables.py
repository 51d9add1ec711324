"""Rows of results as CSV text."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text with a header taken from the keys of the first row (empty text for no rows)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()
