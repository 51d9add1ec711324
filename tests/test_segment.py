"""imagelearn.segment: pixel features, classifiers, clusters, samples, tiling, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import data_path
from imagelearn.cli.main import build_parser, main, user_message
from imagelearn.core.bundle import MANIFEST_NAME, BundleError
from imagelearn.core.errors import ImagelearnError, ParameterError
from imagelearn.core.images import ImageReadError
from imagelearn.core.persistence import read_metadata
from imagelearn.segment import (
    CLASSIFIERS,
    METHODS,
    TEXTURE_FILTERS,
    PixelClassifier,
    PixelClusterer,
    PixelFeatures,
    accuracy_report,
    class_areas,
    cluster_agreement,
    read_raster,
    read_samples,
    simulate_scribbles,
    split_holdout,
)
from imagelearn.segment.reference_data import (
    DUBAI_CLASSES,
    EM_CLASSES,
    dubai_tiles,
    load_dubai_tile,
    load_em_slice,
)
from imagelearn.segment.runs import (
    TrainResult,
    cluster_run,
    evaluate_run,
    predict_run,
    train_run,
)
from imagelearn.segment.samples import SamplesError
from imagelearn.segment.tiling import iter_tiles

FAST_FOREST = {"n_estimators": 20}
#: Small settings per classifier, to keep the suite fast.
FAST_PARAMS = {
    "random_forest": FAST_FOREST,
    "svm": {},
    "mlp": {"hidden_layer_sizes": (16,), "max_iter": 300},
}


def synthetic_scene(
    rng: np.random.Generator, size: tuple[int, int] = (96, 120)
) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image of three regions (red noise, smooth green, striped blue) and its labels 1..3."""
    height, width = size
    truth = np.ones(size, dtype=np.int32)
    truth[:, width // 3 :] = 2
    truth[height // 2 :, 2 * width // 3 :] = 3
    image = rng.normal(0, 12, (height, width, 3))
    image[truth == 1] += (180, 60, 60)
    image[truth == 2] += (60, 160, 70)
    stripes = 60 * (np.arange(width) % 6 < 3)[None, :].repeat(height, 0)
    image[truth == 3] += np.stack([stripes, stripes, stripes + 120], axis=2)[truth == 3]
    return np.clip(image, 0, 255).astype(np.uint8), truth


@pytest.fixture
def scene(rng):
    return synthetic_scene(rng)


# ---------------------------------------------------------------- features


@pytest.mark.parametrize("texture", [False, True])
@pytest.mark.parametrize("shape", [(40, 50, 3), (40, 50), (40, 50, 1), (30, 20, 5)])
def test_feature_names_match_transform(shape, texture):
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    features = PixelFeatures(sigmas=(1, 3), texture=texture)
    stack = features.transform(image)
    assert stack.shape == (*shape[:2], len(features.feature_names(image)))
    assert stack.dtype == np.float32 and np.all(np.isfinite(stack))


@pytest.mark.parametrize("name", sorted(TEXTURE_FILTERS))
def test_each_texture_filter_reacts_to_structure(name):
    flat = np.full((32, 32), 100, dtype=np.uint8)
    structured = flat.copy()
    structured[:, 16:] = 200
    features = PixelFeatures(sigmas=(2,), texture=True, texture_filters=(name,))
    assert np.allclose(features.transform(flat)[..., 1:], 0, atol=1e-3)
    assert np.abs(features.transform(structured)[..., 1:]).max() > 1


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 1, 3)])
def test_tiny_images_get_features(shape):
    image = np.full(shape, 7, dtype=np.uint8)
    assert PixelFeatures().transform(image).shape[:2] == shape[:2]


def test_bad_feature_settings_are_refused():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="sigmas"):
        PixelFeatures(sigmas=(0,)).transform(image)
    with pytest.raises(ValueError, match="color space"):
        PixelFeatures(color_space="cmyk").transform(image)
    with pytest.raises(ValueError, match="texture filter"):
        PixelFeatures(texture_filters=("gabor",)).transform(image)


# ---------------------------------------------------------------- tiling


def test_tiles_cover_the_image_once():
    cover = np.zeros((70, 95), dtype=int)
    for tile in iter_tiles((70, 95), 32, margin=5):
        cover[tile.core] += 1
    assert np.all(cover == 1)


