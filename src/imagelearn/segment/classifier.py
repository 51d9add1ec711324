"""Supervised pixel classification from sparse samples (ilastik-style)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from imagelearn.core.persistence import PersistentEstimator
from imagelearn.core.schema import StateSchema
from imagelearn.segment.features import PixelFeatures
from imagelearn.segment.models import Predictor, classifier_kind
from imagelearn.segment.tiling import iter_tile_blocks, map_tiles

#: Classes are stored as uint8 class maps (0 = none).
MAX_CLASSES = 255


def _as_list(value: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    return [value] if isinstance(value, np.ndarray) else list(value)


def _bands(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[2]


class PixelClassifierState(StateSchema):
    """The JSON state of a saved :class:`PixelClassifier` (the classifier's arrays aside)."""

    classes: list[int] = Field(min_length=2, max_length=MAX_CLASSES)
    class_names: list[str] = Field(min_length=2, max_length=MAX_CLASSES)
    n_samples_per_class: dict[str, int]
    n_bands: int = Field(ge=1, le=64)


class PixelClassifier(PersistentEstimator, BaseEstimator):
    """Classify every pixel of an image from a few labelled pixels.

    Saved with :meth:`save` as a ``pixel-classifier`` bundle and read back with
    :meth:`load`; ``n_jobs`` is not saved (set it with ``set_params`` after loading).

    Parameters
    ----------
    features : PixelFeatures, optional
        Per-pixel features (default ``PixelFeatures()``: sigmas 1, 2, 4, 8, Lab, texture).
    classifier : str
        Key of :data:`imagelearn.segment.models.CLASSIFIERS`.
    classifier_params : dict, optional
        Keyword arguments for the scikit-learn estimator (``n_estimators``, ``C``...).
    max_samples_per_class : int or None
        Train on at most this many labelled pixels per class (drawn at random).
    tile_size : int or None
        Side of the tiles prediction streams through (None: whole image at once).
    random_state : int
    n_jobs : int or None
        Threads for random-forest training and prediction (-1: all cores).

    Attributes
    ----------
    features_ : PixelFeatures
        A copy of ``features`` (or the default), used for training and prediction.
    classes_ : int ndarray ``(K,)``
        Labels seen in the samples (values of the sample masks, 1..255).
    class_names_ : list of str
        Name of label ``k`` at index ``k - 1``.
    n_samples_per_class_ : dict of str to int
        Labelled pixels used for training.
    n_bands_ : int
        Bands of the training images; prediction needs the same.
    arrays_ : dict of str to ndarray
        The trained classifier as plain arrays (see :mod:`imagelearn.segment.models`).

    Examples
    --------
    >>> model = PixelClassifier().fit([image], [samples.mask], samples.class_names)  # doctest: +SKIP
    >>> labels = model.predict(new_image)  # (H, W) uint8 with values in classes_  # doctest: +SKIP
    """

    bundle_kind = "pixel-classifier"
    state_schema = PixelClassifierState

    def __init__(
        self,
        features: PixelFeatures | None = None,
        classifier: str = "random_forest",
        classifier_params: dict | None = None,
        max_samples_per_class: int | None = 50_000,
        tile_size: int | None = 1024,
        random_state: int = 0,
        n_jobs: int | None = -1,
    ) -> None:
        self.features = features
        self.classifier = classifier
        self.classifier_params = classifier_params
        self.max_samples_per_class = max_samples_per_class
        self.tile_size = tile_size
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _labelled_features(
        self, images: list[np.ndarray], masks: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        rows, labels = [], []
        margin = self.features_.margin
        for number, (image, mask) in enumerate(zip(images, masks, strict=True)):
            if mask.shape != image.shape[:2]:
                raise ValueError(
                    f"sample mask {number} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                    f"{image.shape[1]}x{image.shape[0]}"
                )
            for tile, block in iter_tile_blocks(
                image, margin, self.tile_size, "features of samples"
            ):
                tile_mask = np.asarray(mask[tile.core])
                if not tile_mask.any():
                    continue
                features = self.features_.transform(block)[tile.crop]
                rows.append(features[tile_mask > 0])
                labels.append(tile_mask[tile_mask > 0])
        if not labels:
            raise ValueError("the samples hold no labelled pixels (all 0 = unlabelled)")
        return np.concatenate(rows), np.concatenate(labels)

    def _subsample(self, labels: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.random_state)
        keep = []
        for label in np.unique(labels):
            where = np.flatnonzero(labels == label)
            if self.max_samples_per_class is not None and where.size > self.max_samples_per_class:
                where = np.sort(rng.choice(where, self.max_samples_per_class, replace=False))
            keep.append(where)
        return np.concatenate(keep)

    def fit(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        masks: np.ndarray | Sequence[np.ndarray],
        class_names: Sequence[str] | None = None,
    ) -> PixelClassifier:
        """Learn from the labelled pixels of one or more images.

        Parameters
        ----------
        images : ndarray ``(H, W)`` / ``(H, W, C)``, or a list of them (same band count)
        masks : int ndarray ``(H, W)`` per image; 0 = unlabelled, 1..K = class
        class_names : list of str, optional
            Name of label ``k`` at index ``k - 1`` (default ``class1``...).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            No labelled pixels, a single class, mismatched sizes or band counts.
        """
        images, masks = _as_list(images), [np.asarray(mask) for mask in _as_list(masks)]
        if len(images) != len(masks) or not images:
            raise ValueError(
                f"need one sample mask per image, got {len(images)} images and {len(masks)} masks"
            )
        bands = {_bands(image) for image in images}
        if len(bands) > 1:
            raise ValueError(f"training images have different band counts {sorted(bands)}")
        classifier_kind(self.classifier)  # an unknown classifier fails before the features
        self.features_ = self._features()
        features, labels = self._labelled_features(images, masks)
        return self.fit_features(features, labels, class_names, bands.pop())

    def fit_features(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        class_names: Sequence[str] | None = None,
        n_bands: int = 3,
    ) -> PixelClassifier:
        """Learn from the features of labelled pixels already computed by ``features_``.

        What :meth:`fit` does once it has the features of the labelled pixels; a caller that
        keeps an image's feature stack (the web studio, retraining after each stroke) calls it
        with ``stack[mask > 0]`` and ``mask[mask > 0]``.

        Parameters
        ----------
        features : float32 ndarray ``(N, F)``
            Per-pixel features, as ``PixelFeatures.transform`` of the training image(s)
            computes them with this model's ``features`` (or the default).
        labels : int ndarray ``(N,)``
            Class of each row, 1..K.
        class_names : list of str, optional
        n_bands : int
            Bands of the training image(s); prediction needs the same.

        Returns
        -------
        self
        """
        kind = classifier_kind(self.classifier)
        self.features_ = self._features()
        features, labels = np.asarray(features), np.asarray(labels)
        if features.ndim != 2 or labels.shape != (features.shape[0],) or not labels.size:
            raise ValueError(
                f"need (N, F) features and N labels, got {features.shape} and {labels.shape}"
            )
        self.classes_ = np.unique(labels).astype(np.int64)
        if self.classes_[0] < 0 or self.classes_[-1] > MAX_CLASSES:
            raise ValueError(
                f"sample labels must be 0 (unlabelled) or 1..{MAX_CLASSES}, found {self.classes_.tolist()}"
            )
        names = list(class_names or [])
        names += [f"class{label}" for label in range(len(names) + 1, int(self.classes_[-1]) + 1)]
        self.class_names_ = names
        if len(self.classes_) < 2:
            raise ValueError(
                f"the samples hold one class only ({names[self.classes_[0] - 1]!r}); label pixels of at least two classes"
            )
        keep = self._subsample(labels)
        features, labels = features[keep], labels[keep]
        self.n_samples_per_class_ = {
            names[label - 1]: int(np.sum(labels == label)) for label in self.classes_
        }
        self.n_bands_ = int(n_bands)
        encoded = np.searchsorted(self.classes_, labels)
        _, self.arrays_ = kind.fit(
            features, encoded, dict(self.classifier_params or {}), self.random_state, self.n_jobs
        )
        return self

    def _features(self) -> PixelFeatures:
        return clone(self.features) if self.features is not None else PixelFeatures()

    def _predictor(self, image: np.ndarray) -> Predictor:
        """The trained classifier for ``image`` (checked), with the current ``n_jobs``."""
        check_is_fitted(self, "arrays_")
        if _bands(image) != self.n_bands_:
            raise ValueError(
                f"the model was trained on {self.n_bands_}-band images; this image has {_bands(image)}"
            )
        return classifier_kind(self.classifier).predictor(self.arrays_, self.n_jobs)

    def _tile_proba(self, predictor: Predictor, block: np.ndarray) -> np.ndarray:
        return self._feature_proba(predictor, self.features_.transform(block))

    @staticmethod
    def _feature_proba(predictor: Predictor, features: np.ndarray) -> np.ndarray:
        proba = predictor.predict_proba(features.reshape(-1, features.shape[-1]))
        return proba.reshape(*features.shape[:-1], -1)

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities from features already computed by ``features_``.

        Parameters
        ----------
        features : float32 ndarray ``(..., F)`` (a whole stack ``(H, W, F)``, a decimated
            one, or rows ``(N, F)``)

        Returns
        -------
        float32 ``(..., K)``, columns in the order of ``classes_``.
        """
        check_is_fitted(self, "arrays_")
        predictor = classifier_kind(self.classifier).predictor(self.arrays_, self.n_jobs)
        return self._feature_proba(predictor, np.asarray(features))

    def predict_proba(self, image: np.ndarray, out: str | os.PathLike | None = None) -> np.ndarray:
        """Class probabilities of every pixel.

        Parameters
        ----------
        image : array-like ``(H, W)`` or ``(H, W, C)``; a memory map is read tile by tile
        out : path-like, optional
            Memory-mapped ``.npy`` file to write into (keeps memory bounded).

        Returns
        -------
        float32 ``(H, W, K)``, columns in the order of ``classes_``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before :meth:`fit` (or :meth:`load`).
        """
        predictor = self._predictor(image)
        raster = image[..., None] if image.ndim == 2 else image
        return map_tiles(
            lambda block: self._tile_proba(predictor, block),
            raster,
            self.features_.margin,
            self.tile_size,
            out,
            "classifying tiles",
        )

    def predict(self, image: np.ndarray, out: str | os.PathLike | None = None) -> np.ndarray:
        """The most probable class of every pixel.

        Parameters
        ----------
        image : array-like ``(H, W)`` or ``(H, W, C)``
        out : path-like, optional
            Memory-mapped ``.npy`` file to write into.

        Returns
        -------
        uint8 ``(H, W)`` with values in ``classes_``.
        """
        predictor = self._predictor(image)
        raster = image[..., None] if image.ndim == 2 else image
        labels = self.classes_.astype(np.uint8)

        def tile_labels(block: np.ndarray) -> np.ndarray:
            return labels[self._tile_proba(predictor, block).argmax(axis=2)]

        return map_tiles(
            tile_labels, raster, self.features_.margin, self.tile_size, out, "classifying tiles"
        )

    # ------------------------------------------------------------ persistence

    def _check_saveable(self) -> None:
        check_is_fitted(self, "arrays_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = {
            "classes": self.classes_.tolist(),
            "class_names": self.class_names_,
            "n_samples_per_class": self.n_samples_per_class_,
            "n_bands": self.n_bands_,
        }
        return state, self.arrays_

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        # A random forest is rebuilt from its arrays here: a bundle missing some fails on load.
        classifier_kind(self.classifier).predictor(arrays, None)
        self.features_ = self._features()
        self.classes_ = np.asarray(state["classes"], dtype=np.int64)
        self.class_names_ = list(state["class_names"])
        self.n_samples_per_class_ = dict(state["n_samples_per_class"])
        self.n_bands_ = int(state["n_bands"])
        self.arrays_ = arrays
