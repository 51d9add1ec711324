"""Old face of the execution layer, kept for callers not yet moved to
:func:`imagelearn.core.execution.map_images` (which adds the cache, batches and failures)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TypeVar

from imagelearn.core.execution import default_batch_size, get_backend, resolve_n_jobs
from imagelearn.core.progress import progress_bar

__all__ = ["parallel_map", "resolve_n_jobs"]

In = TypeVar("In")
Out = TypeVar("Out")


def _apply(function: Callable[[In], Out], batch: list[In]) -> list[Out]:
    return [function(item) for item in batch]


def parallel_map(
    function: Callable[[In], Out],
    items: Sequence[In],
    n_jobs: int | None = -1,
    description: str = "working",
    chunksize: int | None = None,
) -> Iterator[Out]:
    """Yield ``function(item)`` for each item, in order, on the local backend's worker
    processes when ``n_jobs`` > 1 (``function`` picklable); exceptions propagate."""
    items = list(items)
    workers = min(resolve_n_jobs(n_jobs), max(1, len(items)))
    size = chunksize or default_batch_size(len(items), workers)
    batches = [items[start : start + size] for start in range(0, len(items), size)]
    with progress_bar(description, total=len(items)) as bar:
        for results in get_backend("local").map_batches(
            partial(_apply, function), batches, workers, "processes"
        ):
            yield from results
            bar.update(len(results))
