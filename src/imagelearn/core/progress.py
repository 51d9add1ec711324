"""Progress bars that stay quiet when asked to (tests, ``--quiet``), when not on a terminal,
and for work that ends within :data:`PROGRESS_DELAY` seconds (short library calls)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

#: Seconds of work before a bar appears.
PROGRESS_DELAY = 1.0


def progress_enabled() -> bool:
    """False when ``IMAGELEARN_QUIET`` is set to a non-empty value other than ``0``."""
    return os.environ.get("IMAGELEARN_QUIET", "") in ("", "0")


def progress_bar(description: str, total: int | None = None, unit: str = "img") -> tqdm:
    """A tqdm bar on standard error to advance with ``update(n)`` (a context manager)."""
    return tqdm(
        desc=description,
        total=total,
        unit=unit,
        disable=not progress_enabled(),
        leave=False,
        dynamic_ncols=True,
        delay=PROGRESS_DELAY,
    )


def progress(
    iterable: Iterable[T], description: str, total: int | None = None, unit: str = "img"
) -> Iterator[T]:
    """Wrap ``iterable`` in a bar like :func:`progress_bar`'s, counting the items it yields."""
    with progress_bar(description, total, unit) as bar:
        for item in iterable:
            yield item
            bar.update(1)
