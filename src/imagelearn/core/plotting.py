"""Matplotlib without a screen, and figures saved atomically as PNG."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from imagelearn.core.bundle import atomic_write_bytes


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (works on servers and in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write ``figure`` to ``path`` as PNG atomically and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
