"""Supervised pixel classification from sparse samples (ilastik-style)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from imagelearn.core.bundle import BundleError, load_bundle, save_bundle
from imagelearn.segment.features import PixelFeatures
from imagelearn.segment.models import classifier_kind
from imagelearn.segment.tiling import iter_tile_blocks, map_tiles

BUNDLE_KIND = "pixel-classifier"
#: Classes are stored as uint8 class maps (0 = none).
MAX_CLASSES = 255


def _as_list(value: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    return [value] if isinstance(value, np.ndarray) else list(value)


def _bands(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[2]


class PixelClassifier(BaseEstimator):
    """Classify every pixel of an image from a few labelled pixels.

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
    classes_ : int ndarray ``(K,)``
        Labels seen in the samples (values of the sample masks, 1..255).
    class_names_ : list of str
        Name of label ``k`` at index ``k - 1``.
    n_samples_per_class_ : dict of str to int
        Labelled pixels used for training.
    n_bands_ : int
        Bands of the training images; prediction needs the same.

    Examples
    --------
    >>> model = PixelClassifier().fit([image], [samples.mask], samples.class_names)  # doctest: +SKIP
    >>> labels = model.predict(new_image)  # (H, W) uint8 with values in classes_  # doctest: +SKIP
    """

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
        sample_masks: np.ndarray | Sequence[np.ndarray],
        class_names: Sequence[str] | None = None,
    ) -> PixelClassifier:
        """Learn from the labelled pixels of one or more images.

        Parameters
        ----------
        images : ndarray ``(H, W)`` / ``(H, W, C)``, or a list of them (same band count)
        sample_masks : int ndarray ``(H, W)`` per image; 0 = unlabelled, 1..K = class
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
        images, masks = _as_list(images), [np.asarray(mask) for mask in _as_list(sample_masks)]
        if len(images) != len(masks) or not images:
            raise ValueError(
                f"need one sample mask per image, got {len(images)} images and {len(masks)} masks"
            )
        bands = {_bands(image) for image in images}
        if len(bands) > 1:
            raise ValueError(f"training images have different band counts {sorted(bands)}")
        kind = classifier_kind(self.classifier)
        self.features_ = self.features if self.features is not None else PixelFeatures()
        features, labels = self._labelled_features(images, masks)
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
        self.n_bands_ = bands.pop()
        encoded = np.searchsorted(self.classes_, labels)
        _, self.arrays_ = kind.fit(
            features, encoded, dict(self.classifier_params or {}), self.random_state, self.n_jobs
        )
        self.predictor_ = kind.predictor(self.arrays_, self.n_jobs)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "predictor_"):
            raise ValueError("this PixelClassifier is not fitted yet; call fit() or load()")

    def _check_image(self, image: np.ndarray) -> None:
        self._check_fitted()
        if _bands(image) != self.n_bands_:
            raise ValueError(
                f"the model was trained on {self.n_bands_}-band images; this image has {_bands(image)}"
            )

    def _tile_proba(self, block: np.ndarray) -> np.ndarray:
        features = self.features_.transform(block)
        proba = self.predictor_.predict_proba(features.reshape(-1, features.shape[2]))
        return proba.reshape(*features.shape[:2], -1)

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
        """
        self._check_image(image)
        raster = image[..., None] if image.ndim == 2 else image
        return map_tiles(
            self._tile_proba,
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
        self._check_image(image)
        raster = image[..., None] if image.ndim == 2 else image
        labels = self.classes_.astype(np.uint8)

        def tile_labels(block: np.ndarray) -> np.ndarray:
            return labels[self._tile_proba(block).argmax(axis=2)]

        return map_tiles(
            tile_labels, raster, self.features_.margin, self.tile_size, out, "classifying tiles"
        )

    def save(
        self, directory: str | os.PathLike, extra_files: dict[str, bytes] | None = None
    ) -> Path:
        """Write the fitted model as a bundle directory (JSON + safetensors, no pickle)."""
        self._check_fitted()
        manifest = {
            "features": self.features_.get_params(),  # tuples are stored as JSON lists
            "classifier": self.classifier,
            "classifier_params": self.classifier_params or {},
            "max_samples_per_class": self.max_samples_per_class,
            "tile_size": self.tile_size,
            "random_state": self.random_state,
            "classes": self.classes_.tolist(),
            "class_names": self.class_names_,
            "n_samples_per_class": self.n_samples_per_class_,
            "n_bands": self.n_bands_,
        }
        return save_bundle(directory, BUNDLE_KIND, manifest, self.arrays_, extra_files)

    @classmethod
    def load(cls, directory: str | os.PathLike, n_jobs: int | None = -1) -> PixelClassifier:
        """Read a model written by :meth:`save`."""
        manifest, arrays = load_bundle(directory, BUNDLE_KIND)
        try:
            model = cls(
                features=PixelFeatures(
                    **{
                        key: tuple(value) if isinstance(value, list) else value
                        for key, value in manifest["features"].items()
                    }
                ),
                classifier=manifest["classifier"],
                classifier_params=manifest["classifier_params"],
                max_samples_per_class=manifest["max_samples_per_class"],
                tile_size=manifest["tile_size"],
                random_state=manifest["random_state"],
                n_jobs=n_jobs,
            )
            model.features_ = model.features
            model.classes_ = np.asarray(manifest["classes"], dtype=np.int64)
            model.class_names_ = list(manifest["class_names"])
            model.n_samples_per_class_ = dict(manifest["n_samples_per_class"])
            model.n_bands_ = int(manifest["n_bands"])
            model.arrays_ = arrays
            model.predictor_ = classifier_kind(model.classifier).predictor(arrays, n_jobs)
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(
                f"{directory}: incomplete or corrupt pixel-classifier bundle ({error})"
            ) from error
        return model
