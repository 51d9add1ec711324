"""Progress bars: one per stage, counting what was done; long stages show one; short library
calls (one search of an index) draw nothing."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest

import imagelearn.core.execution as execution
import imagelearn.core.progress as progress_module
from conftest import data_path
from imagelearn.bof.vocabulary import KMeansVocabulary, VocabularyTree
from imagelearn.core.execution import map_images
from imagelearn.core.progress import progress, progress_bar
from imagelearn.retrieval import Index, IndexParams, build_index


@pytest.fixture
def shown(monkeypatch):
    """Progress bars on, without ``IMAGELEARN_QUIET``."""
    monkeypatch.delenv("IMAGELEARN_QUIET", raising=False)


@pytest.fixture
def at_once(shown, monkeypatch):
    """Progress bars on, drawn from the first moment (no delay)."""
    monkeypatch.setattr(progress_module, "PROGRESS_DELAY", 0.0)


class Recorder:
    """Stands in for :func:`progress_bar`: records each bar's label, total and final count."""

    def __init__(self) -> None:
        self.bars: list[list] = []

    @contextmanager
    def __call__(self, description: str, total: int | None = None, **_: object):
        bar = [description, total, 0]
        self.bars.append(bar)

        class Bar:
            def update(self, n: int = 1) -> None:
                bar[2] += n

        yield Bar()


def halve(value: int) -> int:
    return value // 2


class DictCache:
    def __init__(self, store: dict[str, int]) -> None:
        self.store = store

    def key(self, source: int) -> str:
        return str(source)

    def get(self, key: str) -> int | None:
        return self.store.get(key)

    def put(self, key: str, value: int) -> None:
        self.store[key] = value


def test_one_bar_per_stage_counts_cached_and_computed_values(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(execution, "progress_bar", recorder)
    cache = DictCache({"0": 0, "2": 1})
    result = map_images(halve, range(6), n_jobs=1, cache=cache, description="features")
    assert result.values == [0, 0, 1, 1, 2, 2] and result.n_computed == 4
    assert recorder.bars == [["features", 6, 6]]
    map_images(halve, range(6), n_jobs=1, cache=cache, description="features")  # all cached
    assert recorder.bars[-1] == ["features", 6, 6]


def test_a_bar_over_a_list_counts_toward_its_length(at_once, capsys):
    assert list(progress(["a", "b", "c"], "hashing")) == ["a", "b", "c"]
    drawn = capsys.readouterr().err
    assert "hashing" in drawn and "/3" in drawn and "0img" not in drawn


def test_no_bar_for_a_single_item_or_when_quiet(at_once, capsys, monkeypatch):
    list(progress(["only"], "features"))
    with progress_bar("features", total=1) as bar:
        bar.update(1)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("IMAGELEARN_QUIET", "1")
    list(progress(range(5), "features"))
    assert capsys.readouterr().err == ""


def test_short_work_draws_no_bar(shown, capsys):
    with progress_bar("features", total=3) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("vocabulary", "label"),
    [
        (KMeansVocabulary(n_words=16, n_iter=5, n_jobs=1), "vocabulary (k-means)"),
        (VocabularyTree(branching=4, depth=2, n_iter=5, n_jobs=1), "vocabulary (tree)"),
    ],
)
def test_vocabulary_training_shows_its_progress(at_once, capsys, vocabulary, label):
    descriptors = np.random.default_rng(0).random((3000, 8), dtype=np.float32)
    vocabulary.fit(descriptors)
    assert label in capsys.readouterr().err


def test_index_build_shows_its_stages_and_a_search_draws_nothing(
    tmp_path, capfd, monkeypatch, shown
):
    paths = sorted(data_path("ukbench").glob("ukbench*.jpg"))[:8]
    params = IndexParams(
        max_keypoints=200,
        max_side=240,
        train_images=8,
        vocabulary_params={"branching": 4, "depth": 2, "n_iter": 5},
    )
    monkeypatch.setattr(progress_module, "PROGRESS_DELAY", 0.0)
    build_index(paths, tmp_path / "index", params, n_jobs=1, cache_dir=False)
    drawn = capfd.readouterr().err
    for stage in ("hashing", "training features", "vocabulary (tree)", "assigning words"):
        assert stage in drawn
    monkeypatch.setattr(progress_module, "PROGRESS_DELAY", 1.0)
    index = Index.open(tmp_path / "index")
    assert index.search(paths[0], top=3).matches[0].path == str(paths[0].resolve())
    assert capfd.readouterr().err == ""
