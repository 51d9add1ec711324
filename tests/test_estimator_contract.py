"""The estimator and persistence contracts, checked over every entry of the estimator registry.

Each estimator of :data:`imagelearn.estimators.ESTIMATORS` has a tiny real case below (a few
real photos, an EM slice, a Dubai tile, SIFT descriptors of UKBench photos): ``clone`` and
``get_params``/``set_params`` round trips, ``NotFittedError`` before fitting, ``fit`` returning
self, ``predict``/``transform``/``track`` setting no state, ``save`` returning the Path,
``Cls.load`` returning the model, identical output after loading, and no runtime setting in
the manifest. A new estimator is tested by adding its registry entry and a case here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from conftest import data_path
from imagelearn.core.bundle import MANIFEST_NAME
from imagelearn.estimators import ESTIMATORS, all_estimators, estimator_class

pytestmark = pytest.mark.usefixtures("single_torch_thread")

#: Parameters of the loading machine that no manifest may hold.
RUNTIME = {"n_jobs", "device", "cache_dir"}


# ---------------------------------------------------------------- tiny real data, read once


@cache
def hymenoptera(n_per_class: int = 4) -> tuple[list[Path], np.ndarray]:
    """A few ant and bee photos and their labels (0 ants, 1 bees)."""
    root = data_path("hymenoptera", "train")
    paths = [
        path
        for label in ("ants", "bees")
        for path in sorted((root / label).glob("*.jpg"))[:n_per_class]
    ]
    return paths, np.repeat([0, 1], n_per_class)


@cache
def sift_descriptors() -> np.ndarray:
    """SIFT descriptors (n, 128) float32 of two UKBench photos."""
    from imagelearn.features import extract_features, make_detector

    paths = sorted(data_path("ukbench").glob("*.jpg"))[:2]
    features, _ = extract_features(
        paths, make_detector("sift", max_keypoints=300, max_side=320), n_jobs=1, cache_dir=False
    )
    return np.concatenate([item.descriptors for item in features])


@cache
def color_vectors() -> np.ndarray:
    """Color/texture vectors of eight flower photos (daisies and sunflowers)."""
    from imagelearn.cluster.descriptors import color_descriptors

    root = data_path("flowers5")
    paths = [
        path for kind in ("daisy", "sunflower") for path in sorted((root / kind).glob("*.jpg"))[:4]
    ]
    return color_descriptors(paths, n_jobs=1).values


@cache
def em_slice() -> tuple[np.ndarray, np.ndarray]:
    """A 96 x 96 corner of a real EM slice and its labels (1 membrane, 2 interior)."""
    from imagelearn.segment.reference_data import load_em_slice

    image, truth = load_em_slice(data_path("em_membranes"), "3.png")
    return np.ascontiguousarray(image[:96, :96]), truth[:96, :96]


@cache
def dubai_tiles() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two Dubai aerial tiles downscaled to 128 pixels and their land-cover masks."""
    from imagelearn.segment.reference_data import dubai_tiles as tile_paths
    from imagelearn.segment.reference_data import load_dubai_tile

    tiles = [
        load_dubai_tile(path, max_side=128) for path in tile_paths(data_path("dubai_landcover"))[:2]
    ]
    return [image for image, _ in tiles], [mask for _, mask in tiles]


@cache
def moving_box() -> tuple[np.ndarray, list[np.ndarray]]:
    """The box photo and four frames of it moving over flower photos."""
    from imagelearn.core.images import load_image
    from imagelearn.tracking.synthetic import moving_object_video

    photo = load_image(data_path("multiview", "opencv", "box.png"))
    backgrounds = sorted(data_path("flowers5", "daisy").glob("*.jpg"))[:2]
    frames, _ = moving_object_video(photo, backgrounds, 4)
    return photo, frames


# ---------------------------------------------------------------- one case per estimator


