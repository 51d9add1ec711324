"""Native-thread policy, set in one place: OpenMP (FAISS), BLAS, PyTorch and OpenCV.

- ``import imagelearn`` sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it (in
  ``imagelearn/__init__.py``, before anything loads OpenMP): idle OpenMP threads then sleep
  instead of spinning on the cores that worker processes and other OpenMP pools need (FAISS
  and PyTorch each bring one).
- :func:`thread_count` is the number of native threads one process uses by default:
  ``$IMAGELEARN_THREADS`` when set, else the cores this process may run on.
- :func:`native_threads` limits native pools (all of them, or those named) to ``n`` threads
  for a block of code and restores them after; :func:`faiss_threads` and
  :func:`single_threaded_blas` are its two common uses, :func:`cap_torch_threads` caps PyTorch at
  :func:`thread_count`; :func:`single_threaded_worker` makes a worker process single-threaded
  natively for its whole life (the workers already share the cores between them).
- :func:`resolve_n_jobs` turns ``n_jobs`` into a count, with scikit-learn's convention.

Nothing else in the package sets a native thread count.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Literal

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


#: OpenBLAS kernel families by the x86 instruction sets they need, best first.
_OPENBLAS_CORE_TYPES = (
    ("SkylakeX", {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}),
    ("Haswell", {"avx2", "fma"}),
)


def openblas_core_type(cpu_flags: Collection[str] | None = None) -> str | None:
    """The OpenBLAS kernel family (``OPENBLAS_CORETYPE``) for this CPU's instruction sets, or
    None when OpenBLAS's own detection should stand (not x86, no AVX2, flags unknown).

    Parameters
    ----------
    cpu_flags : collection of str, optional
        The CPU's flags as ``/proc/cpuinfo`` lists them; default: read from there.
    """
    if cpu_flags is None:
        cpu_flags = _cpu_flags()
    for core_type, needed in _OPENBLAS_CORE_TYPES:
        if needed <= set(cpu_flags):
            return core_type
    return None


#: OpenBLAS kernel families without AVX2: what its detection falls back to on CPUs it does
#: not know.
_OPENBLAS_FALLBACK_CORES = frozenset(
    {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "sandybridge", "katmai"}
)


def choose_openblas_kernels() -> None:
    """Set ``OPENBLAS_CORETYPE`` to :func:`openblas_core_type` unless the user set it (or it is
    None); only OpenBLAS libraries loaded afterwards read it, so when FAISS is already loaded
    with fallback kernels, warn and say what to do."""
    if "OPENBLAS_CORETYPE" in os.environ or (core_type := openblas_core_type()) is None:
        return
    os.environ["OPENBLAS_CORETYPE"] = core_type
    if "faiss" in sys.modules:
        slow = [
            pool["architecture"]
            for pool in _threadpools().info()
            if pool.get("internal_api") == "openblas"
            and str(pool.get("architecture", "")).lower() in _OPENBLAS_FALLBACK_CORES
        ]
        if slow:
            warnings.warn(
                f"faiss was imported before imagelearn and its OpenBLAS runs {slow[0]} kernels "
                f"on this CPU (several times slower); import imagelearn first, or set "
                f"OPENBLAS_CORETYPE={core_type} before starting Python",
                RuntimeWarning,
                stacklevel=3,
            )


def _cpu_flags() -> set[str]:
    """The first CPU's flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def resolve_n_jobs(n_jobs: int | None, cores: int | None = None) -> int:
    """Workers (or threads) for ``n_jobs``, scikit-learn's convention: None or 0 -> 1, -1 -> all
    cores, -2 -> all but one (``cores``: this machine's by default, a cluster's CPUs)."""
    cores = cores or os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, cores + 1 + n_jobs) if n_jobs < 0 else n_jobs


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


#: Native thread pools :func:`native_threads` limits: BLAS and OpenMP libraries (every loaded
#: one, through threadpoolctl; FAISS's OpenMP among them), FAISS's OpenMP alone, OpenCV's pool
#: and PyTorch's intra-op threads.
Pool = Literal["blas", "openmp", "faiss", "opencv", "torch"]
POOLS: tuple[Pool, ...] = ("blas", "openmp", "opencv", "torch")
#: Modules whose loading can bring a new BLAS or OpenMP library into the process.
_NATIVE_MODULES = ("numpy", "scipy", "sklearn", "cv2", "faiss", "torch", "onnxruntime")


def _threadpools() -> Any:
    """The loaded BLAS/OpenMP libraries, inspected again only after one of
    :data:`_NATIVE_MODULES` was imported (inspection costs about a millisecond)."""
    return _inspected_threadpools(tuple(name in sys.modules for name in _NATIVE_MODULES))


@functools.cache
def _inspected_threadpools(loaded: tuple[bool, ...]) -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def native_threads(n_threads: int, pools: Collection[Pool] = POOLS) -> Iterator[None]:
    """Run the block with the native ``pools`` limited to ``n_threads``, restoring them after.

    Parameters
    ----------
    n_threads : int
        Threads per pool (at least 1).
    pools : collection of {"blas", "openmp", "faiss", "opencv", "torch"}
        Default: every BLAS and OpenMP library (threadpoolctl, which includes FAISS's OpenMP),
        OpenCV and, when it is loaded, PyTorch. ``"faiss"`` is FAISS's OpenMP alone (set
        directly: a thousandth of the cost of a threadpoolctl limit). Modules that are not
        loaded are not imported.
    """
    n_threads = max(1, int(n_threads))
    with ExitStack() as stack:
        if "faiss" in pools and "faiss" in sys.modules:
            faiss = sys.modules["faiss"]
            previous_faiss = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(n_threads)
            stack.callback(faiss.omp_set_num_threads, previous_faiss)
        if "opencv" in pools:
            import cv2

            previous_cv2 = cv2.getNumThreads()
            cv2.setNumThreads(n_threads)
            stack.callback(cv2.setNumThreads, previous_cv2)
        torch = sys.modules.get("torch") if "torch" in pools else None
        if torch is not None:
            previous_torch = torch.get_num_threads()
            torch.set_num_threads(n_threads)
            stack.callback(torch.set_num_threads, previous_torch)
        apis = [api for api in ("blas", "openmp") if api in pools]
        if apis:
            user_api = apis[0] if len(apis) == 1 else None
            stack.enter_context(_threadpools().limit(limits=n_threads, user_api=user_api))
        yield


def faiss_threads(n_jobs: int | None) -> Any:
    """A context running FAISS on ``n_jobs`` threads (:func:`resolve_n_jobs`), restored after."""
    return native_threads(resolve_n_jobs(n_jobs), ("faiss",))


def single_threaded_blas() -> Any:
    """A context limiting BLAS to one thread: products of a few rows are too small for threads
    (FAISS keeps its OpenMP threads)."""
    return native_threads(1, ("blas",))


def cap_torch_threads() -> int:
    """Cap PyTorch at :func:`thread_count` threads for the rest of the process (never raising
    a lower count a user set); returns the count it runs on."""
    import torch

    if torch.get_num_threads() > thread_count():
        torch.set_num_threads(thread_count())
    return torch.get_num_threads()


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
