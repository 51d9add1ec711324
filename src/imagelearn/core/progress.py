"""Progress bars that stay quiet when asked to (tests, ``--quiet``) or when not on a terminal."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """False when ``IMAGELEARN_QUIET`` is set to a non-empty value other than ``0``."""
    return os.environ.get("IMAGELEARN_QUIET", "") in ("", "0")


def progress(
    iterable: Iterable[T], description: str, total: int | None = None, unit: str = "img"
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar on standard error, unless progress is disabled."""
    return iter(
        tqdm(
            iterable,
            desc=description,
            total=total,
            unit=unit,
            disable=not progress_enabled(),
            leave=False,
            dynamic_ncols=True,
        )
    )