@dataclasses.dataclass(frozen=True)
class Case:
    """How to build an estimator small, fit it on tiny real data and use it.

    ``fit`` returns what the estimator's ``fit`` returned; ``use`` calls ``predict``,
    ``transform``, ``assign`` or ``track`` and returns its output.
    """

    make: Callable[[], Any]
    fit: Callable[[Any], Any]
    use: Callable[[Any], Any]


#: A small dense grid on downscaled photos: a few hundred descriptors per image.
TINY_GRID = {"step": 16, "sizes": (16,), "max_side": 128}
TINY_CHANNEL = {
    "detector": "dense_rootsift",
    "detector_params": TINY_GRID,
    "n_words": 8,
    "pyramid": (1,),
}


def _pixel_features():
    from imagelearn.segment import PixelFeatures

    return PixelFeatures(sigmas=(1.0, 2.0), texture=False)


CASES: dict[str, Case] = {
    "BagOfFeatures": Case(
        lambda: estimator_class("BagOfFeatures")(**TINY_CHANNEL, n_jobs=1, cache_dir=False),
        lambda model: model.fit(hymenoptera()[0]),
        lambda model: model.transform(hymenoptera()[0][:3]),
    ),
    "BofClassifier": Case(
        lambda: estimator_class("BofClassifier")(
            channels=[TINY_CHANNEL], n_jobs=1, cache_dir=False
        ),
        lambda model: model.fit(*hymenoptera(), class_names=["ants", "bees"]),
        lambda model: model.predict(hymenoptera()[0]),  # scores: the SVM is saved as float32
    ),
    "BofSegmenter": Case(
        lambda: estimator_class("BofSegmenter")(
            detector_params={"step": 8, "sizes": (8,)},
            n_words=16,
            color_n_words=8,
            sample_size=5000,
            max_side=128,
            classifier_params={"n_estimators": 10},
            n_jobs=1,
        ),
        lambda model: model.fit(*dubai_tiles(), _dubai_classes()),
        lambda model: model.predict_proba(dubai_tiles()[0][0]),
    ),
    "DeepImageClassifier": Case(
        lambda: estimator_class("DeepImageClassifier")(
            backbone="small_cnn",
            mode="scratch",
            epochs=1,
            image_size=32,
            batch_size=8,
            cache_dir="",
        ),
        lambda model: model.fit(*hymenoptera(), class_names=["ants", "bees"]),
        lambda model: model.predict_proba(hymenoptera()[0][:3]),
    ),
    "ImageClusterer": Case(
        lambda: estimator_class("ImageClusterer")(n_clusters_range=(2, 3), pca_components=4),
        lambda model: model.fit(color_vectors()),
        lambda model: model.predict(color_vectors()),
    ),
    "KMeansVocabulary": Case(
        lambda: estimator_class("KMeansVocabulary")(n_words=16, n_iter=5, n_jobs=1),
        lambda model: model.fit(sift_descriptors()),
        lambda model: model.assign_soft(sift_descriptors(), 2),
    ),
    "ObjectTracker": Case(
        lambda: estimator_class("ObjectTracker")(min_inliers=8),
        lambda model: model.fit(moving_box()[0]),
        lambda model: list(model.track(moving_box()[1])),
    ),
    "PCAWhitening": Case(
        lambda: estimator_class("PCAWhitening")(n_components=16),
        lambda model: model.fit(sift_descriptors()),
        lambda model: model.transform(sift_descriptors()),
    ),
    "PixelClassifier": Case(
        lambda: estimator_class("PixelClassifier")(
            _pixel_features(), classifier_params={"n_estimators": 10}, tile_size=None, n_jobs=1
        ),
        lambda model: model.fit(em_slice()[0], _scribbles(em_slice()[1])),
        lambda model: model.predict_proba(em_slice()[0]),
    ),
    "PixelClusterer": Case(
        lambda: estimator_class("PixelClusterer")(
            n_clusters=3, features=_pixel_features(), sample_size=4000
        ),
        lambda model: model.fit(dubai_tiles()[0][0]),
        lambda model: model.predict(dubai_tiles()[0][0]),
    ),
    "VocabularyTree": Case(
        lambda: estimator_class("VocabularyTree")(branching=4, depth=2, n_iter=5, n_jobs=1),
        lambda model: model.fit(sift_descriptors()),
        lambda model: model.assign_soft(sift_descriptors(), 2),
    ),
}


