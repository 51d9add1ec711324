"""Native-thread policy, set in one place: OpenMP (FAISS), BLAS, PyTorch and OpenCV.

- ``import imagelearn`` sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it (in
  ``imagelearn/__init__.py``, before anything loads OpenMP): idle OpenMP threads then sleep
  instead of spinning on the cores that worker processes and other OpenMP pools need (FAISS
  and PyTorch each bring one).
- :func:`thread_count` is the number of native threads one process uses by default:
  ``$IMAGELEARN_THREADS`` when set, else the cores this process may run on.
- :func:`native_threads` limits every native pool to ``n`` threads for a block of code and
  restores them after; :func:`single_threaded_worker` makes a worker process single-threaded
  natively for its whole life (the workers already share the cores between them).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Environment variable for the native threads of one process (PyTorch, ONNX Runtime, FAISS).
THREADS_VARIABLE = "IMAGELEARN_THREADS"


def available_cores() -> int:
    """Cores this process may use (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def thread_count() -> int:
    """``$IMAGELEARN_THREADS`` when set to a positive integer (1 is fastest on a machine shared
    with other jobs), else :func:`available_cores`."""
    requested = os.environ.get(THREADS_VARIABLE, "")
    return int(requested) if requested.isdigit() and int(requested) > 0 else available_cores()


#: Environment of worker processes: every native pool single-threaded from the first import.
SINGLE_THREADED_ENVIRONMENT = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "BLIS_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        THREADS_VARIABLE,
    )
}


@functools.cache
def _threadpools() -> Any:
    """The loaded BLAS/OpenMP pools, inspected once (inspection costs about a millisecond)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def native_threads(n_threads: int) -> Iterator[None]:
    """Run the block with every native pool limited to ``n_threads``, restoring them after.

    Covers BLAS and OpenMP (through threadpoolctl, which includes FAISS's OpenMP), OpenCV and,
    when it is loaded, PyTorch. Modules that are not loaded are not imported.
    """
    import cv2

    n_threads = max(1, int(n_threads))
    previous_cv2 = cv2.getNumThreads()
    torch = sys.modules.get("torch")
    previous_torch = torch.get_num_threads() if torch is not None else None
    cv2.setNumThreads(n_threads)
    if torch is not None:
        torch.set_num_threads(n_threads)
    try:
        with _threadpools().limit(limits=n_threads):
            yield
    finally:
        cv2.setNumThreads(previous_cv2)
        if torch is not None:
            torch.set_num_threads(previous_torch)


@functools.cache
def single_threaded_worker() -> None:
    """Make this worker process natively single-threaded for the rest of its life (once):
    the pools already loaded (OpenCV's, and those started before the environment of
    :data:`SINGLE_THREADED_ENVIRONMENT` applied)."""
    import cv2

    cv2.setNumThreads(1)
    _threadpools().limit(limits=1)  # kept: the limit lasts as long as the process
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
