"""Native-thread policy in one place: ``imagelearn.core.threads``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import faiss
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from imagelearn.core.kmeans import assign_among_candidates, nearest_centers
from imagelearn.core.threads import (
    faiss_threads,
    native_threads,
    openblas_core_type,
    resolve_n_jobs,
    single_threaded_blas,
)

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "imagelearn"


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def numpy_blas_threads() -> list[int]:
    """Threads of the BLAS libraries that do not run on FAISS's OpenMP (FAISS's own does)."""
    return [
        pool["num_threads"]
        for pool in threadpool_info()
        if pool["user_api"] == "blas" and "faiss" not in pool["filepath"]
    ]


def test_native_thread_counts_are_set_in_the_threads_and_execution_modules_only():
    setters = re.compile(
        r"ThreadPoolExecutor|omp_set_num_threads|setNumThreads|threadpool_limits|set_num_threads"
    )
    modules = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if setters.search(path.read_text())
    )
    assert modules == ["core/execution.py", "core/threads.py"]


def test_faiss_threads_set_faiss_alone_and_restore_it():
    before, blas = faiss.omp_get_max_threads(), numpy_blas_threads()
    with faiss_threads(1):
        assert faiss.omp_get_max_threads() == 1
        assert numpy_blas_threads() == blas
    assert faiss.omp_get_max_threads() == before


def test_single_threaded_blas_restores_faiss_threads():
    # FAISS's bundled OpenBLAS is its OpenMP build: limiting it limits FAISS's OpenMP meanwhile
    with faiss_threads(2):
        with single_threaded_blas():
            assert set(blas_threads()) == {1}
        assert faiss.omp_get_max_threads() == 2


def test_native_threads_limit_every_pool_by_default_and_restore_them():
    before = (cv2.getNumThreads(), blas_threads())
    with native_threads(1):
        assert cv2.getNumThreads() == 1 and set(blas_threads()) == {1}
    assert (cv2.getNumThreads(), blas_threads()) == before


def test_n_jobs_resolution_is_scikit_learns():
    assert resolve_n_jobs(None) == resolve_n_jobs(0) == 1 and resolve_n_jobs(3) == 3
    assert resolve_n_jobs(-1) >= resolve_n_jobs(-2) >= 1


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_candidate_search_on_the_shared_pool_matches_one_thread(n_threads):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(2000, 16)).astype(np.float32)
    centers = points[:64].copy()
    labels = rng.integers(64, size=2000)
    candidates = nearest_centers(centers, 8)
    expected = assign_among_candidates(points, labels, centers, candidates, 1)
    found = assign_among_candidates(points, labels, centers, candidates, n_threads)
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_allclose(found[1], expected[1], rtol=1e-6)


@pytest.mark.parametrize(
    ("flags", "core_type"),
    [
        (
            {
                "sse4_2",
                "avx",
                "avx2",
                "fma",
                "avx512f",
                "avx512cd",
                "avx512bw",
                "avx512dq",
                "avx512vl",
                "amx_tile",
            },
            "SkylakeX",
        ),
        ({"sse4_2", "avx", "avx2", "fma"}, "Haswell"),
        ({"sse4_2", "avx"}, None),
        (set(), None),
    ],
)
def test_openblas_core_type_follows_the_instruction_sets(flags, core_type):
    assert openblas_core_type(flags) == core_type


@pytest.mark.skipif(openblas_core_type() is None, reason="CPU without AVX2: OpenBLAS decides")
def test_faiss_blas_runs_kernels_this_cpu_supports_after_import_imagelearn():
    """FAISS's bundled OpenBLAS 0.3.15 took this project's Xeons (Sapphire Rapids) for a
    Prescott and ran SSE3 kernels: a 1000-word assignment was 5x slower (issue #16)."""
    probe = (
        "import json, imagelearn, faiss; from threadpoolctl import threadpool_info; "
        "print(json.dumps([p['architecture'] for p in threadpool_info() if 'faiss' in p['filepath'] "
        "and p['internal_api'] == 'openblas']))"
    )
    environment = {key: value for key, value in os.environ.items() if key != "OPENBLAS_CORETYPE"}
    output = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(output) == [openblas_core_type()]


@pytest.mark.skipif(openblas_core_type() is None, reason="CPU without AVX2: OpenBLAS decides")
def test_importing_faiss_first_with_fallback_kernels_warns_how_to_fix_it():
    """Prescott kernels forced here stand for a CPU that FAISS's OpenBLAS does not know."""
    environment = {key: value for key, value in os.environ.items() if key != "OPENBLAS_CORETYPE"}
    # a stand-in for the unknown CPU: the variable is read at faiss's load, then removed
    probe = (
        "import os; os.environ['OPENBLAS_CORETYPE'] = 'Prescott'; import faiss; "
        "del os.environ['OPENBLAS_CORETYPE']; import warnings; warnings.simplefilter('always'); "
        "import imagelearn"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, check=True
    )
    assert "import imagelearn first" in completed.stderr
    assert f"OPENBLAS_CORETYPE={openblas_core_type()}" in completed.stderr
