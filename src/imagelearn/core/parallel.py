"""Running one function over many inputs on all cores, with a progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import TypeVar

from imagelearn.core.progress import progress

In = TypeVar("In")
Out = TypeVar("Out")


def resolve_n_jobs(n_jobs: int | None) -> int:
    """scikit-learn's convention: None -> 1, -1 -> all cores, -2 -> all but one."""
    cores = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, cores + 1 + n_jobs) if n_jobs < 0 else n_jobs


def parallel_map(
    function: Callable[[In], Out],
    items: Sequence[In],
    n_jobs: int | None = -1,
    description: str = "working",
    chunksize: int | None = None,
) -> Iterator[Out]:
    """Yield ``function(item)`` for each item, in order, using processes when ``n_jobs`` > 1.

    ``function`` must be picklable (a module-level function or a ``functools.partial`` of one).
    Results come back in input order, so callers can save them as they arrive.
    """
    workers = min(resolve_n_jobs(n_jobs), max(1, len(items)))
    if workers == 1:
        yield from progress(map(function, items), description, total=len(items))
        return
    chunksize = chunksize or max(1, min(16, len(items) // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        yield from progress(
            pool.map(function, items, chunksize=chunksize), description, total=len(items)
        )
