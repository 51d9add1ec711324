"""The execution layer: order, failures with reasons, cache, n_jobs, batches, backends, threads."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from imagelearn.core.errors import ParameterError
from imagelearn.core.execution import (
    BatchResult,
    Failed,
    LocalBackend,
    get_backend,
    map_images,
    register_backend,
    resolve_n_jobs,
    thread_map,
    use_engine,
)
from imagelearn.core.images import ImageReadError
from imagelearn.features import make_detector
from imagelearn.features.extract import detect_raw_features

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "flowers5_sample"


def square_unless_odd(value: int) -> int:
    """A module-level (picklable) function that fails on odd inputs, as unreadable files do."""
    if value % 2:
        raise ImageReadError(f"item{value}", f"odd value {value}")
    return value * value


class DictCache:
    """A cache hook over a dict; counts what it is asked."""

    def __init__(self) -> None:
        self.store: dict[str, int] = {}
        self.puts = 0

    def key(self, source: int) -> str | None:
        return None if source < 0 else str(source)

    def get(self, key: str) -> int | None:
        return self.store.get(key)

    def put(self, key: str, value: int) -> None:
        self.puts += 1
        self.store[key] = value


@pytest.mark.parametrize("workers", ["inline", "threads", "processes"])
def test_order_is_kept_and_failures_carry_their_reasons(workers):
    result = map_images(square_unless_odd, list(range(10)), n_jobs=2, batch_size=3, workers=workers)
    assert result.values == [0, 4, 16, 36, 64]
    assert result.kept.tolist() == [0, 2, 4, 6, 8]
    assert result.failed.tolist() == [1, 3, 5, 7, 9]
    assert result.failures == [(str(value), f"odd value {value}") for value in (1, 3, 5, 7, 9)]
    assert result.n_computed == 5 and result.n_inputs == 10
    assert result.per_input()[:3] == [0, None, 4]


def test_strict_raises_for_the_first_failure():
    with pytest.raises(ImageReadError, match="odd value 1"):
        map_images(square_unless_odd, [0, 1, 2, 3], strict=True)


def test_cache_hits_skip_the_work():
    cache = DictCache()
    calls: list[int] = []

    def counted(value: int) -> int:
        calls.append(value)
        return square_unless_odd(value)

    first = map_images(counted, [0, 2, 3, 4, -2], workers="inline", cache=cache)
    assert first.n_computed == 4 and cache.puts == 3  # -2 has no key; 3 failed: not cached
    calls.clear()
    second = map_images(counted, [4, 0, 2, 3, -2], workers="inline", cache=cache)
    assert calls == [3, -2]  # only the uncacheable and the failed were computed again
    assert second.values == [16, 0, 4, 4] and second.kept.tolist() == [0, 1, 2, 4]
    assert second.n_computed == 1


def test_a_cache_key_that_cannot_be_read_is_computed_and_reports_why(tmp_path):
    class UnreadableKeys(DictCache):
        def key(self, source: int) -> str:
            raise FileNotFoundError(source)

    result = map_images(square_unless_odd, [1, 2], workers="inline", cache=UnreadableKeys())
    assert result.values == [4] and result.failures == [("1", "odd value 1")]


def test_batches_have_the_requested_size():
    sizes: list[int] = []

    def batch_function(batch: list[int]) -> list[int | Failed]:
        sizes.append(len(batch))
        return [Failed("negative") if value < 0 else value for value in batch]

    result = map_images(
        batch_function, [1, -1, 2, 3, 4, 5, 6], batched=True, batch_size=3, workers="inline"
    )
    assert sizes == [3, 3, 1]
    assert result.values == [1, 2, 3, 4, 5, 6] and result.failures == [("-1", "negative")]


def test_n_jobs_follows_scikit_learn():
    cores = os.cpu_count() or 1
    assert resolve_n_jobs(None) == 1 and resolve_n_jobs(0) == 1 and resolve_n_jobs(3) == 3
    assert resolve_n_jobs(-1) == cores and resolve_n_jobs(-2) == max(1, cores - 1)
    assert resolve_n_jobs(-10 * cores) == 1


def test_stacked_values_keep_their_width_when_empty():
    empty = map_images(square_unless_odd, [1, 3], workers="inline")
    assert empty.stacked(7).shape == (0, 7) and empty.values == []
    vectors = BatchResult(
        [np.ones(2), np.zeros(2)], np.array([0, 2]), [("b", "bad")], np.array([1])
    )
    assert vectors.stacked(2).dtype == np.float32 and vectors.per_input(-1)[1] == -1


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="examples/flowers5_sample is missing")
def test_threads_and_processes_give_identical_features():
    paths = [*sorted(SAMPLE.rglob("*.jpg"))[:6], SAMPLE / "missing.jpg"]
    work = partial(detect_raw_features, detector=make_detector("sift", max_side=160))
    results = {
        workers: map_images(work, paths, n_jobs=2, batch_size=2, workers=workers)
        for workers in ("inline", "threads", "processes")
    }
    reference = results["inline"]
    assert len(reference.kept) == 6 and reference.failed.tolist() == [6]
    for result in results.values():
        assert result.kept.tolist() == reference.kept.tolist()
        assert result.failures == reference.failures
        for features, expected in zip(result.values, reference.values, strict=True):
            np.testing.assert_array_equal(features.keypoints, expected.keypoints)
            np.testing.assert_array_equal(features.descriptors, expected.descriptors)


class RecordingBackend(LocalBackend):
    """A backend that runs on the local one and records what it was given."""

    def __init__(self, address: str | None = None) -> None:
        super().__init__(address)
        self.calls: list[tuple[int, int, str]] = []

    def map_batches(
        self,
        function: Callable[[list], list],
        batches: Sequence[list],
        n_jobs: int,
        workers: str,
    ) -> Iterator[list]:
        self.calls.append((len(batches), n_jobs, workers))
        return super().map_batches(function, batches, n_jobs, workers)


def test_a_registered_backend_runs_the_work_by_name():
    register_backend("recording", RecordingBackend)
    result = map_images(square_unless_odd, [0, 1, 2, 4], n_jobs=2, batch_size=2, engine="recording")
    assert result.values == [0, 4, 16]
    assert get_backend("recording").calls == [(2, 2, "processes")]
    with pytest.raises(ParameterError, match="unknown engine 'nowhere'") as raised:
        map_images(square_unless_odd, [0], engine="nowhere")
    assert raised.value.parameter == "engine"


def test_use_engine_runs_calls_that_name_none_on_it():
    register_backend("recording", RecordingBackend)
    with use_engine("recording") as backend:
        assert map_images(square_unless_odd, [0, 2], n_jobs=1).values == [0, 4]
        assert map_images(square_unless_odd, [2], engine="local").values == [4]
    assert map_images(square_unless_odd, [2]).values == [4]  # local again outside
    assert backend.calls == [(2, 1, "processes")]  # two batches of one


def test_the_local_engine_refuses_an_address():
    with pytest.raises(ParameterError, match="runs on this machine") as raised:
        map_images(square_unless_odd, [0], address="10.0.0.1:6379")
    assert raised.value.parameter == "address"


def test_thread_map_keeps_order():
    assert list(thread_map(square_unless_odd, [0, 2, 4, 6], n_jobs=2)) == [0, 4, 16, 36]


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_imagelearn_sets_a_passive_openmp_wait_policy_unless_chosen(given, expected):
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    environment["PYTHONPATH"] = str(ROOT / "src")
    if given is not None:
        environment["OMP_WAIT_POLICY"] = given
    printed = subprocess.run(
        [sys.executable, "-c", "import os, imagelearn; print(os.environ['OMP_WAIT_POLICY'])"],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    ).stdout.strip()
    assert printed == expected


def test_map_images_keeps_input_order_across_worker_processes():
    result = map_images(abs, [-3, 1, -2, 0, 5], n_jobs=2, batch_size=2)
    assert result.values == [3, 1, 2, 0, 5]


def test_process_pools_are_created_in_the_execution_module_only():
    package = ROOT / "src" / "imagelearn"
    pool_makers = ("ProcessPoolExecutor", "get_reusable_executor", "multiprocessing")
    creators = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if any(maker in path.read_text() for maker in pool_makers)
    )
    assert creators == ["core/execution.py"]


def test_thread_map_nested_in_the_shared_pool_does_not_deadlock():
    def inner_sum(value: int) -> int:
        return sum(thread_map(abs, [-value, value], n_jobs=2))

    assert list(thread_map(inner_sum, [1, 2, 3, 4], n_jobs=2)) == [2, 4, 6, 8]


def test_sources_may_be_an_iterator():
    result = map_images(square_unless_odd, iter([2, 3, 4]), workers="inline")
    assert result.values == [4, 16] and result.kept.tolist() == [0, 2]
