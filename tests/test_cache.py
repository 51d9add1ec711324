"""The on-disk caches: measuring, clearing, the size cap with least-recently-used eviction,
and ``imagelearn cache`` / ``imagelearn data check`` reporting them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import imagelearn.core.cache as cache_module
from conftest import data_path
from imagelearn.classify.embeddings import EmbeddingCache
from imagelearn.cli.main import main
from imagelearn.core.cache import (
    CACHE_KINDS,
    DEFAULT_MAX_BYTES,
    CacheBudget,
    cache_info,
    clear_cache,
    format_size,
    max_cache_bytes,
    parse_size,
)
from imagelearn.core.errors import ImagelearnError, ParameterError
from imagelearn.features import extract_features, make_detector

#: Bytes of one embedding entry in the tests below: 1024 float32 values.
ENTRY_BYTES = 4096


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty cache home of this test, with the default cap."""
    monkeypatch.setenv("IMAGELEARN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("IMAGELEARN_CACHE_MAX_BYTES", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return sorted(data_path("flowers5", "daisy").glob("*.jpg"))[:4]


def put_embeddings(folder: Path, count: int, first: int = 0) -> list[Path]:
    """``count`` embedding entries of ENTRY_BYTES each, used ``count - i`` hours ago (oldest first)."""
    cache = EmbeddingCache(folder)
    paths = []
    for number in range(first, first + count):
        key = f"{number:064x}"
        cache.put(key, np.full(ENTRY_BYTES // 4, number, dtype=np.float32))
        used = time.time() - 3600.0 * (first + count - number)
        os.utime(folder / f"{key}.f32", (used, used))
        paths.append(folder / f"{key}.f32")
    return paths


def test_sizes_parse_with_binary_units():
    assert parse_size("1024") == 1024
    assert parse_size("500M") == 500 * 2**20
    assert parse_size("1.5GiB") == 3 * 2**29
    assert format_size(512) == "512 B" and format_size(3 * 2**29) == "1.5 GiB"
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_the_cap_defaults_to_five_gib_and_follows_its_variable(home, monkeypatch):
    assert max_cache_bytes() == DEFAULT_MAX_BYTES == 5 * 2**30
    monkeypatch.setenv("IMAGELEARN_CACHE_MAX_BYTES", "2G")
    assert max_cache_bytes() == 2 * 2**30
    monkeypatch.setenv("IMAGELEARN_CACHE_MAX_BYTES", "0")
    assert max_cache_bytes() is None and CacheBudget.of(home / "features") is None
    monkeypatch.setenv("IMAGELEARN_CACHE_MAX_BYTES", "plenty")
    with pytest.raises(ImagelearnError, match="IMAGELEARN_CACHE_MAX_BYTES"):
        max_cache_bytes()


def test_only_folders_in_the_cache_home_are_capped(home, tmp_path):
    assert CacheBudget.of(home / "features") == CacheBudget(home, DEFAULT_MAX_BYTES)
    assert CacheBudget.of(tmp_path / "elsewhere") is None


def test_info_counts_the_entries_and_bytes_of_each_kind(home, photos):
    empty = cache_info()
    assert empty.location == home and [k.kind for k in empty.kinds] == list(CACHE_KINDS)
    assert empty.n_bytes == empty.n_entries == 0
    extract_features(photos, make_detector("sift", max_keypoints=200), n_jobs=1)
    put_embeddings(home / "embeddings" / "model", 3)
    info = cache_info()
    features, embeddings, segmentation, index, thumbnails = info.kinds
    on_disk = sum(p.stat().st_size for p in (home / "features").rglob("*.npz"))
    assert (features.n_entries, features.n_bytes) == (len(photos), on_disk)
    assert (embeddings.n_entries, embeddings.n_bytes) == (3, 3 * ENTRY_BYTES)
    assert segmentation.n_entries == index.n_entries == thumbnails.n_entries == 0
    assert info.n_bytes == on_disk + 3 * ENTRY_BYTES
    assert str(home) in info.format() and "cap 5.0 GiB" in info.format()


def test_reading_an_entry_marks_it_used(home, photos):
    detector = make_detector("sift", max_keypoints=200)
    extract_features(photos[:1], detector, n_jobs=1)
    (entry,) = (home / "features").rglob("*.npz")
    long_ago = time.time() - 30 * 86_400
    os.utime(entry, (long_ago, long_ago))
    extract_features(photos[:1], detector, n_jobs=1)  # a cache hit
    assert entry.stat().st_mtime > time.time() - 3600
    (vector,) = put_embeddings(home / "embeddings" / "model", 1)
    assert EmbeddingCache(vector.parent).get(vector.stem) is not None
    assert vector.stat().st_mtime > time.time() - 3600


def test_clear_by_age_and_by_kind(home):
    old = put_embeddings(home / "embeddings" / "model", 2)
    for path in old:
        past = time.time() - 10 * 86_400
        os.utime(path, (past, past))
    recent = put_embeddings(home / "embeddings" / "model", 1, first=2)
    (home / "features" / "sift").mkdir(parents=True)
    (home / "features" / "sift" / "entry.npz").write_bytes(b"x" * 100)
    assert clear_cache(older_than=5) == 2 * ENTRY_BYTES
    assert [p.exists() for p in old + recent] == [False, False, True]
    assert clear_cache(kinds=["embeddings"]) == ENTRY_BYTES
    assert cache_info().n_bytes == 100
    assert clear_cache() == 100 and cache_info().n_entries == 0
    with pytest.raises(ParameterError, match="unknown cache kind") as raised:
        clear_cache(kinds=["weights"])
    assert raised.value.parameter == "kinds"
    with pytest.raises(ParameterError):
        clear_cache(older_than=-1)


def test_writes_over_the_cap_evict_the_least_recently_used_entries(home, monkeypatch):
    monkeypatch.setenv("IMAGELEARN_CACHE_MAX_BYTES", str(10 * ENTRY_BYTES))
    folder = home / "embeddings" / "model"
    entries = put_embeddings(folder, 8)  # 80% of the cap, oldest first
    cache = EmbeddingCache(folder)
    assert cache.get(entries[0].stem) is not None  # the oldest becomes the most recent
    put_embeddings(folder, 4, first=8)  # 120%: the 11th entry evicts down to 90%
    assert cache_info().n_bytes <= 10 * ENTRY_BYTES
    assert entries[0].exists()
    assert not entries[1].exists() and not entries[2].exists() and entries[3].exists()


def test_writes_under_the_cap_never_walk_the_cache(home, monkeypatch):
    walks = []
    measure = cache_module._entries_by_use
    monkeypatch.setattr(cache_module, "_entries_by_use", lambda h: walks.append(h) or measure(h))
    monkeypatch.setenv("IMAGELEARN_CACHE_MAX_BYTES", str(1000 * ENTRY_BYTES))
    put_embeddings(home / "embeddings" / "model", 200)  # 20% of the cap, in 4 reports
    assert walks == [home]  # measured once, at the first report; estimated since
    assert json.loads((home / ".usage.json").read_text())["bytes"] == 200 * ENTRY_BYTES


def test_cache_commands_report_and_clear(home, capsys):
    put_embeddings(home / "embeddings" / "model", 2)
    assert main(["cache", "info", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["location"] == str(home) and info["kinds"]["embeddings"]["n_entries"] == 2
    assert main(["cache", "info"]) == 0
    assert "embeddings" in capsys.readouterr().out
    assert main(["cache", "clear", "--older-than", "365", "--kind", "embeddings"]) == 0
    assert cache_info().n_entries == 2
    assert main(["cache", "clear", "--kind", "embeddings"]) == 0
    assert f"freed {format_size(2 * ENTRY_BYTES)}" in capsys.readouterr().out
    assert cache_info().n_entries == 0


def test_data_check_prints_where_the_cache_is_and_its_size(home, capsys, make_image):
    put_embeddings(home / "embeddings" / "model", 2)
    for name in ("a", "b"):
        make_image(f"photos/{name}.png", np.full((8, 8, 3), ord(name), dtype=np.uint8))
    assert main(["data", "check", str(home.parent / "photos"), "--n-jobs", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"cache: {home} ({format_size(2 * ENTRY_BYTES)}, cap 5.0 GiB)"