def _dubai_classes() -> list[str]:
    from imagelearn.segment.reference_data import DUBAI_CLASSES

    return list(DUBAI_CLASSES)


def _scribbles(truth: np.ndarray) -> np.ndarray:
    from imagelearn.segment.samples import simulate_scribbles

    return simulate_scribbles(truth, 60)


# ---------------------------------------------------------------- comparing


def _comparable(value: Any) -> Any:
    """Parameters as a manifest holds them: nested estimators as their class and parameters,
    tuples as lists."""
    if isinstance(value, BaseEstimator):
        return [type(value).__name__, _comparable(value.get_params(deep=False))]
    if isinstance(value, Mapping):
        return {key: _comparable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(item) for item in value]
    return value


def _assert_same(found: Any, expected: Any) -> None:
    """Equal outputs: arrays exactly, containers and dataclasses item by item."""
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(found, expected)
    elif dataclasses.is_dataclass(expected):
        assert type(found) is type(expected)
        for field in dataclasses.fields(expected):
            _assert_same(getattr(found, field.name), getattr(expected, field.name))
    elif isinstance(expected, list | tuple):
        assert len(found) == len(expected)
        for one, other in zip(found, expected, strict=True):
            _assert_same(one, other)
    else:
        assert found == expected


def _parameter_names(params: Any) -> set[str]:
    """Every key of a manifest's content, nested ones included."""
    names: set[str] = set()
    if isinstance(params, Mapping):
        for key, value in params.items():
            names.add(str(key))
            names |= _parameter_names(value)
    elif isinstance(params, list):
        for item in params:
            names |= _parameter_names(item)
    return names


# ---------------------------------------------------------------- the checks


def test_every_registered_estimator_has_a_case() -> None:
    assert set(CASES) == set(ESTIMATORS), (
        "add a Case for every entry of ESTIMATORS (and only those)"
    )


def test_the_registry_imports_the_named_classes() -> None:
    classes = all_estimators()
    assert list(classes) == list(ESTIMATORS)
    assert all(cls.__name__ == name for name, cls in classes.items())
    with pytest.raises(KeyError, match="registered: BagOfFeatures"):
        estimator_class("NoSuchEstimator")


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_clone_and_params_round_trip(name: str) -> None:
    model = CASES[name].make()
    params = model.get_params(deep=False)
    assert _comparable(clone(model).get_params(deep=False)) == _comparable(params)
    rebuilt = type(model)().set_params(**params)
    assert _comparable(rebuilt.get_params(deep=False)) == _comparable(params)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_unfitted_use_and_save_raise_not_fitted(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    with pytest.raises(NotFittedError):
        case.use(case.make())
    with pytest.raises(NotFittedError):
        case.make().save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_fit_use_save_load_gives_identical_output(name: str, tmp_path: Path) -> None:
    case, cls = CASES[name], estimator_class(name)
    model = case.make()
    assert case.fit(model) is model
    before = dict(vars(model))
    expected = case.use(model)
    assert vars(model).keys() == before.keys(), "using the model added or removed state"
    changed = [key for key, value in before.items() if vars(model)[key] is not value]
    assert not changed, f"using the model set {changed}"

    path = model.save(tmp_path / "model")
    assert isinstance(path, Path) and path == tmp_path / "model"
    content = json.loads((path / MANIFEST_NAME).read_text())["content"]
    assert not _parameter_names(content) & RUNTIME

    loaded = cls.load(path)
    assert type(loaded) is cls
    own = {key: value for key, value in model.get_params(deep=False).items() if key not in RUNTIME}
    assert _comparable({key: loaded.get_params(deep=False)[key] for key in own}) == _comparable(own)
    _assert_same(case.use(loaded), expected)
