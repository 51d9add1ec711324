"""Object recognition with BoF + SVM: training, evaluation, prediction, saving and sweeps on real photos."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.svm import LinearSVC

from conftest import data_path
from imagelearn.bof import estimator
from imagelearn.bof.estimator import features_as_batch
from imagelearn.bof.linear_svm import ChunkedLinearSVC
from imagelearn.bof.recognition import DEFAULT_CHANNELS, DEFAULT_MAX_SIDE, BofClassifier, chi2_map
from imagelearn.bof.runs import (
    evaluate_run,
    make_channels,
    predict_images,
    sweep_vocabulary,
    train_run,
)
from imagelearn.cli.main import main
from imagelearn.core.bundle import BundleError
from imagelearn.core.errors import ParameterError
from imagelearn.core.execution import MatrixResult
from imagelearn.core.images import ImageReadError
from imagelearn.core.persistence import read_metadata

#: Held-out accuracy floor on the 250-photo flowers5 subset below (5 classes: chance is 0.20;
#: measured 0.51-0.55 with these small vocabularies). The whole data set's figure (issue floor
#: 0.55) is measured by bench/bench_recognition.py and quoted in the README.
FLOWERS_SUBSET_FLOOR = 0.45
SMALL_CHANNELS = [
    {
        "detector": "dense_rootsift",
        "detector_params": {"step": 4},
        "n_words": 200,
        "assignment": "soft",
        "pyramid": (1, 2),
        "sample_size": 50_000,
    },
    {
        "detector": "dense_lab",
        "detector_params": {"step": 4},
        "n_words": 64,
        "pyramid": (1, 2),
        "sample_size": 50_000,
    },
]


@pytest.fixture(scope="module")
def flowers_subset(tmp_path_factory) -> str:
    """A CSV of 50 seeded photos per flowers5 class (250 images)."""
    root = data_path("flowers5")
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("flowers") / "subset.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label"])
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for image in rng.choice(sorted(class_dir.glob("*.jpg")), 50, replace=False):
                writer.writerow([str(image), class_dir.name])
    return str(path)


@pytest.fixture(scope="module")
def trained_run(flowers_subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "flowers"
    model = BofClassifier(channels=SMALL_CHANNELS, cache_dir=tmp_path_factory.mktemp("cache"))
    result = train_run(flowers_subset, out, model, test_size=0.3, random_state=0)
    assert result.out == out and result.model is model
    return out, result.metrics


def test_held_out_accuracy_on_real_flowers_is_above_floor(trained_run):
    out, metrics = trained_run
    assert metrics["n_images"] == 75
    assert metrics["accuracy"] >= FLOWERS_SUBSET_FLOOR
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["accuracy"] == metrics["accuracy"]
    assert set(saved["per_class"]) == {"daisy", "dandelion", "rose", "sunflower", "tulip"}
    for name in (
        "confusion_matrix.png",
        "misclassified.csv",
        "split.json",
        "manifest.json",
        "arrays.safetensors",
    ):
        assert (out / name).is_file(), name


def test_saved_model_predicts_like_the_trained_one(trained_run, flowers_subset):
    out, _ = trained_run
    model = BofClassifier.load(out)
    assert model.class_names_ == ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    split = json.loads((out / "split.json").read_text())
    held_out = [path for path, _ in split["held_out"][:10]]
    predictions = predict_images(out, held_out)
    features, _ = model.extract(held_out)
    labels = model.predict_features(features).labels
    assert [image.label for image in predictions.images] == [
        model.class_names_[label] for label in labels
    ]


def test_predict_cli_reports_unreadable_files_by_name(trained_run, tmp_path, capsys):
    out, _ = trained_run
    images = tmp_path / "mixed"
    shutil.copytree(data_path("bad_inputs", "mixed_images"), images)
    assert main(["bof", "predict", str(out), str(images), "--format", "json", "--jobs", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {row["path"].rsplit("/", 1)[-1]: row for row in rows}
    assert by_name["ukbench09268_corrupt.jpg"]["label"] is None
    assert "ukbench09268_corrupt.jpg" not in by_name["ukbench09268.jpg"]["path"]
    assert all(row["label"] for name, row in by_name.items() if name != "ukbench09268_corrupt.jpg")


def test_evaluate_cli_writes_metrics(trained_run, flowers_subset, tmp_path):
    out, metrics = trained_run
    assert main(["bof", "evaluate", str(out), flowers_subset, "--out", str(tmp_path / "eval")]) == 0
    evaluation = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluation["n_images"] == 250
    assert evaluation["accuracy"] >= metrics["accuracy"], "training images are part of this set"


def test_evaluate_run_writes_into_the_run_by_default(trained_run, flowers_subset):
    out, metrics = trained_run
    result = evaluate_run(out, flowers_subset)
    assert result.out == out / "evaluation" and result.n_images == 250
    assert result.accuracy >= metrics["accuracy"] and result.skipped == []
    assert json.loads((result.out / "metrics.json").read_text()) == result.metrics


def test_make_channels_builds_the_default_model_and_the_sweep_channel():
    shared = {"pyramid": (1, 2), "assignment": "soft", "sample_size": 200_000}
    dense = {"step": 4, "max_side": DEFAULT_MAX_SIDE}
    assert make_channels() == [
        {
            "detector": "dense_rootsift",
            "detector_params": {"step": 4, "max_side": DEFAULT_MAX_SIDE},
            "n_words": 2000,
            "vocabulary": "kmeans",
            **shared,
        },
        {"detector": "dense_lab", "detector_params": dense, "n_words": 256, **shared},
    ]
    assert [channel["detector_params"] for channel in DEFAULT_CHANNELS] == [dense, dense]
    assert make_channels(max_side=None, color_n_words=0)[0]["detector_params"] == {
        "step": 4,
        "max_side": None,
    }
    assert make_channels("sift", n_words=300, color_n_words=0, vocabulary="tree") == [
        {
            "detector": "sift",
            "detector_params": None,
            "n_words": 300,
            "vocabulary": "tree",
            **shared,
        }
    ]
    assert make_channels(
        color_n_words=0, pyramid=[1], assignment=None, step=None, sample_size=None
    ) == [{"detector": "dense_rootsift", "n_words": 2000, "vocabulary": "kmeans", "pyramid": (1,)}]


def test_loading_a_corrupt_or_foreign_bundle_fails_clearly(trained_run, tmp_path):
    out, _ = trained_run
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "arrays.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BundleError, match="corrupt"):
        BofClassifier.load(broken)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format_version"] = 99
    newer = tmp_path / "newer"
    shutil.copytree(out, newer)
    (newer / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer"):
        BofClassifier.load(newer)
    manifest["format_version"] = 1
    manifest["content"]["state"]["channels"][0]["cache_dir"] = "/elsewhere"
    (newer / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"newer.*channel 0.*unknown parameter.*cache_dir"):
        BofClassifier.load(newer)


def test_sweep_measures_each_vocabulary_size(flowers_subset, tmp_path):
    rows = sweep_vocabulary(
        flowers_subset,
        tmp_path,
        [16, 64],
        [{"detector": "dense_rootsift", "pyramid": (1,), "sample_size": 20_000}],
    ).rows
    assert [row.n_words for row in rows] == [16, 64]
    assert rows[1].model_bytes > rows[0].model_bytes
    assert all(0.2 < row.accuracy <= 1.0 for row in rows)
    assert (tmp_path / "sweep.png").is_file() and (tmp_path / "sweep.csv").is_file()


def test_single_class_training_data_is_refused(tmp_path, make_image, capsys):
    rng = np.random.default_rng(0)
    for index in range(4):
        make_image(f"one/cat/{index}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    assert main(["bof", "train", str(tmp_path / "one"), "--out", str(tmp_path / "run")]) == 2
    assert "1 class" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    two = [tmp_path / "one" / "cat" / f"{index}.png" for index in range(2)]
    for C in (0.0, -1.0):  # refused before any feature is extracted
        with pytest.raises(ParameterError, match="C must be > 0"):
            BofClassifier(C=C, cache_dir=False).fit(["/nonexistent.jpg", *two], [0, 1, 1])


#: Two quick channels for the estimator tests: a few hundred descriptors per photo.
TINY_CHANNELS = [
    {"detector": "dense_rootsift", "detector_params": {"step": 16}, "n_words": 16},
    {"detector": "dense_lab", "detector_params": {"step": 16}, "n_words": 8, "pyramid": (1,)},
]


@pytest.fixture(scope="module")
def tiny_photos() -> tuple[list, np.ndarray]:
    """Six flowers5 photos of each of two classes (daisy 0, sunflower 1)."""
    root = data_path("flowers5")
    paths = [p for name in ("daisy", "sunflower") for p in sorted((root / name).glob("*.jpg"))[:6]]
    return paths, np.repeat([0, 1], 6)


def test_saved_and_loaded_classifier_predicts_identically(tiny_photos, tmp_path):
    paths, labels = tiny_photos
    cache = tmp_path / "cache"
    model = BofClassifier(channels=TINY_CHANNELS, n_jobs=1, cache_dir=cache).fit(
        paths, labels, class_names=["daisy", "sunflower"]
    )
    path = model.save(tmp_path / "model", metadata={"source": "flowers5"})
    assert path == tmp_path / "model"
    loaded = BofClassifier.load(path)
    assert type(loaded) is BofClassifier and loaded.class_names_ == ["daisy", "sunflower"]
    assert loaded.n_jobs == -1 and loaded.cache_dir is None  # the loading machine's defaults
    loaded.set_params(n_jobs=1, cache_dir=cache)
    np.testing.assert_array_equal(loaded.predict(paths), model.predict(paths))
    # the SVM weights are saved as float32
    np.testing.assert_allclose(
        loaded.decision_function(paths), model.decision_function(paths), rtol=1e-6
    )
    assert [bof.get_params() for bof in loaded.channels_] == [
        bof.get_params() | {"n_jobs": -1, "cache_dir": None} for bof in model.channels_
    ]
    assert loaded.n_training_images_ == 12 and loaded.timings_ == model.timings_
    assert read_metadata(path) == {"source": "flowers5"}
    text = (path / "manifest.json").read_text()
    assert "cache_dir" not in text and "n_jobs" not in text and str(cache) not in text


def test_prediction_sets_no_state_and_reports_unreadable_images(tiny_photos, tmp_path):
    paths, labels = tiny_photos
    model = BofClassifier(channels=TINY_CHANNELS, n_jobs=1, cache_dir=False).fit(paths, labels)
    assert model.class_names_ == ["0", "1"]
    corrupt = data_path("bad_inputs", "mixed_images", "ukbench09268_corrupt.jpg")
    before = dict(vars(model))
    prediction = model.predict_images([paths[0], corrupt, paths[-1]])
    assert prediction.kept.tolist() == [0, 2] and prediction.failed.tolist() == [1]
    assert [path for path, _ in prediction.failures] == [str(corrupt)]
    assert prediction.labels[0] == 0
    assert prediction.labels.tolist() == model.predict([paths[0], paths[-1]]).tolist()
    np.testing.assert_allclose(
        prediction.scores[:, 1], model.decision_function([paths[0], paths[-1]]), rtol=1e-6
    )
    with pytest.raises(ImageReadError, match="ukbench09268_corrupt"):
        model.predict([paths[0], corrupt])
    _, skipped = model.extract([paths[0], corrupt])
    assert [path for path, _ in skipped] == [str(corrupt)]
    assert vars(model).keys() == before.keys()
    assert all(vars(model)[name] is value for name, value in before.items())


def test_unfitted_use_raises_not_fitted_and_clone_keeps_params(tiny_photos, tmp_path):
    paths, _ = tiny_photos
    model = BofClassifier(channels=TINY_CHANNELS, C=0.5, n_jobs=1, cache_dir=False)
    for use in (model.predict, model.decision_function):
        with pytest.raises(NotFittedError):
            use(paths[:1])
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "model")
    twin = clone(model)
    assert twin is not model and twin.get_params() == model.get_params()
    assert twin.set_params(C=2.0).get_params() == model.get_params() | {"C": 2.0}


def test_svm_matches_linear_svc_on_the_mapped_training_histograms(tiny_photos):
    """The bounded-memory SVM is the LinearSVC that BofClassifier trained before."""
    paths, labels = tiny_photos
    model = BofClassifier(channels=TINY_CHANNELS, n_jobs=1, cache_dir=False)
    features, _ = model.extract(paths)
    model.fit_features(features, labels)
    assert isinstance(model.svm_, ChunkedLinearSVC)
    results = []
    for bof, channel in zip(model.channels_, features, strict=True):
        batch = features_as_batch(channel)
        results.append(MatrixResult(bof.transform_features(batch.values), batch.kept))
    histograms = model._join(results, np.arange(len(paths)))
    reference = LinearSVC(max_iter=5000).fit(chi2_map(histograms), labels)
    expected = reference.decision_function(chi2_map(histograms))
    np.testing.assert_allclose(model.svm_.decision_function(histograms), expected, atol=1e-3)
    np.testing.assert_allclose(model.decision_function(paths), expected, atol=1e-3)


def test_encoding_on_workers_in_windows_equals_encoding_features_in_memory(
    tiny_photos, tmp_path, monkeypatch
):
    """Training on images (two worker processes, windows of 4 images, votes through a file on
    disk) gives the model of training on the same features held in memory."""
    paths, labels = tiny_photos
    monkeypatch.setattr(estimator, "ENCODE_IMAGES_PER_WORKER", 2)
    cache = tmp_path / "cache"
    streamed = BofClassifier(channels=TINY_CHANNELS, n_jobs=2, cache_dir=cache).fit(paths, labels)
    in_memory = BofClassifier(channels=TINY_CHANNELS, n_jobs=1, cache_dir=cache)
    features, _ = in_memory.extract(paths)
    in_memory.fit_features(features, labels)
    for ours, theirs in zip(streamed.channels_, in_memory.channels_, strict=True):
        np.testing.assert_array_equal(ours.vocabulary_.words_, theirs.vocabulary_.words_)
        np.testing.assert_allclose(ours.idf_, theirs.idf_, rtol=1e-6)
    np.testing.assert_allclose(streamed.svm_.coef_, in_memory.svm_.coef_, atol=1e-5)
    scores = streamed.predict_images(paths).scores
    np.testing.assert_allclose(scores, in_memory.predict_features(features).scores, atol=1e-5)
