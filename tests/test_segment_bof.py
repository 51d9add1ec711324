"""BoF semantic segmentation (superpixels -> word histograms -> classifier) and composites."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import DATA_ROOT, data_path
from imagelearn.cli.main import main
from imagelearn.core.bundle import MANIFEST_NAME, BundleError
from imagelearn.core.errors import ParameterError
from imagelearn.core.persistence import read_metadata
from imagelearn.segment.bof_segmentation import (
    BofSegmenter,
    _Encoder,
    iou_report,
    superpixel_adjacency,
    superpixel_majority,
    superpixels,
    word_histograms,
)
from imagelearn.segment.composites import flower_composites, make_composites, write_composites
from imagelearn.segment.reference_data import DUBAI_CLASSES, dubai_tiles, load_dubai_tile
from imagelearn.segment.runs import bof_evaluate_run, bof_predict_run, bof_train_run

#: Small, fast settings shared by the real-data tests.
FAST = {
    "n_words": 64,
    "color_n_words": 16,
    "sample_size": 20_000,
    "classifier_params": {"class_weight": "balanced"},
}


def _stripes_and_noise(seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Left half vertical stripes (label 1), right half noise (label 2)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:, : size // 2] = (np.arange(size // 2) % 6 < 3)[None, :, None] * 200
    image[:, size // 2 :] = rng.integers(0, 255, (size, size // 2, 3))
    mask = np.ones((size, size), dtype=np.int32)
    mask[:, size // 2 :] = 2
    return image, mask


@pytest.fixture(scope="module")
def composites():
    return flower_composites(data_path(), n_train=16, n_test=8, size=(192, 192))


@pytest.fixture(scope="module")
def composite_model(composites):
    train, _, names = composites
    return BofSegmenter(**FAST).fit([c.image for c in train], [c.mask for c in train], names)


# ---------------------------------------------------------------- helpers


def test_adjacency_of_a_two_by_two_grid():
    segments = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    adjacency = superpixel_adjacency(segments).toarray()
    expected = np.array([[0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 1, 0]])
    np.testing.assert_array_equal(adjacency, expected)


def test_word_histograms_count_keypoints_per_superpixel():
    segments = np.array([[0, 0, 1, 1]] * 2)
    points = np.array([[0.2, 0.0], [1.4, 1.0], [3.0, 1.0]])
    histograms = word_histograms(segments, points, np.array([2, 2, 0]), 3)
    np.testing.assert_array_equal(histograms, [[0, 0, 2], [1, 0, 0]])


def test_majority_and_purity_count_unlabelled_pixels():
    segments = np.array([[0, 0, 1, 1]])
    labels, purity = superpixel_majority(segments, np.array([[2, 0, 1, 1]]), 2)
    np.testing.assert_array_equal(labels, [2, 1])
    np.testing.assert_allclose(purity, [0.5, 1.0])


def test_superpixels_use_every_id():
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    segments = superpixels(image, 10, 10.0)
    assert segments.shape == (40, 50)
    np.testing.assert_array_equal(np.unique(segments), np.arange(segments.max() + 1))


# ---------------------------------------------------------------- composites


def test_composites_are_seeded_and_their_masks_exact(composites):
    train, test, names = composites
    assert names == ["background", "daisy", "sunflower", "tulip"]
    again, _, _ = flower_composites(data_path(), n_train=2, n_test=0, size=(192, 192))
    np.testing.assert_array_equal(again[0].image, train[0].image)
    for composite in train + test:
        assert composite.image.shape == (192, 192, 3) and composite.mask.shape == (192, 192)
        assert set(np.unique(composite.mask)) <= {1, 2, 3, 4}
        assert (composite.mask > 1).any()


def test_pasted_pixels_are_the_object_photo(tmp_path, make_image):
    rng = np.random.default_rng(1)
    red = make_image("red.png", np.full((40, 40, 3), (255, 0, 0), dtype=np.uint8))
    noise = make_image("bg.png", rng.integers(0, 200, (80, 80, 3), dtype=np.uint8))
    [composite], names = make_composites({"red": [red]}, [noise], 1, size=(64, 64), random_state=3)
    assert names == ["background", "red"]
    inside = composite.mask == 2
    assert inside.sum() > 300
    np.testing.assert_array_equal(composite.image[inside], [[255, 0, 0]] * int(inside.sum()))


# ---------------------------------------------------------------- real data


def test_composites_mean_iou_above_floor(composites, composite_model):
    _, test, names = composites
    report = iou_report(
        [c.mask for c in test], [composite_model.predict(c.image) for c in test], names
    )
    assert report["iou"]["background"] > 0.8  # measured 0.87
    assert report["mean_iou"] > 0.35  # measured 0.39


def test_dubai_mean_iou_beats_the_majority_class():
    tiles = dubai_tiles(data_path("dubai_landcover"))
    names = list(DUBAI_CLASSES)
    train = [load_dubai_tile(path, max_side=256) for path in tiles[::18]]
    test = [load_dubai_tile(path, max_side=256) for path in tiles[4::18]]
    model = BofSegmenter(**FAST).fit([i for i, _ in train], [m for _, m in train], names)
    truth = [m for _, m in test]
    report = iou_report(truth, [model.predict(i) for i, _ in test], names)
    majority = np.bincount(np.concatenate([m.ravel() for _, m in train]), minlength=6)[1:]
    baseline = iou_report(truth, [np.full_like(m, majority.argmax() + 1) for m in truth], names)
    assert report["mean_iou"] > baseline["mean_iou"] + 0.15  # measured 0.30 vs 0.08


# ---------------------------------------------------------------- persistence and edges


def test_save_load_predicts_identically(tmp_path, composites, composite_model):
    _, test, _ = composites
    composite_model.save(tmp_path / "model")
    loaded = BofSegmenter.load(tmp_path / "model")
    assert loaded.get_params() == {**composite_model.get_params(), "n_jobs": -1}
    for composite in test[:2]:
        np.testing.assert_array_equal(
            loaded.predict(composite.image), composite_model.predict(composite.image)
        )


def test_image_with_one_superpixel(composite_model, composites):
    tiny = composites[1][0].image[:16, :16]
    labels = composite_model.predict(tiny)
    assert labels.shape == (16, 16) and len(np.unique(labels)) == 1
    assert labels[0, 0] in composite_model.classes_


def test_mask_of_the_wrong_size_is_refused():
    image, mask = _stripes_and_noise(0)
    with pytest.raises(ValueError, match=r"mask 0 has shape \(64, 60\)"):
        BofSegmenter(n_words=4, color_n_words=0).fit([image], [mask[:, :60]])


def test_class_absent_from_training_is_never_predicted():
    pairs = [_stripes_and_noise(seed) for seed in range(2)]
    names = ["stripes", "noise", "water"]
    model = BofSegmenter(n_words=8, color_n_words=0, superpixel_size=8).fit(
        [i for i, _ in pairs], [m for _, m in pairs], names
    )
    np.testing.assert_array_equal(model.classes_, [1, 2])
    assert model.class_names_ == names
    image, mask = _stripes_and_noise(5)
    labels = model.predict(image)
    assert set(np.unique(labels)) <= {1, 2}
    report = iou_report([mask], [labels], names)
    assert report["iou"]["water"] is None and report["mean_iou"] > 0.8


def test_one_class_only_is_refused():
    image, _ = _stripes_and_noise(0)
    with pytest.raises(ValueError, match="at least two classes"):
        BofSegmenter(n_words=4, color_n_words=0).fit([image], [np.ones((64, 64), dtype=np.int32)])


def test_unfitted_model_says_so():
    with pytest.raises(ValueError, match="not fitted"):
        BofSegmenter().predict(np.zeros((8, 8, 3), dtype=np.uint8))


# ---------------------------------------------------------------- estimator contract


@pytest.fixture(scope="module")
def stripes_model():
    pairs = [_stripes_and_noise(seed) for seed in range(2)]
    model = BofSegmenter(n_words=8, color_n_words=4, superpixel_size=8, n_jobs=2)
    return model.fit([i for i, _ in pairs], [m for _, m in pairs], ["stripes", "noise"])


def test_unfitted_use_raises_not_fitted(tmp_path):
    model = BofSegmenter()
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    for use in (model.predict, model.predict_proba, model.superpixel_features):
        with pytest.raises(NotFittedError):
            use(image)
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "model")


def test_params_round_trip_through_clone_and_set_params(stripes_model):
    params = stripes_model.get_params()
    copy = clone(stripes_model)
    assert copy.get_params() == params and not hasattr(copy, "classes_")
    assert BofSegmenter().set_params(**params).get_params() == params
    assert params["neighbor_context"] is True


def test_prediction_sets_no_state(stripes_model):
    image, _ = _stripes_and_noise(7)
    before = dict(vars(stripes_model))
    stripes_model.predict(image)
    stripes_model.predict_proba(image)
    assert vars(stripes_model).keys() == before.keys()
    assert all(vars(stripes_model)[name] is value for name, value in before.items())


def test_saved_model_has_no_runtime_settings(stripes_model, tmp_path):
    path = stripes_model.save(tmp_path / "model", metadata={"masks": ["a.png"]})
    content = json.loads((path / MANIFEST_NAME).read_text())["content"]
    assert "n_jobs" not in content["params"] and "n_jobs" not in json.dumps(content["state"])
    assert read_metadata(path) == {"masks": ["a.png"]}
    loaded = BofSegmenter.load(path).set_params(n_jobs=1)
    assert isinstance(loaded, BofSegmenter) and loaded.class_names_ == ["stripes", "noise"]
    assert [vocabulary.n_words_ for vocabulary in loaded.vocabularies_] == [8, 4]
    image, _ = _stripes_and_noise(7)
    np.testing.assert_array_equal(loaded.predict(image), stripes_model.predict(image))
    np.testing.assert_array_equal(loaded.predict_proba(image), stripes_model.predict_proba(image))


def test_an_old_manifest_is_a_bundle_error(stripes_model, tmp_path):
    path = stripes_model.save(tmp_path / "model")
    header = json.loads((path / MANIFEST_NAME).read_text())
    old_params = {**header["content"]["params"], "neighbour_context": True, "n_jobs": -1}
    old_params.pop("neighbor_context")
    old = {"params": old_params, "classes": [1, 2], "n_features": 48}  # the layout before 0.x
    (path / MANIFEST_NAME).write_text(json.dumps({**header, "content": old}))
    with pytest.raises(BundleError, match=r"unknown parameter.*'n_jobs', 'neighbour_context'"):
        BofSegmenter.load(path)
    header["content"]["state"]["vocabularies"].pop()
    (path / MANIFEST_NAME).write_text(json.dumps(header))
    with pytest.raises(BundleError, match="incomplete or corrupt"):
        BofSegmenter.load(path)


# ---------------------------------------------------------------- command line


@pytest.mark.skipif(not (DATA_ROOT / "flowers5").is_dir(), reason="real data not found")
def test_cli_train_and_predict_write_iou(tmp_path, composites):
    train, test, names = composites
    train_images = write_composites(tmp_path / "train", train[:4])
    test_images = write_composites(tmp_path / "test", test[:2])

    def masks(paths):
        return [str(path.parent.parent / "masks" / path.name) for path in paths]

    model = tmp_path / "model"
    assert main(["segment", "bof", "train", *map(str, train_images), "--masks",
                 *masks(train_images), "--classes", ",".join(names), "--n-words", "16",
                 "--color-n-words", "8", "--out", str(model)]) == 0  # fmt: skip
    out = tmp_path / "maps"
    assert main(["segment", "bof", "predict", str(model), *map(str, test_images), "--masks",
                 *masks(test_images), "--out", str(out)]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["iou"]) == set(names) and 0 <= metrics["mean_iou"] <= 1
    assert (out / "0000" / "classmap.png").is_file() and (out / "0001" / "overlay.png").is_file()


def test_bof_runs_train_predict_evaluate_from_python(tmp_path, composites):
    train, test, names = composites
    train_images = write_composites(tmp_path / "train", train[:4])
    test_images = write_composites(tmp_path / "test", test[:2])

    def masks(paths):
        return [path.parent.parent / "masks" / path.name for path in paths]

    trained = bof_train_run(train_images, masks(train_images), tmp_path / "model", classes=names,
                            n_words=16, color_n_words=8, n_estimators=20, n_jobs=1)  # fmt: skip
    assert trained.out == tmp_path / "model" and trained.metrics is None
    assert set(trained.n_samples_per_class) <= set(names) and trained.classifier == "random_forest"
    assert BofSegmenter.load(trained.out).classifier_params == {"n_estimators": 20}
    predicted = bof_predict_run(trained.out, test_images, tmp_path / "maps",
                                masks=masks(test_images), n_jobs=1)  # fmt: skip
    assert [m.out.name for m in predicted.maps] == ["0000", "0001"]
    assert all(m.metrics is None and (m.out / "classmap.png").is_file() for m in predicted.maps)
    assert json.loads((tmp_path / "maps" / "metrics.json").read_text()) == predicted.metrics
    evaluated = bof_evaluate_run(trained.out, test_images, masks(test_images), tmp_path / "eval")
    assert evaluated.out == tmp_path / "eval"
    assert evaluated.metrics == predicted.metrics
    with pytest.raises(ParameterError, match="one file per image") as raised:
        bof_evaluate_run(trained.out, test_images, masks(test_images)[:1])
    assert raised.value.parameter == "masks"


# ---------------------------------------------------------------- encoding cache


def test_a_cache_hit_skips_encoding_and_gives_the_same_vectors(tmp_path, monkeypatch):
    pairs = [_stripes_and_noise(seed) for seed in range(3)]
    images, masks = [i for i, _ in pairs], [m for _, m in pairs]
    params = dict(n_words=8, color_n_words=4, superpixel_size=8, n_jobs=1)
    model = BofSegmenter(**params, cache_dir=tmp_path / "cache").fit(images, masks)
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 3  # one entry per image
    uncached = BofSegmenter(**params, cache_dir="").fit(images, masks)

    def no_encoding(self, image):
        raise AssertionError("encoded although cached")

    monkeypatch.setattr(_Encoder, "__call__", no_encoding)
    again = BofSegmenter(**params, cache_dir=tmp_path / "cache").fit(images, masks)
    for fitted in (again, uncached):
        for ours, theirs in zip(fitted.vocabularies_, model.vocabularies_, strict=True):
            np.testing.assert_array_equal(ours.words_, theirs.words_)
    segments, vectors = again.superpixel_features(images[1])
    expected_segments, expected_vectors = model.superpixel_features(images[1])
    np.testing.assert_array_equal(segments, expected_segments)
    np.testing.assert_array_equal(vectors, expected_vectors)
    with pytest.raises(AssertionError, match="encoded although cached"):  # other settings miss
        again.set_params(superpixel_size=9).superpixel_features(images[1])
    with pytest.raises(AssertionError, match="encoded although cached"):  # so does no cache
        again.set_params(superpixel_size=8, cache_dir="").superpixel_features(images[1])
