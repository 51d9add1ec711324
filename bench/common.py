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
from functools import partial
from pathlib import Path
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


def rounds(methods: dict[str, Callable[[], Any]], repeats: int = REPEATS) -> dict[str, list[Any]]:
    """Call every method ``repeats`` times, in rounds that call each method once in turn.

    For methods that measure themselves (a fresh process's seconds and peak memory, a training
    phase's seconds): round ``i`` of every method ran back to back.

    Returns
    -------
    dict of str to list
        Per method, what each of its ``repeats`` calls returned, in round order.
    """
    values: dict[str, list[Any]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, run in methods.items():
            values[name].append(run())
    return values


def budgeted_rounds(
    methods: dict[str, Callable[[], Any]],
    budget_s: float,
    min_repeats: int = 1,
    repeats: int = REPEATS,
) -> dict[str, list[Any]]:
    """:func:`rounds` for methods that take minutes: ``repeats`` rounds where the first round
    took under ``budget_s / repeats`` seconds, else as many as fit ``budget_s`` (at least
    ``min_repeats``); one round where a method's first call returned ``None`` or a dict without
    ``"seconds"`` (it failed: repeating it would fail again).

    Returns
    -------
    dict of str to list
        Per method, what each call returned, in round order (as many calls as rounds run).
    """
    round_seconds, values = timed(partial(rounds, methods, 1))
    failed = any(
        value[0] is None or (isinstance(value[0], dict) and "seconds" not in value[0])
        for value in values.values()
    )
    wanted = 1 if failed else max(min_repeats, min(repeats, int(budget_s / round_seconds)))
    for name, more in rounds(methods, wanted - 1).items():
        values[name] += more
    return values


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
    measured = rounds({name: partial(timed, run) for name, run in methods.items()}, repeats)
    seconds = {name: [elapsed for elapsed, _ in runs] for name, runs in measured.items()}
    return seconds, {name: runs[0][1] for name, runs in measured.items()}


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


def format_rounds(figure: dict[str, Any], unit: str = "", digits: int = 2) -> str:
    """:func:`format_spread`, or the value alone where ``figure`` holds one value (one round)."""
    if len(figure["values"]) == 1:
        return f"{figure['median']:.{digits}f}{unit}"
    return format_spread(figure, unit, digits)


def rate_spread(seconds: list[float], count: float) -> dict[str, Any]:
    """The spread of ``count / seconds[i]`` (e.g. images per second of each repeat)."""
    return spread(count / value for value in seconds)


def spreads(seconds: dict[str, list[float]], reference: str) -> dict[str, dict[str, Any]]:
    """Per method: the spread of its seconds and of its per-round ratio to ``reference``'s.

    Returns
    -------
    dict of str to dict
        ``{method: {"seconds": spread, "ratio_to_<reference>": ratio spread}}``: the ratio is
        the method's seconds over the reference's in the same round (above 1: slower).
    """
    return {
        name: {
            "seconds": spread(values),
            f"ratio_to_{reference}": ratio_spread(values, seconds[reference]),
        }
        for name, values in seconds.items()
    }


class Directories:
    """Numbered directories under ``root``, for runs that need a fresh (empty) cache each time.

    :meth:`fresh` names a new one; :attr:`latest` is the last one named (for the run that then
    reads what the fresh run wrote).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.count = 0

    def fresh(self) -> Path:
        self.count += 1
        return self.latest

    @property
    def latest(self) -> Path:
        return self.root / f"run-{self.count}"


def merge_rounds(runs: list[dict[str, Any]], keys: Iterable[str]) -> dict[str, Any]:
    """One method's rounds (dicts of figures) as one record: the :func:`spread` of each of
    ``keys`` over the rounds, every other figure (deterministic ones: accuracy, sizes) from the
    first round, and ``"runs"``; a first round without ``"seconds"`` (failed, skipped) as it is.
    """
    first = runs[0]
    if "seconds" not in first:
        return first
    return first | {"runs": len(runs)} | {key: spread(run[key] for run in runs) for key in keys}


def setting(name: str, default: int) -> int:
    """The integer environment variable ``name`` (a benchmark's size or repeats), else ``default``."""
    return int(os.environ.get(name, default))


def write_results(path: Path, results: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """Write ``results`` with the machine record ``info`` (finished now) to the JSON file ``path``.

    Returns the record written (``results`` plus ``"machine"``).
    """
    from imagelearn.core.bundle import atomic_write_json

    record = {**results, "machine": finish_machine(info)}
    atomic_write_json(path, record)
    return record


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