def test_tiled_prediction_equals_untiled():
    image, truth = load_em_slice(data_path("em_membranes"), "3.png")
    image, truth = image[:150, :170], truth[:150, :170]
    model = PixelClassifier(classifier_params=FAST_FOREST, tile_size=None).fit(
        image, simulate_scribbles(truth, 150)
    )
    whole = model.predict_proba(image)
    model.tile_size = 48  # smaller than the halo, so tiles read well beyond themselves
    assert model.features_.margin > 48
    np.testing.assert_array_equal(model.predict_proba(image), whole)
    np.testing.assert_array_equal(model.predict(image), model.classes_[whole.argmax(axis=2)])


def test_a_kept_feature_stack_trains_and_predicts_as_the_image_does():
    image, truth = load_em_slice(data_path("em_membranes"), "3.png")
    image, truth = image[:150, :170], truth[:150, :170]
    samples = simulate_scribbles(truth, 150)
    from_image = PixelClassifier(classifier_params=FAST_FOREST, tile_size=None).fit(image, samples)
    stack = PixelFeatures().transform(image)
    from_stack = PixelClassifier(classifier_params=FAST_FOREST).fit_features(
        stack[samples > 0], samples[samples > 0], n_bands=1
    )
    assert from_stack.class_names_ == from_image.class_names_ == ["class1", "class2"]
    assert from_stack.n_samples_per_class_ == from_image.n_samples_per_class_
    np.testing.assert_array_equal(
        from_stack.predict_proba_features(stack), from_image.predict_proba(image)
    )
    np.testing.assert_array_equal(from_stack.predict(image), from_image.predict(image))
    with pytest.raises(ValueError, match="one class only"):
        PixelClassifier().fit_features(stack[samples == 1], samples[samples == 1], n_bands=1)
    with pytest.raises(ValueError, match="N labels"):
        PixelClassifier().fit_features(stack, samples, n_bands=1)


def test_prediction_streams_into_a_memory_map(tmp_path, scene):
    image, truth = scene
    model = PixelClassifier(classifier_params=FAST_FOREST, tile_size=40).fit(
        image, simulate_scribbles(truth, 80)
    )
    written = model.predict(image, out=tmp_path / "map.npy")
    assert isinstance(written, np.memmap)
    np.testing.assert_array_equal(np.load(tmp_path / "map.npy"), model.predict(image))


# ---------------------------------------------------------------- classifiers


def test_every_classifier_has_fast_test_settings():
    assert set(FAST_PARAMS) == set(CLASSIFIERS)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_array_predictors_agree_with_scikit_learn(name, rng):
    features = rng.normal(size=(400, 6)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(int) + (features[:, 1] > 0.5)
    estimator, arrays = CLASSIFIERS[name].fit(features, labels, FAST_PARAMS[name], 0, 1)
    new = rng.normal(size=(2000, 6)).astype(np.float32)
    proba = CLASSIFIERS[name].predictor(arrays, 1).predict_proba(new)
    np.testing.assert_array_equal(proba.argmax(axis=1), estimator.predict(new))
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_save_load_round_trip_predicts_identically(name, scene, tmp_path):
    image, truth = scene
    model = PixelClassifier(PixelFeatures(sigmas=(1, 2)), name, FAST_PARAMS[name], tile_size=64)
    model.fit(image, simulate_scribbles(truth, 120), ["red", "green", "striped"])
    assert np.mean(model.predict(image) == truth) > 0.9
    model.save(tmp_path / "model")
    loaded = PixelClassifier.load(tmp_path / "model")
    assert loaded.class_names_ == ["red", "green", "striped"]
    np.testing.assert_array_equal(loaded.predict_proba(image), model.predict_proba(image))


def test_cnn_pixel_features_tile_closely_and_survive_save_load(tmp_path):
    """MobileNetV2's early maps per pixel, on a real EM slice; offline ImageNet weights."""
    image, truth = load_em_slice(data_path("em_membranes"), "3.png")
    image, truth = image[:160, :200], truth[:160, :200]
    features = PixelFeatures(sigmas=(1, 2), cnn="mobilenet_v2")
    assert features.transform(image).shape == (160, 200, len(features.feature_names(image)))
    model = PixelClassifier(features, classifier_params=FAST_FOREST, tile_size=None).fit(
        image, simulate_scribbles(truth, 150)
    )
    whole = model.predict(image)
    assert np.mean(whole == truth) > 0.8
    model.tile_size = 64  # tiles see the network's padding near their halo edges
    assert np.mean(model.predict(image) == whole) > 0.97
    model.save(tmp_path / "model")
    loaded = PixelClassifier.load(tmp_path / "model")
    assert loaded.features_.cnn == "mobilenet_v2"
    np.testing.assert_array_equal(loaded.predict(image), model.predict(image))


def test_cnn_pixel_features_refuse_multiband_rasters():
    with pytest.raises(ValueError, match="8-bit grey or RGB"):
        PixelFeatures(cnn="mobilenet_v2").transform(np.zeros((16, 16, 5), np.uint16))


def test_loading_something_else_is_a_bundle_error(tmp_path):
    with pytest.raises(BundleError):
        PixelClassifier.load(tmp_path)


# ---------------------------------------------------------------- estimator contract


@pytest.fixture
def fitted(scene):
    image, truth = scene
    model = PixelClassifier(PixelFeatures(sigmas=(1, 2)), classifier_params=FAST_FOREST, n_jobs=2)
    return model.fit(image, simulate_scribbles(truth, 60), ["red", "green", "striped"])


def test_unfitted_use_raises_not_fitted(scene, tmp_path):
    image, _ = scene
    model = PixelClassifier()
    for use in (model.predict, model.predict_proba):
        with pytest.raises(NotFittedError):
            use(image)
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "model")


