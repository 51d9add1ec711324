"""One execution layer for bulk work over images.

Every bulk operation over images (local features, colour statistics, collection checks, CNN
embeddings, GeM descriptors, CNN and ONNX prediction, a classifier's training images,
BoF-segmentation encoding) goes through :func:`map_images`: it looks each input up in an
optional cache, splits the rest into batches, runs them on a backend, shows one progress bar
counting the inputs done, and returns one :class:`BatchResult` carrying the values, the
indices of the inputs that were kept and the ``(source, reason)`` of those that failed
(:class:`MatrixResult` when the values are one matrix).

Where the work runs is the backend's business (:class:`Backend`, chosen by name with
``engine=`` and ``address=``, or for a whole workflow with :func:`use_engine`;
:func:`register_backend` adds one): capability code hands over a function and its inputs
and never knows which backend runs it. ``engine="ray"`` runs the batches on a Ray cluster
(:mod:`imagelearn.core.ray_engine`, the ``ray`` extra). The local backend
(:class:`LocalBackend`) runs batches

- ``workers="processes"``: on a reusable pool of joblib/loky worker processes, for CPU-bound
  Python work (decoding and features). Loky workers do not re-run the main module, so a plain
  script without an ``if __name__ == "__main__":`` guard and ``python -`` work; the pool is
  started once and reused by later calls. Workers are single-threaded natively.
- ``workers="threads"``: on a shared thread pool, for work that releases the GIL (OpenCV,
  FAISS, tree traversal); native pools are limited to one thread meanwhile.
- ``workers="inline"``: in the calling process, one batch after another: batched network
  inference, which parallelises inside the framework.

``n_jobs`` means workers everywhere, with scikit-learn's convention (:func:`resolve_n_jobs`).

Threads or processes for local features, measured on 100 real images (hymenoptera,
flowers5) with 2 workers on a loaded 2-core machine: within 10% of each other (SIFT on
hymenoptera: 8.7 s threads, 8.4 s processes, 10.3 s serial); features stay on processes,
which do not rely on every detector releasing the GIL. Table: ``docs/execution.md``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, NamedTuple, Protocol, Self, TypeVar

import numpy as np

from imagelearn.core.errors import ParameterError
from imagelearn.core.images import ImageReadError
from imagelearn.core.progress import progress_bar
from imagelearn.core.threads import (
    SINGLE_THREADED_ENVIRONMENT,
    native_threads,
    resolve_n_jobs,
    single_threaded_worker,
)

In = TypeVar("In")
Out = TypeVar("Out")

Workers = Literal["processes", "threads", "inline"]
WORKER_KINDS: tuple[str, ...] = ("processes", "threads", "inline")

#: Seconds an idle worker process waits for more work before it exits.
WORKER_IDLE_TIMEOUT = 300

logger = logging.getLogger(__name__)


class Failed(NamedTuple):
    """The outcome of an input that could not be processed, with the reason (a sentence)."""

    reason: str


@dataclass
class BatchResult(Generic[Out]):
    """What a bulk operation produced.

    Attributes
    ----------
    values : list
        One value per kept input, in input order.
    kept : ndarray of int64, shape (n_kept,)
        Indices into the inputs of ``values``.
    failures : list of (str, str)
        ``(source, reason)`` of every input that failed, in input order.
    failed : ndarray of int64, shape (n_failed,)
        Indices into the inputs of ``failures``.
    n_computed : int
        Values computed by this call (the others came from the cache).
    """

    values: list[Out]
    kept: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)
    failed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    n_computed: int = 0

    @property
    def n_inputs(self) -> int:
        return len(self.kept) + len(self.failed)

    def stacked(self, width: int, dtype: Any = np.float32) -> np.ndarray:
        """The values as one array ``(n_kept, width)`` (``(0, width)`` when none was kept)."""
        if not self.values:
            return np.zeros((0, width), dtype)
        return np.stack(self.values).astype(dtype, copy=False)

    def per_input(self, fill: Any = None) -> list:
        """One entry per input, in order: its value, or ``fill`` where it failed."""
        entries = [fill] * self.n_inputs
        for index, value in zip(self.kept, self.values, strict=True):
            entries[index] = value
        return entries


@dataclass
class MatrixResult(BatchResult[np.ndarray]):
    """A :class:`BatchResult` whose values are one array, a row per kept input.

    Attributes
    ----------
    values : ndarray, shape (n_kept, d)
        Also :attr:`vectors`.
    kept, failures, failed, n_computed
        As in :class:`BatchResult`.
    """

    @property
    def vectors(self) -> np.ndarray:
        return self.values

    @classmethod
    def stack(cls, result: BatchResult, width: int, dtype: Any = np.float32) -> Self:
        """``result`` with its values stacked (:meth:`BatchResult.stacked`)."""
        return cls(
            result.stacked(width, dtype),
            result.kept,
            result.failures,
            result.failed,
            result.n_computed,
        )


class Cache(Protocol[In, Out]):
    """Where :func:`map_images` looks values up before computing them, and stores new ones.

    ``key`` returns None for an input that is not cached (an array) and may raise
    :class:`OSError` for a file that cannot be read (it is then computed, and its reading
    reports why it failed). ``get`` returns None on a miss.
    """

    def key(self, source: In) -> str | None: ...

    def get(self, key: str) -> Out | None: ...

    def put(self, key: str, value: Out) -> None: ...


class Backend(Protocol):
    """Runs batches of inputs somewhere and yields their outcomes in batch order.

    ``distributed`` is True when the workers are other machines' processes: they share no
    memory with the caller, only storage (a sharded index build writes there).
    """

    distributed: bool

    def n_workers(self, n_jobs: int | None, workers: Workers) -> int:
        """The workers ``n_jobs`` means on this backend (scikit-learn's convention)."""
        ...

    def map_batches(
        self,
        function: Callable[[list[Any]], list[Any]],
        batches: Sequence[list[Any]],
        n_jobs: int,
        workers: Workers,
    ) -> Iterator[list[Any]]:
        """Yield ``function(batch)`` for each batch, in order, on ``n_jobs`` workers.

        ``function`` returns one outcome per input of its batch (a value, or
        :class:`Failed`); it is picklable when ``workers="processes"``. Batches are opaque
        to the backend.
        """
        ...


class LocalBackend:
    """This machine: loky worker processes, a shared thread pool, or the calling process."""

    distributed = False

    def __init__(self, address: str | None = None) -> None:
        if address is not None:
            raise ParameterError(
                "address", f"the local engine runs on this machine; got address {address!r}"
            )

    def n_workers(self, n_jobs: int | None, workers: Workers) -> int:
        return resolve_n_jobs(n_jobs)

    def map_batches(
        self,
        function: Callable[[list[Any]], list[Any]],
        batches: Sequence[list[Any]],
        n_jobs: int,
        workers: Workers,
    ) -> Iterator[list[Any]]:
        if workers == "inline" or n_jobs <= 1 or len(batches) <= 1 or _on_shared_thread():
            yield from map(function, batches)
        elif workers == "threads":
            with native_threads(1):
                yield from thread_pool(n_jobs).map(function, batches)
        else:
            yield from process_pool(n_jobs).map(_in_worker, [function] * len(batches), batches)


_thread_pools: dict[int, ThreadPoolExecutor] = {}
_thread_pools_lock = threading.Lock()
_THREAD_PREFIX = "imagelearn-worker"


def _on_shared_thread() -> bool:
    """True on a thread of a shared pool: work nested there runs serially (waiting on the
    same pool from inside it could deadlock)."""
    return threading.current_thread().name.startswith(_THREAD_PREFIX)


def thread_pool(n_jobs: int) -> Executor:
    """The shared pool of ``n_jobs`` threads (one per size, started once)."""
    with _thread_pools_lock:
        if n_jobs not in _thread_pools:
            _thread_pools[n_jobs] = ThreadPoolExecutor(n_jobs, thread_name_prefix=_THREAD_PREFIX)
        return _thread_pools[n_jobs]


def process_pool(n_jobs: int) -> Executor:
    """The reusable loky pool of ``n_jobs`` worker processes (the only process pool)."""
    from joblib.externals.loky import get_reusable_executor

    return get_reusable_executor(
        max_workers=n_jobs, timeout=WORKER_IDLE_TIMEOUT, env=SINGLE_THREADED_ENVIRONMENT
    )


def _in_worker(function: Callable[[list[Any]], list[Any]], batch: list[Any]) -> list[Any]:
    single_threaded_worker()
    return function(batch)


def _ray_backend(address: str | None) -> Backend:
    """The Ray engine, imported only when asked for (``pip install imagelearn[ray]``)."""
    try:
        from imagelearn.core.ray_engine import RayBackend
    except ModuleNotFoundError as error:
        if error.name != "ray" and not str(error.name).startswith("ray."):
            raise
        raise ParameterError(
            "engine", "engine 'ray' needs Ray: pip install 'imagelearn[ray]'"
        ) from None
    return RayBackend(address)


#: Backend factories by engine name: ``factory(address)`` builds one.
_BACKENDS: dict[str, Callable[[str | None], Backend]] = {
    "local": LocalBackend,
    "ray": _ray_backend,
}
_INSTANCES: dict[tuple[str, str | None], Backend] = {}
_CURRENT_ENGINE: ContextVar[tuple[str | Backend, str | None]] = ContextVar(
    "imagelearn_engine", default=("local", None)
)


def register_backend(name: str, factory: Callable[[str | None], Backend]) -> None:
    """Make ``engine=name`` run on the backend ``factory(address)`` builds (once per address,
    on first use)."""
    _BACKENDS[name] = factory
    for key in [key for key in _INSTANCES if key[0] == name]:
        del _INSTANCES[key]


def get_backend(engine: str | Backend | None = None, address: str | None = None) -> Backend:
    """The backend named ``engine`` at ``address`` (built once), or ``engine`` itself when it
    is one; None: the current engine (:func:`use_engine`, ``"local"`` outside one).

    Raises
    ------
    ParameterError
        An unknown name (parameter ``engine``), an address the engine cannot use
        (``address``).
    """
    if engine is None:
        engine, current_address = _CURRENT_ENGINE.get()
        address = address if address is not None else current_address
    if not isinstance(engine, str):
        return engine
    if engine not in _BACKENDS:
        raise ParameterError(
            "engine", f"unknown engine {engine!r}; choose from {sorted(_BACKENDS)}"
        )
    key = (engine, address)
    if key not in _INSTANCES:
        _INSTANCES[key] = _BACKENDS[engine](address)
    return _INSTANCES[key]


@contextmanager
def use_engine(engine: str | Backend = "local", address: str | None = None) -> Iterator[Backend]:
    """Run every :func:`map_images` call that names no engine on ``engine`` meanwhile.

    The way to run a whole workflow on a cluster, capability code unchanged::

        with use_engine("ray", address="ray://head:10001"):
            build_run(["photos/"], "photos.index")

    The engine applies to the calling thread (and its context); work nested inside a worker
    runs where that worker is.

    Raises
    ------
    ParameterError
        As :func:`get_backend`.
    """
    backend = get_backend(engine, address)
    token = _CURRENT_ENGINE.set((engine, address))
    try:
        yield backend
    finally:
        _CURRENT_ENGINE.reset(token)


@dataclass(frozen=True)
class _Each(Generic[In, Out]):
    """A batch function applying ``function`` to every input; an :class:`ImageReadError` it
    raises becomes that input's :class:`Failed` outcome."""

    function: Callable[[In], Out]

    def __call__(self, batch: list[In]) -> list[Out | Failed]:
        outcomes: list[Out | Failed] = []
        for source in batch:
            try:
                outcomes.append(self.function(source))
            except ImageReadError as error:
                outcomes.append(Failed(error.reason))
        return outcomes


@dataclass(frozen=True)
class _Stage:
    """What runs on a worker for one batch of ``(source, cache key)``: the function, then
    the cache writes and ``finish`` of the values it computed. ``description`` names the
    stage (as its progress bar does) for a backend's own reports."""

    function: Callable[[list[Any]], list[Any]]
    cache: Cache | None
    finish: Callable[[Any], Any] | None
    description: str

    @property
    def placeable(self) -> bool:
        """The function can run on another device (a network's batches: ``on_device``)."""
        return hasattr(self.function, "on_device")

    def on_device(self, device: str) -> _Stage:
        """This stage with its function on ``device`` (see :attr:`placeable`)."""
        return replace(self, function=self.function.on_device(device))

    def __call__(self, items: list[tuple[Any, str | None]]) -> list[Any]:
        outcomes = self.function([source for source, _ in items])
        for position, ((_, key), outcome) in enumerate(zip(items, outcomes, strict=True)):
            if isinstance(outcome, Failed):
                continue
            if key is not None and self.cache is not None:
                _put(self.cache, key, outcome)
            if self.finish is not None:
                outcomes[position] = self.finish(outcome)
        return outcomes


def default_batch_size(n_items: int, n_jobs: int) -> int:
    """Inputs per batch for per-input work: about eight batches per worker, at most 16 inputs."""
    return max(1, min(16, n_items // (n_jobs * 8)))


def map_images(
    function: Callable[[In], Out] | Callable[[list[In]], list[Out | Failed]],
    sources: Iterable[In],
    *,
    batched: bool = False,
    batch_size: int | None = None,
    n_jobs: int | None = None,
    workers: Workers = "processes",
    cache: Cache[In, Out] | None = None,
    finish: Callable[[Out], Any] | None = None,
    strict: bool = False,
    description: str = "working",
    engine: str | Backend | None = None,
    address: str | None = None,
) -> BatchResult:
    """Apply ``function`` to every source, in batches, on a backend, through a cache.

    Parameters
    ----------
    function : callable
        Per source (``batched=False``): ``source -> value``, raising :class:`ImageReadError`
        for a source it cannot read. Per batch (``batched=True``): ``list -> list`` of one
        value or :class:`Failed` per source. Picklable when ``workers="processes"`` (a
        module-level function, or a ``functools.partial`` of one).
    sources : iterable
        Image paths, arrays, or anything ``function`` takes (an iterator is read first).
    batch_size : int, optional
        Sources per batch; default :func:`default_batch_size`.
    n_jobs : int or None
        Workers (scikit-learn's convention, :func:`resolve_n_jobs`).
    workers : {"processes", "threads", "inline"}
        How the local backend runs batches (see the module docstring).
    cache : Cache, optional
        Looked up by the calling process before computing; computed values are put there by
        the worker that computed them (so a cache is picklable and keeps its entries in a
        place every worker reaches, such as a folder).
    finish : callable, optional
        Applied to every value, cached or computed (on the worker), after caching: what the
        cache does not store (e.g. the final normalisation of descriptors).
    strict : bool
        Raise :class:`ImageReadError` for the first failed source instead of reporting it.
    description : str
        Label of the progress bar (shown for calls that last more than a moment).
    engine : str, Backend or None
        Which backend runs the batches (:func:`get_backend`): ``"local"``, ``"ray"``, or None
        for the current one (:func:`use_engine`; local by default).
    address : str, optional
        Where the engine's cluster is (``engine="ray"``: a Ray address; None: the
        ``RAY_ADDRESS`` environment variable, else a Ray instance started on this machine).

    Returns
    -------
    BatchResult
    """
    if workers not in WORKER_KINDS:
        raise ParameterError("workers", f"must be one of {WORKER_KINDS}; got {workers!r}")
    backend = get_backend(engine, address)
    if not isinstance(sources, Sequence):  # an iterator, or a stack of arrays (n, h, w, 3)
        sources = list(sources)
    outcomes: list[Any] = [None] * len(sources)
    with progress_bar(description, total=len(sources)) as bar:
        pending: list[tuple[int, str | None]] = []
        for index, source in enumerate(sources):
            key = _cache_key(cache, source)
            cached = cache.get(key) if key is not None else None
            if cached is None:
                pending.append((index, key))
            else:
                outcomes[index] = finish(cached) if finish is not None else cached
                bar.update(1)
        n_workers = min(backend.n_workers(n_jobs, workers), len(pending)) if pending else 1
        size = batch_size or default_batch_size(len(pending), n_workers)
        chunks = [pending[start : start + size] for start in range(0, len(pending), size)]
        stage = _Stage(function if batched else _Each(function), cache, finish, description)
        batches = [[(sources[index], key) for index, key in chunk] for chunk in chunks]
        for chunk, chunk_outcomes in zip(
            chunks, backend.map_batches(stage, batches, n_workers, workers), strict=True
        ):
            for (index, _), outcome in zip(chunk, chunk_outcomes, strict=True):
                if isinstance(outcome, Failed):
                    if strict:
                        raise ImageReadError(_name(sources[index]), outcome.reason)
                    logger.warning("skipped %s: %s", _name(sources[index]), outcome.reason)
                outcomes[index] = outcome
            bar.update(len(chunk))
    n_computed = sum(not isinstance(outcomes[index], Failed) for index, _ in pending)
    return _result(sources, outcomes, n_computed)


def _cache_key(cache: Cache | None, source: Any) -> str | None:
    if cache is None:
        return None
    try:
        return cache.key(source)
    except OSError:  # missing or unreadable: computing it reports why, in order
        return None


def _put(cache: Cache, key: str, value: Any) -> None:
    try:
        cache.put(key, value)
    except OSError as error:  # a full or read-only cache costs time, not results
        logger.warning("could not cache a value under %s: %s", key, error)


def _name(source: Any) -> str:
    return f"array {source.shape}" if isinstance(source, np.ndarray) else str(source)


def _result(sources: Sequence[Any], outcomes: list[Any], n_computed: int) -> BatchResult:
    kept, failed, values, failures = [], [], [], []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, Failed):
            failed.append(index)
            failures.append((_name(sources[index]), outcome.reason))
        else:
            kept.append(index)
            values.append(outcome)
    return BatchResult(
        values,
        np.asarray(kept, dtype=np.int64),
        failures,
        np.asarray(failed, dtype=np.int64),
        n_computed,
    )


def thread_map(
    function: Callable[[In], Out], items: Iterable[In], n_jobs: int | None = None
) -> Iterator[Out]:
    """Yield ``function(item)`` in order on the local backend's shared thread pool: for small
    work that releases the GIL (tree traversal, FAISS searches), no per-call thread start."""
    workers = resolve_n_jobs(n_jobs)
    if workers == 1 or _on_shared_thread():
        return map(function, items)
    return thread_pool(workers).map(function, items)
