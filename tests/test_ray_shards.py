"""The sharded index build without Ray: on local workers that claim to be distributed, and
its exactly-once check on shards that disagree."""

from __future__ import annotations

import sqlite3
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from conftest import data_path
from imagelearn.core.execution import LocalBackend, register_backend, use_engine
from imagelearn.retrieval import Index, IndexParams, add_images, build_index
from imagelearn.retrieval.shards import (
    ShardMismatchError,
    ShardRow,
    _check_exactly_once,
    _groups,
    _images,
    _segment,
    _write_shard,
    build_engine,
    shard_images,
    shard_path,
)

PARAMS = IndexParams(
    max_keypoints=200,
    max_side=320,
    vocabulary_params={"branching": 6, "depth": 2, "n_iter": 4},
    train_images=12,
    train_descriptors_per_image=100,
)


class SharedStorageBackend(LocalBackend):
    """The local engine, taken for one whose workers are elsewhere: builds go through shards."""

    distributed = True


def catalogue(index: Path) -> list[tuple]:
    with sqlite3.connect(index / "catalogue.sqlite") as connection:
        return connection.execute(
            "SELECT id, path, sha256, bytes, height, width, n_features FROM images ORDER BY id"
        ).fetchall()


def test_a_sharded_build_and_add_give_the_catalogue_and_results_of_batched_ones(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("imagelearn.retrieval.writer.SEGMENT_POSTINGS", 100)  # ~4 images each
    photos = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:16]
    images = [
        *photos[:12],
        str(data_path("bad_inputs", "mixed_images", "ukbench09268_corrupt.jpg")),
    ]
    batched = build_index(images, tmp_path / "batched", PARAMS, n_jobs=1, cache_dir=False)
    add_images(tmp_path / "batched", photos[10:], n_jobs=1, cache_dir=False)
    register_backend("shared-storage", SharedStorageBackend)
    with use_engine("shared-storage"):
        sharded = build_index(images, tmp_path / "sharded", PARAMS, n_jobs=1, cache_dir=False)
        added = add_images(tmp_path / "sharded", photos[10:], n_jobs=1, cache_dir=False)
    assert len(added.added) == 4 and len(added.duplicates) == 2
    assert sharded.added == batched.added and len(sharded.added) == 12
    assert sharded.skipped == batched.skipped and len(sharded.skipped) == 1
    assert len(catalogue(tmp_path / "sharded")) == 16
    assert len(Index.open(tmp_path / "sharded").segments) >= 4  # streamed into several
    assert catalogue(tmp_path / "sharded") == catalogue(tmp_path / "batched")
    assert_same_results(tmp_path, photos)
    assert not (tmp_path / "sharded" / "shards").exists()
    # past MAX_SEGMENTS small segments, the next add merges the smallest, up to the bound
    streamed = Index.open(tmp_path / "sharded").segments
    monkeypatch.setattr("imagelearn.retrieval.writer.SEGMENT_POSTINGS", 400)
    monkeypatch.setattr("imagelearn.retrieval.writer.MAX_SEGMENTS", 2)
    add_images(tmp_path / "sharded", photos[:1], n_jobs=1, cache_dir=False)
    merged = Index.open(tmp_path / "sharded").segments
    assert len(streamed) > len(merged) >= 2
    assert max(len(segment.postings.images) for segment in merged) <= 400
    assert catalogue(tmp_path / "sharded") == catalogue(tmp_path / "batched")
    assert_same_results(tmp_path, photos)


def test_a_local_add_deletes_the_shards_of_an_interrupted_distributed_build(tmp_path):
    photos = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:13]
    build_index(photos[:12], tmp_path / "index", PARAMS, n_jobs=1, cache_dir=False)
    left = shard_path(tmp_path / "index", "0" * 32)
    left.parent.mkdir()
    left.write_bytes(b"a shard of a build killed mid-way")
    add_images(tmp_path / "index", photos[12:], n_jobs=1, cache_dir=False)
    assert not left.parent.exists()


def assert_same_results(tmp_path: Path, photos: list[str]) -> None:
    for query in photos[::4]:
        results = [
            [(m.path, round(m.score, 5)) for m in Index.open(tmp_path / name).search(query).matches]
            for name in ("batched", "sharded")
        ]
        assert results[0] == results[1]


@pytest.mark.parametrize(("n_images", "expected"), [(1, 1), (64, 1), (65, 2), (10**6, 500)])
def test_blocks_are_small_enough_for_64_of_them_and_at_most_a_batch(n_images, expected):
    assert shard_images(n_images, 500) == expected


def shards_holding(tmp_path: Path, tables: dict[str, dict]) -> dict[str, dict]:
    for key in tables:
        path = shard_path(tmp_path, key)
        path.parent.mkdir(exist_ok=True)
        path.touch()
    return tables