def test_params_round_trip_through_clone_and_set_params(fitted, scene):
    params = fitted.get_params(deep=False)
    copy = clone(fitted)
    assert copy.get_params(deep=False).keys() == params.keys()
    assert copy.features is not fitted.features and copy.features.sigmas == (1, 2)
    assert not hasattr(copy, "classes_")  # clone is unfitted
    again = PixelClassifier().set_params(**params)
    assert again.get_params(deep=False) == params
    image, truth = scene
    refitted = copy.fit(image, simulate_scribbles(truth, 60), ["red", "green", "striped"])
    np.testing.assert_array_equal(refitted.predict_proba(image), fitted.predict_proba(image))


def test_prediction_sets_no_state(fitted, scene):
    image, _ = scene
    before = dict(vars(fitted))
    fitted.predict(image)
    fitted.predict_proba(image)
    assert vars(fitted).keys() == before.keys()
    assert all(vars(fitted)[name] is value for name, value in before.items())


def test_saved_model_has_no_runtime_settings_and_loads_on_another_machine(fitted, scene, tmp_path):
    image, _ = scene
    path = fitted.save(tmp_path / "model", metadata={"images": ["scene.png"]})
    assert path == tmp_path / "model"
    content = json.loads((path / MANIFEST_NAME).read_text())["content"]
    assert "n_jobs" not in content["params"] and "n_jobs" not in json.dumps(content["state"])
    assert content["params"]["features"]["params"]["sigmas"] == [1, 2]
    assert read_metadata(path) == {"images": ["scene.png"]}
    loaded = PixelClassifier.load(path)
    assert isinstance(loaded, PixelClassifier) and loaded.n_jobs == -1  # the default
    assert (
        loaded.features.sigmas == (1, 2)
        and loaded.n_samples_per_class_ == fitted.n_samples_per_class_
    )
    loaded.set_params(n_jobs=1)
    np.testing.assert_array_equal(loaded.predict(image), fitted.predict(image))


