"""``DeepImageClassifier`` as an estimator: save/load round trip, runtime settings, unfitted use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import data_path
from imagelearn.classify import DeepImageClassifier
from imagelearn.core.bundle import MANIFEST_NAME, BundleError
from imagelearn.core.execution import BatchResult
from imagelearn.core.persistence import read_metadata

pytestmark = pytest.mark.usefixtures("single_torch_thread")

#: A small network on small images: about a second per fit on one CPU core.
SMALL = dict(backbone="small_cnn", epochs=2, head_epochs=1, image_size=32, batch_size=8, patience=0)


@pytest.fixture(scope="module")
def photos() -> tuple[list[Path], np.ndarray]:
    """Eight hymenoptera photos of each class (ants 0, bees 1)."""
    root = data_path("hymenoptera", "train")
    paths = [path for name in ("ants", "bees") for path in sorted((root / name).glob("*.jpg"))[:8]]
    return paths, np.repeat([0, 1], 8)


@pytest.mark.parametrize(("mode", "weights"), [("scratch", None), ("features", "none")])
def test_saved_and_loaded_model_predicts_identically(photos, tmp_path, mode, weights) -> None:
    paths, labels = photos
    torch.manual_seed(0)
    model = DeepImageClassifier(
        **SMALL, mode=mode, weights=weights, device="cpu", cache_dir=tmp_path / "cache"
    ).fit(paths, labels, validation=(paths, labels), class_names=["ants", "bees"])
    path = model.save(tmp_path / "model", metadata={"source": "hymenoptera"})
    assert path == tmp_path / "model"
    loaded = DeepImageClassifier.load(path)
    assert type(loaded) is DeepImageClassifier
    runtime = {"device": "cpu", "cache_dir": tmp_path / "cache"}
    assert loaded.get_params() | runtime == model.get_params()
    assert loaded.device is None and loaded.cache_dir is None  # the loading machine's defaults
    assert loaded.class_names_ == ["ants", "bees"] and loaded.history_ == model.history_
    assert loaded.backbone_name_ == "small_cnn" and loaded.skipped_ == []
    loaded.set_params(device="cpu", cache_dir="")
    np.testing.assert_array_equal(loaded.predict_proba(paths), model.predict_proba(paths))
    assert read_metadata(path) == {"source": "hymenoptera"}


def test_runtime_settings_are_not_saved(photos, tmp_path) -> None:
    paths, labels = photos
    model = DeepImageClassifier(**SMALL, mode="scratch", device="cpu", cache_dir="").fit(
        paths, labels
    )
    manifest = model.save(tmp_path / "model") / MANIFEST_NAME
    header = json.loads(manifest.read_text())
    params = header["content"]["params"]
    assert {"device", "cache_dir", "seed"}.isdisjoint(params) and params["random_state"] == 0
    params["device"] = "cuda"  # a manifest never sets a runtime setting
    manifest.write_text(json.dumps(header))
    with pytest.raises(BundleError, match="unknown parameter"):
        DeepImageClassifier.load(tmp_path / "model")


def test_unfitted_use_raises_not_fitted(photos, tmp_path) -> None:
    paths, _ = photos
    model = DeepImageClassifier(**SMALL)
    for use in (model.predict, model.predict_proba, model.predict_images):
        with pytest.raises(NotFittedError):
            use(paths[:1])
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_clone_and_params_round_trip() -> None:
    model = DeepImageClassifier(**SMALL, mode="finetune", random_state=3)
    twin = clone(model)
    assert twin is not model and twin.get_params() == model.get_params()
    assert twin.set_params(random_state=4, device="cpu").get_params() == (
        model.get_params() | {"random_state": 4, "device": "cpu"}
    )


def test_unreadable_images_are_reported_through_the_batch_result(photos, tmp_path) -> None:
    paths, labels = photos
    corrupt = data_path("bad_inputs", "mixed_images", "ukbench09268_corrupt.jpg")
    model = DeepImageClassifier(**SMALL, mode="scratch", device="cpu", cache_dir="").fit(
        [*paths, corrupt], [*labels, 0]
    )
    assert [path for path, _ in model.skipped_] == [str(corrupt)]
    missing = tmp_path / "missing.jpg"
    prediction = model.predict_images([paths[0], corrupt, paths[9], missing])
    assert isinstance(prediction, BatchResult)
    np.testing.assert_array_equal(prediction.kept, [0, 2])
    np.testing.assert_array_equal(prediction.failed, [1, 3])
    assert [path for path, _ in prediction.failures] == [str(corrupt), str(missing)]
    assert prediction.probabilities is prediction.values
    np.testing.assert_allclose(
        prediction.probabilities, model.predict_proba([paths[0], paths[9]]), rtol=1e-6
    )
