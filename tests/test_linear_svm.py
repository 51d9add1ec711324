"""ChunkedLinearSVC: LinearSVC's model, trained in bounded memory, on synthetic and real BoF
histograms."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_approximation import AdditiveChi2Sampler
from sklearn.svm import LinearSVC

from conftest import data_path
from imagelearn.bof import linear_svm
from imagelearn.bof.estimator import BagOfFeatures
from imagelearn.bof.linear_svm import ChunkedLinearSVC, RowStore
from imagelearn.bof.recognition import chi2_map
from imagelearn.core.errors import ParameterError


def objective(coef: np.ndarray, intercept: np.ndarray, features, y, classes, C=1.0) -> float:
    """LinearSVC's primal objective (squared hinge, regularized intercept), summed over the
    one-vs-rest problems."""
    positives = classes[1:] if len(classes) == 2 else classes
    signs = np.where(y[:, None] == positives[None, :], 1.0, -1.0)
    margins = features.astype(np.float64) @ coef.T + intercept
    slack = np.maximum(0.0, 1.0 - signs * margins)
    return 0.5 * float((coef**2).sum() + (intercept**2).sum()) + C * float((slack**2).sum())


def synthetic(n_classes: int, n_samples: int = 240, n_bins: int = 300):
    """L1-normalized nonnegative histograms whose class raises a few bins."""
    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, n_samples)
    histograms = rng.random((n_samples, n_bins)).astype(np.float32) ** 3
    histograms[np.arange(n_samples), y] += rng.random(n_samples).astype(np.float32)
    return histograms / histograms.sum(axis=1, keepdims=True), y


@pytest.fixture(scope="module")
def flower_histograms() -> tuple[np.ndarray, np.ndarray]:
    """Real BoF histograms (L1, 2-level pyramid, 32 words) of 12 flowers5 photos of each of 3
    classes."""
    root = data_path("flowers5")
    paths = [
        p
        for name in ("daisy", "rose", "sunflower")
        for p in sorted((root / name).glob("*.jpg"))[:12]
    ]
    bof = BagOfFeatures(
        detector="dense_rootsift",
        detector_params={"step": 8},
        n_words=32,
        pyramid=(1, 2),
        normalization="l1",
        n_jobs=1,
        cache_dir=False,
    )
    return bof.fit(paths).transform(paths).astype(np.float32), np.repeat([0, 1, 2], 12)


def check_matches_linear_svc(histograms, y, C=1.0, solver="newton"):
    model = ChunkedLinearSVC(C=C, feature_map=chi2_map, solver=solver).fit(histograms, y)
    features = chi2_map(histograms)
    exact = LinearSVC(C=C, dual=False, tol=1e-10, max_iter=100_000).fit(features, y)
    np.testing.assert_array_equal(model.classes_, exact.classes_)
    assert (
        model.coef_.shape == exact.coef_.shape and model.intercept_.shape == exact.intercept_.shape
    )
    np.testing.assert_allclose(
        model.decision_function(histograms), exact.decision_function(features), atol=1e-3
    )
    np.testing.assert_array_equal(model.predict(histograms), exact.predict(features))
    # against LinearSVC as BofClassifier used it: the same predictions, an objective as low
    default = LinearSVC(C=C, max_iter=5000).fit(features, y)
    assert np.mean(model.predict(histograms) == default.predict(features)) >= 0.99
    ours = objective(model.coef_, model.intercept_, features, y, model.classes_, C)
    theirs = objective(default.coef_, default.intercept_, features, y, model.classes_, C)
    assert ours <= theirs * (1 + 1e-4)
    return model


@pytest.mark.parametrize("n_classes", [2, 4])
def test_decision_values_match_linear_svc_on_synthetic_histograms(n_classes):
    histograms, y = synthetic(n_classes)
    model = check_matches_linear_svc(histograms, y, C=0.5)
    assert model.decision_function(histograms).shape == ((240,) if n_classes == 2 else (240, 4))


def test_decision_values_match_linear_svc_on_real_bof_histograms(flower_histograms):
    histograms, y = flower_histograms
    check_matches_linear_svc(histograms[:24], y[:24])  # daisy against rose
    check_matches_linear_svc(histograms, y)
    # the small problem fits liblinear's copies: "auto" runs it, with the same model
    model = ChunkedLinearSVC(feature_map=chi2_map).fit(histograms, y)
    newton = ChunkedLinearSVC(feature_map=chi2_map, solver="newton").fit(histograms, y)
    assert (model.solver_, newton.solver_) == ("liblinear", "newton")
    np.testing.assert_array_equal(model.predict(histograms), newton.predict(histograms))
    np.testing.assert_allclose(
        model.decision_function(histograms), newton.decision_function(histograms), atol=1e-2
    )
    with pytest.raises(ParameterError, match="must be one of"):
        ChunkedLinearSVC(solver="sgd").fit(histograms, y)


@pytest.mark.parametrize("held_rows", [0, 7])
def test_chunked_path_equals_the_in_memory_path(flower_histograms, monkeypatch, held_rows):
    """Rows beyond the budget (all of them, or all but 7) are mapped again, 5 at a time: the
    same model (float32 products summed in other groups: equal to 1e-5)."""
    histograms, y = flower_histograms
    in_memory = ChunkedLinearSVC(feature_map=chi2_map, solver="newton").fit(histograms, y)
    row_bytes = 4 * chi2_map(histograms[:1]).shape[1]
    monkeypatch.setattr(linear_svm, "CHUNK_BYTES", 5 * row_bytes)
    chunked = ChunkedLinearSVC(
        feature_map=chi2_map, memory_budget=held_rows * row_bytes, solver="newton"
    )
    chunked.fit(histograms, y)
    assert chunked.n_passes_ == in_memory.n_passes_
    np.testing.assert_allclose(chunked.coef_, in_memory.coef_, atol=1e-5)
    np.testing.assert_allclose(chunked.intercept_, in_memory.intercept_, atol=1e-5)
    np.testing.assert_allclose(
        chunked.decision_function(histograms), in_memory.decision_function(histograms), atol=1e-5
    )


def test_identity_map_trains_on_the_inputs_and_empty_input_scores_nothing():
    histograms, y = synthetic(3)
    model = ChunkedLinearSVC(solver="newton").fit(histograms.astype(np.float64), y)
    exact = LinearSVC(dual=False, tol=1e-10, max_iter=100_000).fit(histograms, y)
    np.testing.assert_allclose(
        model.decision_function(histograms), exact.decision_function(histograms), atol=1e-3
    )
    assert model.decision_function(histograms[:0]).shape == (0, 3)
    with pytest.raises(ValueError, match="2 classes"):
        ChunkedLinearSVC().fit(histograms, np.zeros(len(y)))
    with pytest.warns(ConvergenceWarning, match="did not converge in 1 iterations"):
        ChunkedLinearSVC(max_iter=1, solver="newton").fit(histograms, y)


def test_chi2_map_is_scikit_learns_additive_chi2_sampler(flower_histograms):
    histograms, _ = flower_histograms
    histograms = histograms.copy()
    histograms[0, :3] = 0.0
    expected = AdditiveChi2Sampler(sample_steps=2).fit_transform(histograms)
    np.testing.assert_allclose(chi2_map(histograms), expected, rtol=1e-6, atol=1e-7)
    assert chi2_map(histograms).dtype == np.float32


def test_row_store_reads_back_what_was_appended_and_rewritten(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.random((10, 7), dtype=np.float32)
    with RowStore(7, directory=tmp_path) as store:
        store.append(rows[:4])
        store.append(rows[4:].astype(np.float64))  # stored as float32
        assert store.shape == (10, 7) and len(store) == 10
        np.testing.assert_array_equal(store[:], rows)
        np.testing.assert_array_equal(store[3:8], rows[3:8])
        assert store[8:20].shape == (2, 7) and store[10:].shape == (0, 7)
        store.write(2, -rows[2:5])
        np.testing.assert_array_equal(
            store[1:6], np.concatenate([rows[1:2], -rows[2:5], rows[5:6]])
        )
        with pytest.raises(IndexError, match="ranges"):
            store[::2]
        with pytest.raises(IndexError, match="row 11"):
            store.write(11, rows[:1])
        assert list(tmp_path.iterdir()) == []  # an anonymous file: nothing to clean up


def test_a_store_of_inputs_trains_the_model_of_the_array(flower_histograms, monkeypatch):
    """From a RowStore, within a budget of 7 rows (the others mapped 5 at a time on 2 threads),
    the same model as from the array with every row held."""
    histograms, y = flower_histograms
    in_memory = ChunkedLinearSVC(feature_map=chi2_map, solver="newton").fit(histograms, y)
    row_bytes = 4 * chi2_map(histograms[:1]).shape[1]
    monkeypatch.setattr(linear_svm, "CHUNK_BYTES", 5 * row_bytes)
    with RowStore(histograms.shape[1]) as store:
        store.append(histograms)
        model = ChunkedLinearSVC(
            feature_map=chi2_map, memory_budget=7 * row_bytes, solver="newton", n_jobs=2
        ).fit(store, y)
    np.testing.assert_allclose(model.coef_, in_memory.coef_, atol=1e-5)
    np.testing.assert_allclose(
        model.decision_function(histograms), in_memory.decision_function(histograms), atol=1e-5
    )