def test_an_old_or_foreign_manifest_is_a_bundle_error(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    header = json.loads((path / MANIFEST_NAME).read_text())
    old = {"classifier": "random_forest", "classes": [1, 2, 3], "n_bands": 3}  # before 0.x
    (path / MANIFEST_NAME).write_text(json.dumps({**header, "content": old}))
    with pytest.raises(BundleError, match="not a valid saved model"):
        PixelClassifier.load(path)
    header["content"]["state"].pop("n_bands")
    (path / MANIFEST_NAME).write_text(json.dumps(header))
    with pytest.raises(BundleError, match="incomplete or corrupt"):
        PixelClassifier.load(path)


def test_bad_samples_are_refused(scene):
    image, truth = scene
    model = PixelClassifier(classifier_params=FAST_FOREST)
    with pytest.raises(ValueError, match="one class only"):
        model.fit(image, np.where(truth == 2, 2, 0))
    with pytest.raises(ValueError, match="no labelled pixels"):
        model.fit(image, np.zeros_like(truth))
    with pytest.raises(ValueError, match="but its image is"):
        model.fit(image, truth[:50])
    with pytest.raises(ValueError, match="unknown classifier"):
        PixelClassifier(classifier="boosting").fit(image, truth)
    with pytest.raises(ValueError, match="not fitted"):
        model.predict(image)


def test_prediction_needs_the_training_band_count(scene):
    image, truth = scene
    model = PixelClassifier(classifier_params=FAST_FOREST).fit(image, simulate_scribbles(truth, 60))
    with pytest.raises(ValueError, match="3-band"):
        model.predict(image[..., 0])


def test_tiny_image_is_classified(scene):
    image, truth = scene
    model = PixelClassifier(classifier_params=FAST_FOREST).fit(image, simulate_scribbles(truth, 60))
    assert model.predict(image[:1, :1]).shape == (1, 1)
    assert model.predict(image[10:13, 5:10]).shape == (3, 5)


# ---------------------------------------------------------------- samples


def test_label_image_samples(make_image):
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 3:9], mask[10:12, 20:25] = 1, 2
    samples = read_samples(make_image("labels.png", mask), (20, 30), ["water", "land"])
    assert samples.counts() == {"water": 18, "land": 10}
    with pytest.raises(ValueError, match="sample image is 30x20 but the image is 31x20"):
        read_samples(make_image("labels2.png", mask), (20, 31))
    with pytest.raises(ValueError, match="no labelled pixels"):
        read_samples(make_image("empty.png", np.zeros((20, 30), np.uint8)), (20, 30))


def test_colour_label_image_samples(make_image):
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[:5] = (0x3C, 0x10, 0x98)
    rgb[5:] = (0x9B, 0x9B, 0x9B)
    path = make_image("mask.png", rgb)
    samples = read_samples(path, (10, 10), ["building", "water"], [(0x3C, 0x10, 0x98), (0, 0, 255)])
    assert samples.counts() == {"building": 50, "water": 0}
    with pytest.raises(ValueError, match="needs class colours"):
        read_samples(path, (10, 10))


def test_geojson_polygons_with_holes_and_points(tmp_path):
    square = [[2, 2], [18, 2], [18, 18], [2, 18], [2, 2]]
    hole = [[8, 8], [12, 8], [12, 12], [8, 12], [8, 8]]
    document = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"class": "road"},
                "geometry": {"type": "Polygon", "coordinates": [square, hole]},
            },
            {
                "type": "Feature",
                "properties": {"class": "water"},
                "geometry": {"type": "Point", "coordinates": [25, 5]},
            },
        ],
    }
    path = tmp_path / "samples.geojson"
    path.write_text(json.dumps(document))
    samples = read_samples(path, (20, 30))
    assert samples.class_names == ["road", "water"]
    assert samples.mask[5, 25] == 2 and samples.mask[10, 10] == 0 and samples.mask[4, 4] == 1
    with pytest.raises(ValueError, match="outside the 10x20 image"):
        read_samples(path, (20, 10))


def test_sample_files_that_cannot_be_used_raise_the_packages_errors(tmp_path, make_image):
    with pytest.raises(ImageReadError, match="sample file not found"):
        read_samples(tmp_path / "nowhere.csv", (10, 10))
    cases = {
        "list.geojson": ('{"features": [[1, 2]]}', "feature 0 is not a GeoJSON Feature object"),
        "nan.csv": ("x,y,class\nnan,2,water\n", "line 2: coordinates must be finite numbers"),
        "huge.csv": ("x,y,class\n1,2,4000000000\n", "above the most classes, 65535"),
        "ragged.geojson": (
            '{"type": "Feature", "properties": {"class": "a"}, '
            '"geometry": {"type": "Polygon", "coordinates": [[[1, 1], [2], [3, 3]]]}}',
            "coordinates must be \\[x, y\\] number pairs",
        ),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SamplesError, match=message) as raised:
            read_samples(tmp_path / name, (10, 10))
        assert isinstance(raised.value, ValueError) and isinstance(raised.value, ImagelearnError)
    (tmp_path / "latin1.csv").write_bytes("x,y,class\n1,1,é\n".encode("latin-1"))
    with pytest.raises(SamplesError, match="not UTF-8 text"):
        read_samples(tmp_path / "latin1.csv", (10, 10))
    with pytest.raises(SamplesError, match="labels must be whole numbers"):
        read_samples(make_image("float.tif", np.full((10, 10), 1.5, np.float32)), (10, 10))


