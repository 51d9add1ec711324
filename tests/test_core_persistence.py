"""The persistence face shared by every estimator: parameters + state + arrays, no pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from imagelearn.core.bundle import MANIFEST_NAME, BundleError
from imagelearn.core.persistence import PersistentEstimator, persistable, read_metadata


@persistable
class _Scaler(BaseEstimator):
    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor


class _Centroids(PersistentEstimator, BaseEstimator):
    bundle_kind = "test-centroids"

    def __init__(self, n_clusters: int = 2, grid=(1, 2), scaler=None, n_jobs=None) -> None:
        self.n_clusters = n_clusters
        self.grid = grid
        self.scaler = scaler
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray) -> _Centroids:
        self.centers_ = np.asarray(X[: self.n_clusters], dtype=np.float32)
        self.names_ = [f"c{i}" for i in range(self.n_clusters)]
        return self

    def _check_saveable(self) -> None:
        check_is_fitted(self, "centers_")

    def _get_state(self):
        return {"names": self.names_}, {"centers": self.centers_}

    def _set_state(self, state, arrays) -> None:
        self.names_ = list(state["names"])
        self.centers_ = arrays["centers"]


def test_round_trip_restores_params_state_and_arrays(tmp_path):
    model = _Centroids(3, grid=(1, 2, 4), scaler=_Scaler(2.5), n_jobs=4).fit(np.eye(4))
    path = model.save(tmp_path / "model", metadata={"source": "here"})
    assert path == tmp_path / "model"
    loaded = _Centroids.load(path)
    assert loaded.grid == (1, 2, 4) and loaded.scaler.factor == 2.5
    assert loaded.n_jobs is None  # runtime settings are the loading machine's
    assert loaded.names_ == ["c0", "c1", "c2"]
    np.testing.assert_array_equal(loaded.centers_, model.centers_)
    assert read_metadata(path) == {"source": "here"}


def test_unfitted_save_raises_not_fitted(tmp_path):
    with pytest.raises(NotFittedError):
        _Centroids().save(tmp_path / "model")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["params"].update(cache_dir="/tmp/elsewhere"), "unknown parameter"),
        (lambda c: c["params"].update(n_jobs=64), "unknown parameter"),
        (lambda c: c.update(params=42), "not a mapping"),
        (lambda c: c.update(state=[]), "no state"),
        (lambda c: c["state"].pop("names"), "incomplete or corrupt"),
        (
            lambda c: c["params"].update(scaler={"estimator": "os.system", "params": {}}),
            "unknown component",
        ),
    ],
)
def test_edited_manifest_is_a_clear_bundle_error(tmp_path, edit, message):
    path = _Centroids(2).fit(np.eye(3)).save(tmp_path / "model")
    header = json.loads((path / MANIFEST_NAME).read_text())
    edit(header["content"])
    (path / MANIFEST_NAME).write_text(json.dumps(header))
    with pytest.raises(BundleError, match=message):
        _Centroids.load(path)
