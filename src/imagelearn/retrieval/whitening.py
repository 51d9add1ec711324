"""Learning the PCA whitening of a collection's global descriptors: :class:`PCAWhitening`.

The fitted whitening is applied by :class:`~imagelearn.retrieval.global_descriptors.Whitening`
(NumPy only), which a search uses without importing scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from imagelearn.core.persistence import PersistentEstimator
from imagelearn.core.schema import NoState
from imagelearn.retrieval.global_descriptors import Whitening


class PCAWhitening(PersistentEstimator, TransformerMixin, BaseEstimator):
    """PCA whitening learned on a collection's descriptors (``x -> W (x - mean)``, then L2).

    Saved alone with :meth:`save` (``PCAWhitening.load(directory)``), or inside a retrieval
    index through :meth:`to_arrays` and :meth:`from_arrays`.

    Parameters
    ----------
    n_components : int
        Kept dimensions (at most ``min(n_samples - 1, d)`` are used).
    shrinkage : float
        Eigenvalues are raised to ``-shrinkage / 2`` instead of ``-1/2`` (0.5 damps the noise
        of the smallest components on small collections).

    Attributes
    ----------
    mean_ : ndarray of float32, shape (d,)
    projection_ : ndarray of float32, shape (n_kept, d)
    """

    bundle_kind = "pca-whitening"
    state_schema = NoState

    def __init__(self, n_components: int = 256, shrinkage: float = 0.5) -> None:
        self.n_components = n_components
        self.shrinkage = shrinkage

    def fit(self, descriptors: np.ndarray, y: None = None) -> PCAWhitening:
        """Learn the mean and whitening projection of ``descriptors`` (n, d)."""
        descriptors = np.asarray(descriptors, dtype=np.float64)
        self.mean_ = descriptors.mean(axis=0)
        centered = descriptors - self.mean_
        _, singular_values, components = np.linalg.svd(centered, full_matrices=False)
        keep = min(int(self.n_components), len(descriptors) - 1, descriptors.shape[1])
        variances = singular_values[:keep] ** 2 / max(1, len(descriptors) - 1)
        scale = np.maximum(variances, 1e-12) ** (-float(self.shrinkage) / 2)
        self.projection_ = (components[:keep] * scale[:, None]).astype(np.float32)
        self.mean_ = self.mean_.astype(np.float32)
        return self

    def whitening(self) -> Whitening:
        """The fitted whitening as a search applies it."""
        check_is_fitted(self, "projection_")
        return Whitening(self.mean_, self.projection_)

    def transform(self, descriptors: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, n_kept) float32, unit L2 norm."""
        return self.whitening().transform(descriptors)

    def _check_saveable(self) -> None:
        check_is_fitted(self, "projection_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"mean": self.mean_, "projection": self.projection_}

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.mean_ = np.asarray(arrays["mean"], dtype=np.float32)
        self.projection_ = np.asarray(arrays["projection"], dtype=np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The learned arrays named ``whitening.*``, to store inside a retrieval index."""
        return self.whitening().to_arrays()

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> PCAWhitening:
        """A fitted whitening from ``get_params()`` and the ``whitening.*`` arrays of ``arrays``.

        Raises
        ------
        KeyError
            No whitening among ``arrays``.
        """
        fitted = Whitening.from_arrays(arrays)
        if fitted is None:
            raise KeyError("whitening.projection")
        whitening = cls(**params)
        whitening._set_state({}, {"mean": fitted.mean, "projection": fitted.projection})
        return whitening