def test_csv_points(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("x,y,class\n1,2,vegetation\n5,6,water\n7,1,vegetation\n")
    samples = read_samples(path, (10, 10))
    assert samples.counts() == {"vegetation": 2, "water": 1}
    assert samples.mask[2, 1] == 1 and samples.mask[6, 5] == 2
    with pytest.raises(ValueError, match="not one of the given classes"):
        read_samples(path, (10, 10), ["water", "road"])
    path.write_text("x,y,class\n11,2,vegetation\n")
    with pytest.raises(ValueError, match=r"points.csv: line 2: point \(11, 2\) lies outside"):
        read_samples(path, (10, 10))


def test_holdout_split_is_stratified_and_disjoint(scene):
    _, truth = scene
    train, held_out = split_holdout(truth, 0.3, random_state=1)
    assert not np.any((train > 0) & (held_out > 0))
    for label in (1, 2, 3):
        assert np.sum(held_out == label) == round(0.3 * np.sum(truth == label))


# ---------------------------------------------------------------- metrics


def test_accuracy_report_matches_hand_computation():
    reference = np.array([1] * 50 + [2] * 50 + [0] * 10)
    mapped = np.array([1] * 40 + [2] * 10 + [2] * 45 + [1] * 5 + [1] * 10)
    report = accuracy_report(reference, mapped, ["a", "b"])
    assert report["n_pixels"] == 100 and report["confusion_matrix"] == [[40, 10], [5, 45]]
    assert report["accuracy"] == pytest.approx(0.85)
    assert report["kappa"] == pytest.approx((0.85 - 0.5) / 0.5)
    assert report["producers_accuracy"] == {"a": 0.8, "b": 0.9}
    assert report["users_accuracy"]["a"] == pytest.approx(40 / 45)
    assert report["iou"]["a"] == pytest.approx(40 / 55)


def test_class_areas_in_pixels_percent_and_square_metres():
    label_map = np.array([[1, 1, 2, 0]], dtype=np.uint8)
    areas = class_areas(label_map, ["x", "y", "z"], pixel_size=0.5)
    assert [row["pixels"] for row in areas] == [2, 1, 0]
    assert areas[0]["percent"] == 50.0 and areas[1]["square_metres"] == 0.25


# ---------------------------------------------------------------- clustering and rasters


@pytest.mark.parametrize("method", sorted(METHODS))
def test_clusters_recover_synthetic_regions(method, scene):
    image, truth = scene
    clusterer = PixelClusterer(n_clusters=3, method=method, tile_size=50).fit(image)
    clusters = clusterer.predict(image)
    assert set(np.unique(clusters)) <= set(range(1, clusterer.n_clusters_ + 1))
    assert cluster_agreement(clusters, truth)["purity"] > 0.9


def test_single_colour_image_cannot_be_clustered():
    with pytest.raises(ValueError, match="fewer than n_clusters=4 distinct"):
        PixelClusterer(n_clusters=4).fit(np.full((20, 20, 3), 90, np.uint8))


def test_multiband_tiff_is_memory_mapped_and_clustered(tmp_path, rng):
    bands = rng.normal(1000, 50, (5, 64, 80)).astype(np.uint16)
    bands[:, :, 40:] += 3000
    path = tmp_path / "scene.tif"
    tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="separate")
    raster = read_raster(path)
    assert raster.shape == (64, 80, 5)
    assert isinstance(raster.base, np.memmap) or isinstance(raster, np.memmap)
    clusters = PixelClusterer(n_clusters=2, tile_size=32).fit_predict(raster)
    assert len(np.unique(clusters[:, :38])) == 1 and len(np.unique(clusters[:, 42:])) == 1
    with pytest.raises(ImageReadError, match="exceeds the limit of 1000") as raised:
        read_raster(path, max_pixels=1000)
    assert raised.value.parameter == "max_pixels"
    assert user_message(raised.value).endswith("(--max-pixels)")


