"""Matplotlib without a screen, figures saved atomically as PNG, and the conventions every plot
shares: whole-number ticks for counts (epochs), one distinct colour per category."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from imagelearn.core.bundle import atomic_write_bytes

Color = tuple[int, int, int]


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


def integer_ticks(axes: Any) -> None:
    """Major ticks of ``axes``' x axis at whole numbers only (epochs: 1, 2, 3, not 1.25, 1.5)."""
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def category_colors(n_categories: int) -> list[Color]:
    """Distinct RGB colours (0-255) for ``n_categories`` categories: matplotlib's tab10, then
    tab20; beyond 20 the colours repeat."""
    from matplotlib import colormaps

    table = colormaps["tab10" if n_categories <= 10 else "tab20"].colors
    return [
        tuple(round(255 * channel) for channel in table[index % len(table)][:3])
        for index in range(n_categories)
    ]
