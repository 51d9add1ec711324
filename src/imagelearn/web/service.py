"""The index as the server uses it: searches on the package's worker threads, writes one at a
time beside them.

An :class:`~imagelearn.retrieval.Index` is not made for concurrent searches (it loads its CNN
on first use, keeps per-query state in FAISS), so each search thread (the shared pool of
:func:`imagelearn.core.execution.thread_pool`, where nested work runs serially) opens its own
:class:`Index` of the current snapshot (the arrays are memory-mapped: the copies share the
pages) and reopens it when a write made a new snapshot. Writes run one at a time (a lock) on
the server's own threads, so searches go on during an ``add``; once a write ends the new
:class:`Collection` is read and the search threads move to it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from fastapi.concurrency import run_in_threadpool

from imagelearn.core.execution import thread_pool
from imagelearn.retrieval import Index
from imagelearn.web.collection import Collection, tag_tables

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The synthetic image a warm-up search runs on (textured, so it has local features).
_WARM_UP_SIDE = 96


class IndexService:
    """Searches and writes of one index directory for the web app.

    Parameters
    ----------
    directory : path-like
        The index.
    upload_dir : path-like
        Where the app stores images added through it (see :class:`Collection`).
    model, clusters : path-like, optional
        A classifier run and a clustering run whose classes and clusters tag the images.
    workers : int
        Search threads (each with its own open :class:`Index`).

    Raises
    ------
    BundleError
        ``directory`` is not an index, ``model`` not a classifier run or ``clusters`` not a
        clustering run.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        upload_dir: str | Path,
        model: str | Path | None = None,
        clusters: str | Path | None = None,
        workers: int = 1,
    ) -> None:
        self.directory = Path(directory)
        self.upload_dir = Path(upload_dir)
        self.model, self.clusters = model, clusters
        self.workers = max(1, int(workers))
        self._local = threading.local()
        self.collection = self._read(Index.open(self.directory), 0)
        self._writing = threading.Lock()
        self._listeners: list[Callable[[Collection, Index], None]] = []

    def index(self, collection: Collection) -> Index:
        """The calling search thread's :class:`Index` of ``collection``'s snapshot.

        Opened when the thread has none of this generation; a write between reading the
        collection and opening the index only makes the index newer than the collection,
        whose ids it then still has (removed ones aside, which the callers skip).
        """
        if getattr(self._local, "generation", None) != collection.generation:
            self._local.index = Index.open(self.directory)
            self._local.generation = collection.generation
        return self._local.index

    async def search(self, work: Callable[[Index, Collection], T]) -> T:
        """``work(index, collection)`` on a search thread, with the current collection."""

        def run() -> T:
            collection = self.collection
            return work(self.index(collection), collection)

        return await asyncio.wrap_future(thread_pool(self.workers).submit(run))

    async def write(self, work: Callable[[], T]) -> T:
        """``work()`` (one write at a time, beside the searches), then the new snapshot is
        read (even if the write failed)."""

        def run() -> T:
            with self._writing:
                try:
                    return work()
                finally:
                    self.reload()

        return await run_in_threadpool(run)

    def on_reload(self, listener: Callable[[Collection, Index], None]) -> None:
        """Call ``listener(collection, index)`` with every collection read from now on (on
        the thread that read it), before the search threads move to it."""
        self._listeners.append(listener)

    def reload(self) -> Collection:
        """Read the current snapshot into a new :class:`Collection` and move to it."""
        index = Index.open(self.directory)
        collection = self._read(index, self.collection.generation + 1)
        for listener in self._listeners:
            listener(collection, index)
        self.collection = collection
        self.warm_up()
        return collection

    def _read(self, index: Index, generation: int) -> Collection:
        tables = tag_tables(index, self.model, self.clusters)
        return Collection.read(index, generation, self.upload_dir, tables)

    def warm_up(self) -> None:
        """Open every search thread's index and run one search on it, in the background, so the
        first real search does not wait for the CNN of the global descriptor to load."""
        if not self.collection.records:
            return
        barrier = threading.Barrier(self.workers)
        image = np.random.default_rng(0).integers(0, 256, (_WARM_UP_SIDE,) * 2 + (3,), np.uint8)

        def run() -> None:
            try:
                self.index(self.collection).search(image, top=1, verify=False)
            except Exception as error:  # a warm-up failure only delays the first search
                log.debug("warm-up search failed: %s", error)
            try:  # every thread waits for the others, so each thread gets one warm-up
                barrier.wait(timeout=60)
            except threading.BrokenBarrierError:
                pass

        for _ in range(self.workers):
            thread_pool(self.workers).submit(run)

    def close(self) -> None:
        """Let the search threads drop their indexes (the shared threads themselves stay)."""
        self._local = threading.local()