# ---------------------------------------------------------------- real data


def test_em_membranes_from_sparse_scribbles():
    root = data_path("em_membranes")
    train = [load_em_slice(root, f"{index}.png") for index in range(5)]
    test = [load_em_slice(root, f"{index}.png") for index in (6, 12, 18, 24)]
    reference = np.stack([truth for _, truth in test])
    accuracies = []
    for membrane_pixels in (400, 1200):  # interior scribbled three times as much, as it covers ~78%
        masks = [
            np.where(
                truth == 1, simulate_scribbles(truth, membrane_pixels // 5, random_state=number), 0
            )
            + np.where(
                truth == 2,
                simulate_scribbles(truth, 3 * membrane_pixels // 5, random_state=number + 50),
                0,
            )
            for number, (_, truth) in enumerate(train)
        ]
        model = PixelClassifier(classifier_params={"n_estimators": 30}).fit(
            [image for image, _ in train], masks, EM_CLASSES
        )
        assert model.n_samples_per_class_ == {
            "membrane": membrane_pixels,
            "interior": 3 * membrane_pixels,
        }
        mapped = np.stack([model.predict(image) for image, _ in test])
        accuracies.append(accuracy_report(reference, mapped, EM_CLASSES)["accuracy"])
    assert accuracies[0] >= 0.85  # all "interior" scores 0.78
    assert accuracies[1] >= accuracies[0] - 0.005


def test_dubai_land_cover_beats_the_majority_class():
    tiles = dubai_tiles(data_path("dubai_landcover"))
    train = [load_dubai_tile(path, max_side=256) for path in tiles[::9]]
    test = [load_dubai_tile(path, max_side=256) for path in tiles[4::9]]
    names = list(DUBAI_CLASSES)
    masks = [
        simulate_scribbles(truth, 40, random_state=number)
        for number, (_, truth) in enumerate(train)
    ]
    model = PixelClassifier(classifier_params={"n_estimators": 30}).fit(
        [image for image, _ in train], masks, names
    )
    reference = np.concatenate([truth.ravel() for _, truth in test])
    mapped = np.concatenate([model.predict(image).ravel() for image, _ in test])
    report = accuracy_report(reference, mapped, names)
    counts = np.bincount(reference[reference > 0])
    assert report["accuracy"] >= counts.max() / counts.sum() + 0.15
    assert report["kappa"] > 0.3


# ---------------------------------------------------------------- command line


def test_cli_train_predict_cluster(tmp_path, scene, make_image):
    image, truth = scene
    image_path = make_image("scene.png", image)
    samples_path = make_image("samples.png", simulate_scribbles(truth, 150).astype(np.uint8))
    model = tmp_path / "model"
    common = ["--sigmas", "1,2", "--tile-size", "64"]
    assert main(["segment", "train", str(image_path), "--samples", str(samples_path), "--classes", "r,g,s",
                 "--test-size", "0.3", "--n-estimators", "20", "--out", str(model), *common]) == 0  # fmt: skip
    assert json.loads((model / "metrics.json").read_text())["accuracy"] > 0.9
    out = tmp_path / "predicted"
    reference = make_image("reference.png", truth.astype(np.uint8))
    assert main(["segment", "predict", str(model), str(image_path), "--samples", str(reference),
                 "--out", str(out), "--pixel-size", "2", "--tile-size", "50"]) == 0  # fmt: skip
    for name in (
        "classmap.png",
        "overlay.png",
        "legend.png",
        "areas.csv",
        "areas.json",
        "metrics.json",
    ):
        assert (out / name).is_file()
    assert json.loads((out / "metrics.json").read_text())["accuracy"] > 0.9
    np.testing.assert_array_equal(
        np.asarray(Image.open(out / "classmap.png")), np.load(out / "classmap.npy")
    )
    assert main(["segment", "evaluate", str(model), str(image_path), "--samples", str(reference),
                 "--out", str(tmp_path / "evaluation")]) == 0  # fmt: skip
    evaluation = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert evaluation["accuracy"] == json.loads((out / "metrics.json").read_text())["accuracy"]
    assert main(["segment", "cluster", str(image_path), "--n-clusters", "3", "--method", "isodata",
                 "--truth", str(reference), "--out", str(tmp_path / "clusters")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "clusters" / "agreement.json").read_text())["purity"] > 0.9


def test_cli_reports_bad_samples_in_one_line(tmp_path, scene, make_image, capsys):
    image, truth = scene
    image_path = make_image("scene.png", image)
    one_class = make_image("one.png", np.where(truth == 1, 1, 0).astype(np.uint8))
    code = main(
        [
            "segment",
            "train",
            str(image_path),
            "--samples",
            str(one_class),
            "--out",
            str(tmp_path / "m"),
        ]
    )
    assert code == 2
    assert "one class only" in capsys.readouterr().err
    code = main(["segment", "train", str(image_path), str(image_path), "--samples", str(one_class),
                 "--out", str(tmp_path / "m")])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("(2 images, 1 files) (--samples)")


# ---------------------------------------------------------------- run functions


@pytest.fixture
def em_files(make_image):
    """A crop of a real EM slice, sparse scribbles on it and its dense reference labels."""
    image, truth = load_em_slice(data_path("em_membranes"), "3.png")
    image, truth = image[:120, :150, 0], truth[:120, :150]
    scribbles = simulate_scribbles(truth, 150).astype(np.uint8)
    return (
        make_image("em.png", image),
        make_image("scribbles.png", scribbles),
        make_image("reference.png", truth.astype(np.uint8)),
    )


def test_runs_train_predict_evaluate_and_cluster_from_python(tmp_path, em_files):
    image, scribbles, reference = em_files
    fast = {"sigmas": (1, 2), "tile_size": 64, "n_jobs": 1}
    trained = train_run([image], [scribbles], tmp_path / "model", classes=list(EM_CLASSES),
                        n_estimators=20, test_size=0.3, random_state=1, **fast)  # fmt: skip
    assert isinstance(trained, TrainResult) and trained.out == tmp_path / "model"
    assert set(trained.n_samples_per_class) == set(EM_CLASSES)
    assert trained.metrics == json.loads((trained.out / "metrics.json").read_text())
    assert trained.metrics["accuracy"] > 0.8
    with pytest.raises(AttributeError):
        trained.out = tmp_path  # frozen
    predicted = predict_run(trained.out, [image, image], tmp_path / "maps",
                            samples=[reference, reference], tile_size=50, pixel_size=2.0, n_jobs=1)  # fmt: skip
    assert [m.out for m in predicted.maps] == [tmp_path / "maps" / "em"] * 2
    first = predicted.maps[0]
    assert (first.out / "classmap.npy").is_file() and (first.out / "overlay.png").is_file()
    assert sum(row["percent"] for row in first.areas) == pytest.approx(100)
    assert "square_metres" in first.areas[0]
    assert first.metrics["accuracy"] > 0.8
    evaluated = evaluate_run(trained.out, [image], [reference], tile_size=50, n_jobs=1)
    assert evaluated.out == trained.out / "evaluation"
    assert evaluated.metrics["accuracy"] == pytest.approx(first.metrics["accuracy"])
    assert json.loads((evaluated.out / "metrics.json").read_text()) == evaluated.metrics
    clustered = cluster_run(image, tmp_path / "clusters", n_clusters=2, truth=reference)
    assert clustered.class_names == ("cluster1", "cluster2")
    assert clustered.agreement["purity"] > clustered.agreement["majority_baseline"] - 0.01
    assert (tmp_path / "clusters" / "agreement.json").is_file()


def test_train_run_records_its_sources_and_colors_for_predict_run(tmp_path, scene, make_image):
    rgb, truth = scene
    palette = [(255, 0, 0), (0, 160, 0), (0, 0, 255)]
    colored = np.zeros((*truth.shape, 3), np.uint8)
    for label, color in enumerate(palette, start=1):
        colored[truth == label] = color
    image, samples = make_image("rgb.png", rgb), make_image("colored.png", colored)
    classes = ["red=#FF0000", "green=#00A000", "blue=#0000FF"]
    trained = train_run([image], [samples], tmp_path / "model", classes=classes,
                        n_estimators=10, sigmas=(1,), n_jobs=1)  # fmt: skip
    metadata = read_metadata(trained.out)
    assert metadata == {
        "images": [str(image)],
        "samples": [str(samples)],
        "class_colors": [list(color) for color in palette],
    }
    predicted = predict_run(trained.out, [image], tmp_path / "map", n_jobs=1)
    classmap = Image.open(predicted.maps[0].out / "classmap.png")
    assert classmap.getpalette()[3:12] == [channel for color in palette for channel in color]


def test_run_errors_name_the_run_parameter(tmp_path, scene, make_image, em_files):
    image, scribbles, _ = em_files
    with pytest.raises(ParameterError, match="random_forest classifier only") as raised:
        train_run([image], [scribbles], tmp_path / "m", classifier="svm", n_estimators=5)
    assert raised.value.parameter == "n_estimators"
    with pytest.raises(ParameterError, match="one file per image") as raised:
        train_run([image, image], [scribbles], tmp_path / "m")
    assert raised.value.parameter == "samples"
    with pytest.raises(ParameterError, match="not both") as raised:
        train_run([image], [scribbles], tmp_path / "m", test_size=0.3, test_samples=[scribbles])
    assert raised.value.parameter == "test_size"
    with pytest.raises(ParameterError, match="every class or to none") as raised:
        train_run([image], [scribbles], tmp_path / "m", classes=["a=#000080", "b"])
    assert raised.value.parameter == "classes"
    rgb, truth = scene
    colored = np.zeros((*truth.shape, 3), np.uint8)
    colored[truth == 2] = (0, 0, 255)
    colored[truth == 3] = (255, 0, 0)
    with pytest.raises(ParameterError, match="needs class colours") as raised:
        train_run(
            [make_image("rgb.png", rgb)], [make_image("colored.png", colored)], tmp_path / "m"
        )
    assert raised.value.parameter == "classes"
    assert user_message(raised.value).endswith("(--classes)")
    with pytest.raises(ImageReadError, match="exceeds the limit of 100") as raised:
        cluster_run(image, tmp_path / "c", max_pixels=100)
    assert raised.value.parameter == "max_pixels"


def test_old_flag_spellings_still_parse():
    parser = build_parser()

    def parsed(*argv: str) -> dict:
        values = vars(parser.parse_args(["segment", *argv]))
        return {key: value for key, value in values.items() if key != "handler"}

    assert parsed("cluster", "a.png", "--k", "3", "--seed", "4", "--out", "o") == parsed(
        "cluster", "a.png", "--n-clusters", "3", "--random-state", "4", "--out", "o"
    )
    old = ["train", "a.png", "--samples", "s.png", "--out", "m", "--trees", "7", "--holdout", "0.2",
           "--jobs", "2", "--seed", "5"]  # fmt: skip
    new = ["train", "a.png", "--samples", "s.png", "--out", "m", "--n-estimators", "7",
           "--test-size", "0.2", "--n-jobs", "2", "--random-state", "5"]  # fmt: skip
    assert parsed(*old) == parsed(*new)
    assert parsed(*old)["n_estimators"] == 7 and parsed(*old)["test_size"] == 0.2
    old = [
        "bof",
        "train",
        "a.png",
        "--masks",
        "m.png",
        "--out",
        "m",
        "--words",
        "9",
        "--no-context",
    ]
    new = ["bof", "train", "a.png", "--masks", "m.png", "--out", "m", "--n-words", "9",
           "--no-neighbor-context"]  # fmt: skip
    assert parsed(*old) == parsed(*new)
    assert parsed(*old)["n_words"] == 9 and parsed(*old)["neighbor_context"] is False
    assert parsed(*old[:-1])["neighbor_context"] is True  # default without the flag


@pytest.mark.parametrize(
    "verb",
    [
        ["cluster"],
        ["train"],
        ["predict"],
        ["evaluate"],
        ["bof", "train"],
        ["bof", "predict"],
        ["bof", "evaluate"],
    ],
)
def test_segment_help_shows_defaults(verb, capsys):
    with pytest.raises(SystemExit):
        main(["segment", *verb, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--n-jobs N_JOBS threads (-1: all cores) (default: -1)" in text or verb == ["cluster"]
    assert "(default: 178956970)" in text  # --max-pixels
    assert "--seed" not in text and "--jobs" not in text
