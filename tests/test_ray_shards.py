"""The sharded index build without Ray: on local workers that claim to be distributed, and
its exactly-once check on shards that disagree."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import data_path
from imagelearn.core.execution import LocalBackend, register_backend, use_engine
from imagelearn.retrieval import Index, IndexParams, add_images, build_index
from imagelearn.retrieval.shards import (
    ShardMismatchError,
    ShardRow,
    _check_exactly_once,
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


def test_a_sharded_build_and_add_give_the_catalogue_and_results_of_batched_ones(tmp_path):
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
    assert catalogue(tmp_path / "sharded") == catalogue(tmp_path / "batched")
    for query in photos[::4]:
        results = [
            [(m.path, round(m.score, 5)) for m in Index.open(tmp_path / name).search(query).matches]
            for name in ("batched", "sharded")
        ]
        assert results[0] == results[1]
    assert not (tmp_path / "sharded" / "shards").exists()


@pytest.mark.parametrize(("n_images", "expected"), [(1, 1), (64, 1), (65, 2), (10**6, 500)])
def test_blocks_are_small_enough_for_64_of_them_and_at_most_a_batch(n_images, expected):
    assert shard_images(n_images, 500) == expected


def shards_holding(tmp_path: Path, tables: dict[str, dict]) -> dict[str, dict]:
    for key in tables:
        path = shard_path(tmp_path, key)
        path.parent.mkdir(exist_ok=True)
        path.touch()
    return {key: {"table": table} for key, table in tables.items()}


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
