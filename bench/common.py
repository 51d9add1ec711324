"""What every benchmark shares: the machine it ran on, and timings repeated with their spread.

The development machines are shared and noisy, so a figure is never one run:

- :func:`interleaved` times several methods in rounds (A, B, C, A, B, C, ...), so that methods
  compared with one another share the machine's noise; each method gets ``repeats`` timings.
- :func:`spread` summarises a list of values as min / median / max, and :func:`ratio_spread`
  does so for the per-round ratio of two methods' timings (the figure a goal is about).
- :func:`machine` records what a result depends on: CPU model and flags, cores, load before
  (and, by :func:`finish_machine`, after), the FAISS module loaded, the BLAS and OpenMP
  libraries in use (threadpoolctl), and library versions.
"""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

#: CPU flags worth recording (the SIMD families that FAISS, OpenBLAS and OpenCV dispatch on).
SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "neon",
    "asimd",
)
#: Libraries whose versions a result records (those not installed are left out).
LIBRARIES = (
    "imagelearn",
    "numpy",
    "faiss",
    "cv2",
    "sklearn",
    "torch",
    "torchvision",
    "onnxruntime",
)
#: Repeats per figure unless a benchmark says otherwise.
REPEATS = int(os.environ.get("BENCH_REPEATS", 5))


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``run()`` took, and what it returned."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def interleaved(
    methods: dict[str, Callable[[], Any]], repeats: int = REPEATS
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time every method ``repeats`` times, in rounds that run each method once in turn.

    Returns
    -------
    seconds : dict of str to list of float
        Per method, its ``repeats`` timings in round order (round ``i`` of every method ran
        back to back, so ``seconds[a][i] / seconds[b][i]`` compares them under the same load).
    results : dict of str to object
        Per method, what its first run returned.
    """
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, run in methods.items():
            elapsed, result = timed(run)
            seconds[name].append(elapsed)
            results.setdefault(name, result)
    return seconds, results


def spread(values: Iterable[float], digits: int = 4) -> dict[str, Any]:
    """``{"min", "median", "max", "values"}`` of ``values`` (rounded to ``digits``)."""
    values = [float(value) for value in values]
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
        "values": [round(value, digits) for value in values],
    }


def ratio_spread(numerator: list[float], denominator: list[float]) -> dict[str, Any]:
    """The spread of the per-round ratios ``numerator[i] / denominator[i]`` (a speed-up when
    the numerator is the alternative's seconds and the denominator ours)."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} timings against {len(denominator)}")
    return spread(a / b for a, b in zip(numerator, denominator, strict=True))


def format_spread(figure: dict[str, Any], unit: str = "", digits: int = 2) -> str:
    """``"median (min-max)unit"`` for a :func:`spread` result, as tables show it."""
    return (
        f"{figure['median']:.{digits}f}{unit} "
        f"({figure['min']:.{digits}f}-{figure['max']:.{digits}f}{unit})"
    )


def machine() -> dict[str, Any]:
    """What the figures of one run depend on, measured at its start (see the module docstring)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_field("model name") or platform.processor(),
        "cpu_flags": [flag for flag in SIMD_FLAGS if flag in _cpu_flags()],
        "cores": os.cpu_count(),
        "load_average_before": [round(value, 2) for value in os.getloadavg()],
        "environment": {
            name: os.environ[name]
            for name in ("OPENBLAS_CORETYPE", "OMP_WAIT_POLICY", "IMAGELEARN_THREADS")
            if name in os.environ
        },
        "versions": _versions(),
    }
    info["faiss_module"] = _faiss_module()
    info["native_libraries"] = _native_libraries()
    return info


def finish_machine(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with the load average at the end of the run added."""
    return {**info, "load_average_after": [round(value, 2) for value in os.getloadavg()]}


def describe_machine(info: dict[str, Any]) -> str:
    """One sentence for a README section: CPU, cores, load before and after."""
    after = info.get("load_average_after")
    load = f"load average {info['load_average_before'][0]:.1f} before"
    if after:
        load += f", {after[0]:.1f} after"
    return f"{info['cpu_model']}, {info['cores']} cores, {load}"


def _cpu_flags() -> set[str]:
    return set((_cpu_field("flags") or _cpu_field("Features") or "").split())


def _cpu_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def _versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            continue
    return versions


def _faiss_module() -> dict[str, Any]:
    """Which of FAISS's SIMD builds was loaded (dynamic dispatch or a fixed module)."""
    import faiss

    loaded = sorted(name for name in sys.modules if "swigfaiss" in name)
    return {"modules": loaded, "compile_options": faiss.get_compile_options().strip()}


def _native_libraries() -> list[dict[str, Any]]:
    """BLAS and OpenMP libraries loaded (threadpoolctl): which, which kernels, how many threads."""
    from threadpoolctl import threadpool_info

    keys = ("user_api", "internal_api", "version", "architecture", "num_threads", "prefix")
    return [{key: pool.get(key) for key in keys} for pool in threadpool_info()]
