"""What every visual vocabulary offers once fitted, and the checks and weights they share.

Nothing here imports scikit-learn: a fitted vocabulary searches with NumPy and FAISS alone
(:mod:`.words`), so a retrieval index assigns its queries' words without loading scikit-learn
and SciPy (2 s); the estimators of :mod:`.flat` and :mod:`.tree` add fitting and scikit-learn's
``BaseEstimator``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imagelearn.core.persistence import PersistentEstimator
from imagelearn.core.schema import NoState
from imagelearn.core.threads import faiss_threads


def check_descriptors(descriptors: Any, name: str = "descriptors") -> np.ndarray:
    """Return descriptors as a C-contiguous float32 array, or uint8 for packed binary ones.

    Raises
    ------
    ValueError
        When not 2-D, empty of columns, of another integer/boolean type, or not finite.
    """
    array = np.asarray(descriptors)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a 2-D array (n, d) with d > 0; got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{name} must be float (real-valued) or uint8 (packed binary bits); got {array.dtype}"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return array


def soft_weights(squared_distances: np.ndarray, bandwidth: float) -> np.ndarray:
    """Kernel-codebook weights (van Gemert et al., 2008) of each row's candidate words.

    Parameters
    ----------
    squared_distances : ndarray, shape (n, k)
        Squared distances (Hamming for binary) to ``k`` candidate words; ``inf`` = no candidate.
    bandwidth : float
        Kernel variance sigma^2, in squared-distance units.

    Returns
    -------
    ndarray of float32, shape (n, k): ``exp(-d^2 / (2 sigma^2))`` per row, rows summing to 1.
    """
    distances = np.asarray(squared_distances, dtype=np.float64)
    nearest = distances.min(axis=1, keepdims=True)
    weights = np.exp(-(distances - nearest) / (2.0 * max(bandwidth, 1e-12)))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def check_fitted(vocabulary: Any) -> None:
    """Raise scikit-learn's ``NotFittedError`` (imported only then) when ``vocabulary`` is not
    fitted (has no ``bandwidth_``)."""
    if not hasattr(vocabulary, "bandwidth_"):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(
            f"This {type(vocabulary).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this estimator."
        )


class Vocabulary(PersistentEstimator):
    """What every vocabulary offers once fitted; subclasses implement ``_search`` and the state
    (:mod:`.words`), the estimators ``fit``.

    Saved alone with :meth:`save` and read back with ``cls.load(directory)``; inside a larger
    bundle (a classifier, a retrieval index) through :meth:`to_arrays` and :meth:`from_arrays`.
    """

    state_schema = NoState

    def _search(self, descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(squared distances (n, k) float32, words (n, k) int64), nearest first."""
        raise NotImplementedError

    @property
    def n_words_(self) -> int:
        """Number of visual words."""
        raise NotImplementedError

    def max_words(self) -> int:
        """The most words this vocabulary can have once fitted, from its parameters alone."""
        raise NotImplementedError

    def _check_fitted_descriptors(self, descriptors: Any) -> np.ndarray:
        check_fitted(self)
        descriptors = check_descriptors(descriptors)
        if descriptors.dtype != self.dtype_ or descriptors.shape[1] != self.dimension_:
            kind = "binary (uint8)" if self.dtype_ == np.uint8 else "float"
            raise ValueError(
                f"descriptors are {descriptors.dtype} with {descriptors.shape[1]} columns but the "
                f"vocabulary was built on {kind} descriptors with {self.dimension_} columns"
            )
        return descriptors

    def assign(self, descriptors: np.ndarray) -> np.ndarray:
        """Word of each descriptor.

        Parameters
        ----------
        descriptors : ndarray, shape (n, d); float32, or uint8 packed bits for binary vocabularies

        Returns
        -------
        ndarray of int64, shape (n,), in ``[0, n_words_)``.
        """
        descriptors = self._check_fitted_descriptors(descriptors)
        with faiss_threads(self.n_jobs):
            return self._search(descriptors, 1)[1][:, 0]

    def assign_soft(self, descriptors: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest words of each descriptor with kernel-codebook weights.

        Weights are ``exp(-d^2 / (2 sigma^2))``, normalised per descriptor, with ``sigma^2``
        (``bandwidth_``) the mean squared distance of the training descriptors to their word.

        Returns
        -------
        words : ndarray of int64, shape (n, k)
        weights : ndarray of float32, shape (n, k); each row sums to 1
        """
        descriptors = self._check_fitted_descriptors(descriptors)
        if not 1 <= int(k) <= self.n_words_:
            raise ValueError(f"k must be between 1 and n_words_={self.n_words_}; got {k}")
        with faiss_threads(self.n_jobs):
            distances, words = self._search(descriptors, int(k))
        return words, soft_weights(distances, self.bandwidth_)

    def quantization_error(self, descriptors: np.ndarray) -> float:
        """Mean squared distance of descriptors to their word (mean Hamming distance if binary)."""
        descriptors = self._check_fitted_descriptors(descriptors)
        with faiss_threads(self.n_jobs):
            return float(self._search(descriptors, 1)[0].astype(np.float64).mean())

    def _check_saveable(self) -> None:
        check_fitted(self)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The learned state as named arrays, to store inside another bundle."""
        self._check_saveable()
        return self._get_state()[1]

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Vocabulary:
        """A fitted vocabulary from ``get_params()`` and :meth:`to_arrays` output."""
        vocabulary = cls(**params)
        vocabulary._set_state({}, arrays)
        return vocabulary
