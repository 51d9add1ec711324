"""ChunkedLinearSVC (BofClassifier's SVM) against scikit-learn's LinearSVC on BoF histograms.

Histograms: ``BofClassifier``'s default channels on hymenoptera's training split (245 photos,
11,280 bins, 33,840 values per image after the chi-squared map). Two figures:

* fit time, interleaved rounds: LinearSVC on the mapped matrix (the map included, as
  BofClassifier trained before), ChunkedLinearSVC with the map held in memory, and with it
  recomputed chunk by chunk on every pass (``memory_budget=0``); with the agreement of their
  predictions and decision values;
* peak memory of one fit above its inputs (VmHWM, reset after the inputs are built, in a fresh
  process per fit) at the sizes ``$BENCH_LINEAR_SVM_SIZES`` (default 1000,2000 rows: the real
  histograms drawn again with jitter), ChunkedLinearSVC with a budget of
  ``$BENCH_LINEAR_SVM_BUDGET_MB`` (default 64, below every size's mapped matrix: most rows
  are mapped again on every pass) against LinearSVC.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

from bench import data_root
from bench.common import (
    describe_machine,
    format_spread,
    interleaved,
    machine,
    ratio_spread,
    spread,
    write_results,
)

RESULTS = Path(__file__).resolve().parent / "results" / "linear_svm.json"
SIZES = [int(size) for size in os.environ.get("BENCH_LINEAR_SVM_SIZES", "1000,2000").split(",")]
BUDGET_MB = int(os.environ.get("BENCH_LINEAR_SVM_BUDGET_MB", 64))


def histograms(scratch: Path) -> tuple[Path, Path]:
    """The default channels' joined histograms of hymenoptera's training split and labels,
    saved as ``.npy`` files in ``scratch``."""
    from imagelearn.bof.estimator import BagOfFeatures
    from imagelearn.bof.recognition import BofClassifier

    root = data_root() / "hymenoptera" / "train"
    paths = [path for name in ("ants", "bees") for path in sorted((root / name).glob("*.jpg"))]
    labels = np.array([int(path.parent.name == "bees") for path in paths])
    results = [
        BagOfFeatures(**params).fit(paths).transform_images(paths)
        for params in BofClassifier()._channel_params()  # features from the default cache
    ]
    kept = reduce(np.intersect1d, [result.kept for result in results])
    np.save(scratch / "X.npy", BofClassifier._join(results, kept))  # each channel L1-normalized
    np.save(scratch / "y.npy", labels[kept])
    return scratch / "X.npy", scratch / "y.npy"


def linear_svc(X: np.ndarray, y: np.ndarray):
    """BofClassifier's SVM before: the whole chi2 map, float32, then LinearSVC on it."""
    from sklearn.svm import LinearSVC

    from imagelearn.bof.recognition import chi2_map

    mapped = np.empty((len(X), 3 * X.shape[1]), np.float32)
    for start in range(0, len(X), 1024):
        mapped[start : start + 1024] = chi2_map(X[start : start + 1024])
    return LinearSVC(max_iter=5000).fit(mapped, y), mapped


def chunked(X: np.ndarray, y: np.ndarray, memory_budget: int):
    from imagelearn.bof.linear_svm import ChunkedLinearSVC
    from imagelearn.bof.recognition import chi2_map

    return ChunkedLinearSVC(feature_map=chi2_map, memory_budget=memory_budget).fit(X, y)


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_memory(x_path: str, y_path: str, method: str, n_rows: int) -> dict[str, Any]:
    """In the fresh process: one fit on ``n_rows`` jittered rows, its peak above its inputs."""
    rng = np.random.default_rng(0)
    X, y = np.load(x_path), np.load(y_path)
    picks = rng.integers(0, len(X), n_rows)
    rows = X[picks] * rng.uniform(0.8, 1.2, (n_rows, X.shape[1])).astype(np.float32)
    rows *= (X[picks].sum(axis=1) / rows.sum(axis=1))[:, None]
    labels = y[picks]
    del X
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # the temporaries' freed heap out of the baseline
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    baseline = vm_kib("VmRSS")
    if method == "LinearSVC":
        linear_svc(rows, labels)
    else:
        chunked(rows, labels, BUDGET_MB * 2**20)
    return {
        "peak_above_inputs_mb": round((vm_kib("VmHWM") - baseline) / 1024, 1),
        "mapped_mb": round(n_rows * 3 * rows.shape[1] * 4 / 2**20, 1),
    }


def memory_in_fresh_process(x_path: Path, y_path: Path, method: str, n_rows: int) -> dict:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_linear_svm",
            str(x_path),
            str(y_path),
            method,
            str(n_rows),
        ],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.splitlines()[-1])


def main() -> str:
    info = machine()
    with tempfile.TemporaryDirectory() as scratch:
        x_path, y_path = histograms(Path(scratch))
        X, y = np.load(x_path), np.load(y_path)
        seconds, fitted = interleaved(
            {
                "LinearSVC": lambda: linear_svc(X, y),
                "in_memory": lambda: chunked(X, y, 2**40),
                "chunked": lambda: chunked(X, y, 0),
            }
        )
        reference, mapped = fitted["LinearSVC"]
        expected = reference.decision_function(mapped)
        agreement = {
            name: {
                "predictions_agree": float(
                    np.mean((fitted[name].decision_function(X) > 0) == (expected > 0))
                ),
                "max_decision_difference": float(
                    np.abs(fitted[name].decision_function(X) - expected).max()
                ),
                "n_passes": fitted[name].n_passes_,
            }
            for name in ("in_memory", "chunked")
        }
        memory = {
            method: {str(n): memory_in_fresh_process(x_path, y_path, method, n) for n in SIZES}
            for method in ("LinearSVC", "ChunkedLinearSVC")
        }
    results = {
        "n_images": len(X),
        "n_bins": X.shape[1],
        "seconds": {name: spread(values) for name, values in seconds.items()},
        "ratio_to_LinearSVC": {
            name: ratio_spread(seconds[name], seconds["LinearSVC"])
            for name in ("in_memory", "chunked")
        },
        "agreement": agreement,
        "memory_budget_mb": BUDGET_MB,
        "memory": memory,
    }
    record = write_results(RESULTS, results, info)
    lines = [
        "## Linear SVM in bounded memory (BofClassifier's SVM)",
        "",
        f"Default channels' histograms of hymenoptera's {len(X)} training photos; "
        f"{describe_machine(record['machine'])}.",
        "",
        "| fit | seconds | time / LinearSVC's | predictions as LinearSVC |",
        "|---|---:|---:|---:|",
        f"| LinearSVC (map + fit) | {format_spread(results['seconds']['LinearSVC'])} | 1 | 1 |",
    ]
    for name in ("in_memory", "chunked"):
        lines.append(
            f"| ChunkedLinearSVC, {name.replace('_', ' ')} | {format_spread(results['seconds'][name])} "
            f"| {format_spread(results['ratio_to_LinearSVC'][name])} "
            f"| {agreement[name]['predictions_agree']:.3f} |"
        )
    lines += ["", f"Peak memory of a fit above its inputs, MiB (budget {BUDGET_MB} MiB):", ""]
    lines += ["| rows | mapped matrix | LinearSVC | ChunkedLinearSVC |", "|---:|---:|---:|---:|"]
    for n in SIZES:
        row = memory["LinearSVC"][str(n)]
        lines.append(
            f"| {n} | {row['mapped_mb']} | {row['peak_above_inputs_mb']} "
            f"| {memory['ChunkedLinearSVC'][str(n)]['peak_above_inputs_mb']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 5:
        print(json.dumps(measure_memory(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        print(main())
