"""The global path (GeM CNN descriptors in FAISS) and the hybrid mode on real photos."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from conftest import data_path
from imagelearn.core.cache import cache_root
from imagelearn.core.errors import ParameterError
from imagelearn.retrieval import (
    Index,
    IndexParams,
    add_images,
    build_index,
    remove_images,
    ukbench_ground_truth,
)
from imagelearn.retrieval.evaluation import evaluate_index
from imagelearn.retrieval.global_descriptors import EXACT_INDEX_LIMIT, make_global_index
from imagelearn.retrieval.index import stored_descriptor
from imagelearn.retrieval.runs import build_run, imagenet_weights_available

pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def global_index(tmp_path_factory) -> tuple[Path, list[str]]:
    paths = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:24]
    params = IndexParams(
        max_keypoints=500,
        max_side=320,
        vocabulary_params={"branching": 16, "depth": 2, "n_iter": 4},
        train_descriptors_per_image=200,
        global_descriptor=True,
        global_max_side=256,
    )
    directory = tmp_path_factory.mktemp("global") / "index"
    build_index(paths[:20], directory, params, cache_dir=directory.parent / "cache")
    return directory, paths


@pytest.mark.parametrize("mode", ["global", "hybrid"])
def test_global_and_hybrid_ns_scores(global_index, mode):
    directory, paths = global_index
    truths = ukbench_ground_truth(paths[:20])
    scores = evaluate_index(Index.open(directory), truths, depth=8, mode=mode, shortlist=8)
    assert scores["N-S"] >= 3.5, scores


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "local"},
        {"mode": "local", "expand": True},
        {"mode": "global", "verify": False},
        {"mode": "hybrid", "shortlist": 12},
        {},
    ],
)
def test_a_search_by_id_ranks_as_the_search_by_its_file(global_index, options, monkeypatch):
    directory, paths = global_index
    index, reader = Index.open(directory), Index.open(directory)

    def extract(*arguments):
        raise AssertionError("a search by id extracted features")

    monkeypatch.setattr(reader, "features", extract)  # it reads what the index stored
    monkeypatch.setattr(reader._query_descriptor, "transform", extract)
    monkeypatch.setattr(reader._query_descriptor, "describe", extract)
    for query in (paths[1], paths[14]):
        by_file = index.search(query, top=10, **options)
        by_id = reader.search_id(by_file.matches[0].image_id, top=10, **options)
        assert by_file.matches[0].path == by_id.query == query
        assert by_id.mode == by_file.mode == options.get("mode", "hybrid")
        assert [m.image_id for m in by_id.matches] == [m.image_id for m in by_file.matches]
        assert [m.inliers for m in by_id.matches] == [m.inliers for m in by_file.matches]
        np.testing.assert_allclose(
            [m.score for m in by_id.matches], [m.score for m in by_file.matches], rtol=1e-4
        )


def test_a_search_by_id_refuses_ids_without_a_live_image(global_index):
    directory, _ = global_index
    index = Index.open(directory)
    for image_id in (-1, index.n_ids, 10**9):
        with pytest.raises(ParameterError, match="no indexed image has id") as error:
            index.search_id(image_id)
        assert error.value.parameter == "image_id"


def test_global_index_follows_add_and_remove(global_index):
    directory, paths = global_index
    add_images(directory, paths[20:24])
    index = Index.open(directory)
    assert index.info()["global"] == "IndexIDMap2" and index.n_images == 24
    assert index.search(paths[22], top=1, mode="global", verify=False).matches[0].path == paths[22]
    remove_images(directory, [paths[22]])
    matches = Index.open(directory).search(paths[22], top=24, mode="global", verify=False).matches
    assert paths[22] not in [m.path for m in matches] and len(matches) == 23


def test_a_global_query_writes_nothing_into_the_embedding_cache(global_index):
    directory, paths = global_index
    cache = cache_root("embeddings")
    before = sorted(cache.rglob("*"))
    index = Index.open(directory)
    for query in (paths[3], paths[23]):  # an indexed image and one it has not seen
        assert index.search(query, top=3, mode="global", verify=False).matches
    assert sorted(cache.rglob("*")) == before


def test_global_mode_needs_global_descriptors(tmp_path):
    paths = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:8]
    params = IndexParams(
        max_keypoints=200, max_side=320, vocabulary_params={"branching": 8, "depth": 2}
    )
    build_index(paths, tmp_path / "local", params, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="without global descriptors"):
        Index.open(tmp_path / "local").search(paths[0], mode="global")


def test_large_collections_get_a_compressed_ivfpq_index(rng):
    training = rng.normal(size=(2600, 16)).astype(np.float32)
    training /= np.linalg.norm(training, axis=1, keepdims=True)
    index = make_global_index(16, EXACT_INDEX_LIMIT + 1, training)
    assert isinstance(index, faiss.IndexIVFPQ) and index.code_size == 16
    index.add_with_ids(training, np.arange(2600))
    _, ids = index.search(training[:20], 5)
    assert np.mean(ids[:, 0] == np.arange(20)) >= 0.8
    decoded = stored_descriptor(index, 7)  # a search by id reads the codes back
    assert decoded.shape == (1, 16) and float(decoded[0] @ training[7]) > 0.9


def test_a_build_takes_global_descriptors_by_default_and_search_goes_hybrid(tmp_path):
    if not imagenet_weights_available("mobilenet_v2"):
        pytest.skip("no ImageNet weights for mobilenet_v2 on this machine")
    paths = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:8]
    result = build_run(
        paths,
        tmp_path / "index",
        branching=4,
        depth=2,
        max_keypoints=300,
        max_side=320,
        train_images=8,
        n_jobs=1,
        cache_dir=tmp_path / "cache",
    )
    assert result.params.global_descriptor
    found = Index.open(tmp_path / "index").search(paths[5], top=4)
    assert found.mode == "hybrid" and found.matches[0].path == paths[5]
