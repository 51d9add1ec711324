"""Progress bars for long work, one per stage, on standard error.

A bar stays hidden when asked to (``IMAGELEARN_QUIET``: tests, ``--quiet``), for work that
ends within :data:`PROGRESS_DELAY` seconds (so short library calls, such as one search of an
index, draw nothing) and for a stage of a single item, where a bar counts nothing. A bar
counts what its stage has done, values read from a cache included.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

#: Seconds of work before a bar appears.
PROGRESS_DELAY = 1.0


class Counter(Protocol):
    """What long work advances: a bar from :func:`progress_bar`, or anything counting steps."""

    def update(self, n: float = 1) -> Any: ...


def progress_enabled() -> bool:
    """False when ``IMAGELEARN_QUIET`` is set to a non-empty value other than ``0``."""
    return os.environ.get("IMAGELEARN_QUIET", "") in ("", "0")


def progress_bar(
    description: str, total: int | None = None, unit: str = "img", unit_scale: bool = False
) -> tqdm:
    """A bar on standard error to advance with ``update(n)`` (a context manager).

    Parameters
    ----------
    description : str
        The stage, as the bar's label.
    total : int, optional
        Steps of the stage; a total of 0 or 1 draws no bar.
    unit : str
        What a step is (``img``, ``iteration``, ``descriptor``...).
    unit_scale : bool
        Show large counts with a suffix (``1.2M`` descriptors).
    """
    return tqdm(
        desc=description,
        total=total,
        unit=unit,
        unit_scale=unit_scale,
        disable=not progress_enabled() or (total is not None and total <= 1),
        leave=False,
        dynamic_ncols=True,
        delay=PROGRESS_DELAY,
    )


def progress(
    iterable: Iterable[T], description: str, total: int | None = None, unit: str = "img"
) -> Iterator[T]:
    """Wrap ``iterable`` in a bar like :func:`progress_bar`'s, counting the items it yields
    (``total`` defaults to ``len(iterable)`` when it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with progress_bar(description, total, unit) as bar:
        for item in iterable:
            yield item
            bar.update(1)