def test_an_image_in_two_shards_fails_the_merge_and_deletes_them(tmp_path):
    pending = [("/a.jpg", "aa" * 32), ("/b.jpg", "bb" * 32)]
    shards = shards_holding(
        tmp_path,
        {
            "first": {"paths": ["/a.jpg", "/b.jpg"], "sha256": ["aa" * 32, "bb" * 32]},
            "stale": {"paths": ["/b.jpg"], "sha256": ["bb" * 32]},
        },
    )
    rows = [ShardRow("first", 0), ShardRow("first", 1)]
    with pytest.raises(ShardMismatchError, match=r"/b\.jpg: in 2 shard rows, not one"):
        _check_exactly_once(tmp_path, pending, [0, 1], rows, shards)
    assert not shard_path(tmp_path, "first").exists()
    assert not shard_path(tmp_path, "stale").exists()


def test_an_image_that_changed_while_it_was_indexed_fails_the_merge(tmp_path):
    pending = [("/a.jpg", "aa" * 32)]
    shards = shards_holding(tmp_path, {"only": {"paths": ["/a.jpg"], "sha256": ["cc" * 32]}})
    with pytest.raises(ShardMismatchError, match="content changed while it was indexed"):
        _check_exactly_once(tmp_path, pending, [0], [ShardRow("only", 0)], shards)
    assert not shard_path(tmp_path, "only").exists()


def test_shards_that_agree_pass_the_check(tmp_path):
    pending = [("/a.jpg", "aa" * 32), ("/gone.jpg", "dd" * 32), ("/b.jpg", "bb" * 32)]
    shards = shards_holding(
        tmp_path,
        {
            "one": {"paths": ["/a.jpg"], "sha256": ["aa" * 32]},
            "two": {"paths": ["/b.jpg"], "sha256": ["bb" * 32]},
        },
    )
    _check_exactly_once(tmp_path, pending, [0, 2], [ShardRow("one", 0), ShardRow("two", 0)], shards)
    assert shard_path(tmp_path, "one").exists() and shard_path(tmp_path, "two").exists()


def synthetic_shards(directory: Path, n_shards: int, n_words: int = 50_000) -> list[ShardRow]:
    """``n_shards`` shards of 64 images of 500 random words each (about 1 MB a shard)."""
    rng = np.random.default_rng(0)
    directory.mkdir()
    rows = []
    for number in range(n_shards):
        words = rng.integers(0, n_words, (64, 500))
        bags = [np.unique(w) for w in words]
        key = f"s{number:04d}"
        arrays = {
            "sizes": np.full((64, 2), 480, np.int32),
            "keypoint_offsets": np.arange(65, dtype=np.int64) * 500,
            "keypoints": rng.random((64 * 500, 4), dtype=np.float32),
            "words": words.reshape(-1).astype(np.uint32),
            "bag_offsets": np.concatenate(([0], np.cumsum([len(b) for b in bags]))),
            "bag_words": np.concatenate(bags),
            "bag_weights": np.ones(sum(len(b) for b in bags), np.float32),
        }
        table = {"paths": [f"/{key}/{i}" for i in range(64)], "sha256": [], "failures": []}
        _write_shard(shard_path(directory, key), {"arrays": arrays, "table": table})
        rows += [ShardRow(key, row) for row in range(64)]
    return rows


def merge_peak(directory: Path, n_shards: int) -> tuple[int, int]:
    """(peak traced bytes, images) of streaming ``n_shards`` shards into segments."""
    rows = synthetic_shards(directory, n_shards)
    tracemalloc.start()
    try:
        merged = 0
        for group in _groups(_images(directory, rows), 64 * 500 * 2):  # about 2 shards
            ids = np.arange(merged, merged + len(group), dtype=np.uint32)
            merged += len(_segment("g0000010000", ids, group, 50_000).ids)
        return tracemalloc.get_traced_memory()[1], merged
    finally:
        tracemalloc.stop()


def test_the_merge_holds_one_shard_and_one_segment_not_the_collection(tmp_path):
    small, n_small = merge_peak(tmp_path / "small", 6)
    large, n_large = merge_peak(tmp_path / "large", 24)
    assert (n_small, n_large) == (6 * 64, 24 * 64)
    shard_bytes = sum(p.stat().st_size for p in (tmp_path / "large" / "shards").iterdir())
    assert large < 1.3 * small  # 4 times the shards, about the same peak
    assert large < shard_bytes / 3


@pytest.mark.parametrize(("n_images", "expected"), [(31, "auto"), (32, "onnx")])
def test_blocks_of_a_large_build_run_the_network_where_the_local_build_would(n_images, expected):
    pytest.importorskip("onnxruntime")
    from imagelearn.retrieval.global_descriptors import GeMDescriptor

    descriptor = GeMDescriptor(device="cpu")
    build_engine(descriptor, n_images)  # a block holds fewer than 32 images either way
    assert descriptor.backend == expected
