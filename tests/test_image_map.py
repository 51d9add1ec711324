"""The 2-D map of an index: stored with it, kept up to date by add and remove, computed once
into the cache for an index without one, from global descriptors or from bags of words."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import data_path
from imagelearn.core.bundle import BundleError
from imagelearn.retrieval import Index, IndexParams, add_images, build_index, remove_images
from imagelearn.retrieval import image_map as image_map_module
from imagelearn.retrieval.image_map import ImageMap, image_map, layout_2d
from imagelearn.retrieval.storage import read_index_manifest, write_index_manifest

pytest.importorskip("torchvision")

PARAMS = dict(
    max_keypoints=300,
    max_side=320,
    vocabulary_params={"branching": 16, "depth": 2, "n_iter": 4},
    train_descriptors_per_image=150,
)


def _ukbench(n: int) -> list[str]:
    return sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:n]


@pytest.fixture(scope="module")
def mapped(tmp_path_factory) -> tuple[Path, list[str]]:
    """28 UKBench photos (7 objects x 4 views), the last view of the last object left out."""
    paths = _ukbench(28)
    directory = tmp_path_factory.mktemp("map") / "index"
    params = IndexParams(**PARAMS, global_descriptor=True, global_max_side=256)
    build_index(paths[:27], directory, params, cache_dir=directory.parent / "cache")
    return directory, paths


def _objects(index: Index, layout: ImageMap) -> np.ndarray:
    records = index.records(layout.ids.tolist())
    return np.array([int(Path(records[i].path).stem[-5:]) // 4 for i in layout.ids.tolist()])


def _view_distances(index: Index, layout: ImageMap) -> tuple[float, float]:
    """Mean distance on the map between views of one object, and between other images."""
    objects = _objects(index, layout)
    distances = np.linalg.norm(layout.xy[:, None] - layout.xy[None], axis=2)
    same = (objects[:, None] == objects[None]) & ~np.eye(len(objects), dtype=bool)
    return float(distances[same].mean()), float(distances[objects[:, None] != objects[None]].mean())


def test_the_map_is_stored_with_the_index_and_puts_views_of_one_object_together(mapped):
    directory, _ = mapped
    index = Index.open(directory)
    name = index.content["map"]
    assert name and (directory / name).is_file()
    layout = image_map(index, cache_dir="")
    assert np.array_equal(layout.ids, index.ids())
    assert layout.xy.dtype == np.float32 and layout.xy.shape == (27, 2)
    assert layout.xy.min() >= 0 and layout.xy.max() <= 1 and np.ptp(layout.xy, axis=0).max() > 0.9
    same, other = _view_distances(index, layout)
    assert same < 0.5 * other, (same, other)  # measured: 0.1


def test_add_places_new_images_by_their_neighbours_and_remove_drops_them(mapped, tmp_path):
    directory, paths = mapped
    copy = tmp_path / "index"
    shutil.copytree(directory, copy)
    before = image_map(Index.open(copy), cache_dir="")
    add_images(copy, paths[27:])  # the 4th view of an object with 3 views on the map
    index = Index.open(copy)
    after = image_map(index, cache_dir="")
    assert np.array_equal(after.ids, index.ids()) and len(after.ids) == 28
    np.testing.assert_array_equal(after.restricted(before.ids).xy, before.xy)  # nothing moved
    objects = _objects(index, after)
    new = after.xy[-1]
    views = after.xy[:-1][objects[:-1] == objects[-1]]
    others = after.xy[:-1][objects[:-1] != objects[-1]]
    assert np.linalg.norm(views - new, axis=1).mean() < np.linalg.norm(others - new, axis=1).mean()
    remove_images(copy, paths[:2])
    index = Index.open(copy)
    assert np.array_equal(image_map(index, cache_dir="").ids, index.ids())
    assert len(index.ids()) == 26


def test_an_index_without_a_map_gets_one_once_in_the_cache_never_in_the_index(
    mapped, tmp_path, monkeypatch
):
    directory, _ = mapped
    copy = tmp_path / "index"
    shutil.copytree(directory, copy)
    content = read_index_manifest(copy)
    write_index_manifest(copy, {**content, "map": None})  # as an index written before maps
    files = sorted(p.name for p in copy.iterdir())
    cache = tmp_path / "cache"
    first = image_map(Index.open(copy), cache_dir=cache)
    assert len(list(cache.glob("map-*.safetensors"))) == 1
    assert sorted(p.name for p in copy.iterdir()) == files
    monkeypatch.setattr(image_map_module, "compute_map", lambda *a: pytest.fail("computed again"))
    second = image_map(Index.open(copy), cache_dir=cache)
    np.testing.assert_array_equal(first.xy, second.xy)


def test_an_index_without_global_descriptors_is_mapped_from_its_bags_of_words(tmp_path):
    paths = _ukbench(24)
    build_index(paths, tmp_path / "index", IndexParams(**PARAMS), cache_dir=tmp_path / "cache")
    index = Index.open(tmp_path / "index")
    assert index.content["global"] is None
    layout = image_map(index, cache_dir="")
    same, other = _view_distances(index, layout)
    assert same < 0.7 * other, (same, other)  # measured: 0.4


def test_beyond_the_t_sne_limit_a_sample_is_laid_out_and_the_rest_placed(mapped, monkeypatch):
    directory, _ = mapped
    index = Index.open(directory)
    monkeypatch.setattr(image_map_module, "TSNE_LIMIT", 12)
    layout = image_map_module.compute_map(index)
    assert np.array_equal(layout.ids, index.ids())
    assert layout.xy.min() >= 0 and layout.xy.max() <= 1
    same, other = _view_distances(index, layout)
    assert same < 0.8 * other, (same, other)


def test_small_layouts_and_damaged_map_files(tmp_path):
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 7):
        xy = layout_2d(rng.normal(size=(n, 8)).astype(np.float32))
        assert xy.shape == (n, 2) and xy.dtype == np.float32
        assert np.all((xy >= 0) & (xy <= 1))
    saved = ImageMap(np.array([0, 3], np.int64), np.array([[0.1, 0.2], [0.9, 1.0]], np.float32))
    saved.save(tmp_path / "map.safetensors")
    loaded = ImageMap.load(tmp_path / "map.safetensors")
    assert np.array_equal(loaded.ids, saved.ids) and np.array_equal(loaded.xy, saved.xy)
    (tmp_path / "bad.safetensors").write_bytes(b"not a map")
    with pytest.raises(BundleError, match="corrupt map"):
        ImageMap.load(tmp_path / "bad.safetensors")
    ImageMap(np.array([3, 0], np.int64), saved.xy).save(tmp_path / "unsorted.safetensors")
    with pytest.raises(BundleError, match="not an image map"):
        ImageMap.load(tmp_path / "unsorted.safetensors")
