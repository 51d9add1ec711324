"""Unsupervised pixel classification: k-means or ISODATA on per-pixel features."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from imagelearn.core import kmeans as engine
from imagelearn.core.persistence import PersistentEstimator
from imagelearn.core.schema import NoState
from imagelearn.segment.features import PixelFeatures
from imagelearn.segment.tiling import iter_tile_blocks, map_tiles


def _nearest(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest center for each row of ``points`` ``(N, F)`` (exact search)."""
    return engine.assign(
        np.ascontiguousarray(points, dtype=np.float32),
        np.ascontiguousarray(centers, dtype=np.float32),
    )[0]


#: Seedings of pixel k-means; the one with the smallest error is kept.
KMEANS_N_INIT = 3
#: Pixel k-means stops when the centers move less than this (scikit-learn's ``tol``).
KMEANS_TOL = 1e-4


def _kmeans(points: np.ndarray, clusterer: PixelClusterer, rng: np.random.Generator) -> np.ndarray:
    """k-means (:func:`imagelearn.core.kmeans.kmeans`), best of ``KMEANS_N_INIT`` seedings."""
    return engine.kmeans(
        points,
        clusterer.n_clusters,
        clusterer.n_iter,
        n_init=KMEANS_N_INIT,
        tol=KMEANS_TOL,
        random_state=int(rng.integers(2**31)),
    ).centers


def _isodata(points: np.ndarray, clusterer: PixelClusterer, rng: np.random.Generator) -> np.ndarray:
    """ISODATA (Ball and Hall 1965): k-means steps that also drop, split and merge clusters.

    Clusters smaller than ``min_cluster_fraction`` of the points are dropped; while there
    are fewer than ``2 n_clusters`` clusters, a cluster whose spread along some feature exceeds
    ``split_std`` is split in two along it; while there are more than ``n_clusters / 2``, the closest
    pair of centers nearer than ``merge_distance`` is merged. Features are standardized, so
    both thresholds are in units of the features' overall standard deviation.
    """
    centers = engine.kmeanspp_seeds(points, clusterer.n_clusters, int(rng.integers(2**31)))
    min_size = max(1, int(clusterer.min_cluster_fraction * len(points)))
    max_clusters, min_clusters = 2 * clusterer.n_clusters, max(2, clusterer.n_clusters // 2)
    for iteration in range(clusterer.n_iter):
        labels = _nearest(points, centers)
        sizes = np.bincount(labels, minlength=len(centers))
        kept = (
            np.flatnonzero(sizes >= min_size)
            if np.sum(sizes >= min_size) >= min_clusters
            else np.argsort(-sizes)[:min_clusters]
        )
        labels = _nearest(points, centers[kept])
        members = [points[labels == index] for index in range(len(kept))]
        updated = np.stack([group.mean(axis=0) for group in members])
        if iteration % 2 == 0 and len(updated) < max_clusters:
            split = []
            for center, group in zip(updated, members, strict=True):
                spread = group.std(axis=0)
                axis = int(spread.argmax())
                if (
                    spread[axis] > clusterer.split_std
                    and len(group) >= 2 * min_size
                    and len(updated) + len(split) < max_clusters
                ):
                    offset = np.zeros_like(center)
                    offset[axis] = spread[axis]
                    split += [center - offset, center + offset]
                else:
                    split.append(center)
            updated = np.stack(split)
        elif len(updated) > min_clusters:
            distances = np.linalg.norm(updated[:, None] - updated[None, :], axis=2) + np.diag(
                np.full(len(updated), np.inf)
            )
            first, second = np.unravel_index(distances.argmin(), distances.shape)
            if distances[first, second] < clusterer.merge_distance:
                weights = np.array([len(members[first]), len(members[second])], dtype=np.float64)
                merged = (
                    weights[0] * updated[first] + weights[1] * updated[second]
                ) / weights.sum()
                updated = np.vstack([np.delete(updated, [first, second], axis=0), merged])
        if updated.shape == centers.shape and np.allclose(updated, centers, atol=1e-4):
            break
        centers = updated
    return centers


#: Clustering methods: ``(standardized float32 points (N, F), clusterer, rng) -> centers (k, F)``.
METHODS: dict[str, Callable[[np.ndarray, PixelClusterer, np.random.Generator], np.ndarray]] = {
    "kmeans": _kmeans,
    "isodata": _isodata,
}


class PixelClusterer(PersistentEstimator, BaseEstimator):
    """Group the pixels of an image into clusters of similar color (and texture).

    Saved with :meth:`save` as a ``pixel-clusterer`` bundle and read back with
    ``PixelClusterer.load(directory)``.

    Parameters
    ----------
    n_clusters : int
        Number of clusters (for ISODATA the target; it ends between ``n_clusters / 2`` and
        ``2 n_clusters``).
    method : {"kmeans", "isodata"}
    features : PixelFeatures, optional
        Default: color smoothed at sigma 1 in Lab, no texture.
    sample_size : int
        Pixels drawn at random (across all tiles) to find the centers.
    n_iter : int
        Most k-means (ISODATA) iterations.
    min_cluster_fraction, split_std, merge_distance : float
        ISODATA's thresholds (see :func:`_isodata`).
    tile_size : int or None
    random_state : int

    Attributes
    ----------
    features_ : PixelFeatures
        A copy of ``features`` (or the default), used for fitting and prediction.
    cluster_centers_ : float ``(n_clusters_, F)``, in standardized feature units,
        ordered by their first feature (for Lab: from dark to light)
    mean_, scale_ : float ``(F,)``, the standardization
    n_clusters_ : int
    """

    bundle_kind = "pixel-clusterer"
    state_schema = NoState

    def __init__(
        self,
        n_clusters: int = 5,
        method: str = "kmeans",
        features: PixelFeatures | None = None,
        sample_size: int = 200_000,
        n_iter: int = 100,
        min_cluster_fraction: float = 0.01,
        split_std: float = 0.8,
        merge_distance: float = 0.8,
        tile_size: int | None = 1024,
        random_state: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.method = method
        self.features = features
        self.sample_size = sample_size
        self.n_iter = n_iter
        self.min_cluster_fraction = min_cluster_fraction
        self.split_std = split_std
        self.merge_distance = merge_distance
        self.tile_size = tile_size
        self.random_state = random_state

    def fit(self, image: np.ndarray, y: None = None) -> PixelClusterer:
        """Find the cluster centers from a random sample of the image's pixels.

        Parameters
        ----------
        image : array-like ``(H, W)`` or ``(H, W, C)``

        Returns
        -------
        self
        """
        if self.method not in METHODS:
            raise ValueError(
                f"unknown clustering method {self.method!r}; choose from {sorted(METHODS)}"
            )
        if not 2 <= self.n_clusters <= 127:
            raise ValueError(f"n_clusters must be between 2 and 127, got {self.n_clusters}")
        raster = image[..., None] if image.ndim == 2 else image
        height, width = raster.shape[:2]
        if height * width < self.n_clusters:
            raise ValueError(
                f"a {width}x{height} image has fewer pixels than n_clusters={self.n_clusters}"
            )
        self.features_ = self._features()
        rng = np.random.default_rng(self.random_state)
        fraction = min(1.0, self.sample_size / (height * width))
        drawn = []
        for tile, block in iter_tile_blocks(
            raster, self.features_.margin, self.tile_size, "sampling pixels"
        ):
            features = self.features_.transform(block)[tile.crop]
            features = features.reshape(-1, features.shape[2])
            drawn.append(
                features[rng.random(len(features)) < fraction] if fraction < 1 else features
            )
        points = np.concatenate(drawn).astype(np.float64)
        self.mean_ = points.mean(axis=0)
        self.scale_ = np.where(points.std(axis=0) > 0, points.std(axis=0), 1.0)
        standardized = (points - self.mean_) / self.scale_
        if len(np.unique(standardized, axis=0)) < self.n_clusters:
            raise ValueError(
                f"the image has fewer than n_clusters={self.n_clusters} distinct pixel features "
                "(a single-color image?)"
            )
        centers = METHODS[self.method](standardized.astype(np.float32), self, rng)
        self.cluster_centers_ = centers[np.argsort(centers[:, 0], kind="stable")]
        self.n_clusters_ = len(self.cluster_centers_)
        return self

    def predict(self, image: np.ndarray, out: str | os.PathLike | None = None) -> np.ndarray:
        """Cluster of every pixel, ``1..n_clusters_`` as uint8 ``(H, W)`` (tiled)."""
        check_is_fitted(self, "cluster_centers_")
        raster = image[..., None] if image.ndim == 2 else image

        def tile_clusters(block: np.ndarray) -> np.ndarray:
            features = self.features_.transform(block)
            standardized = (features.reshape(-1, features.shape[2]) - self.mean_) / self.scale_
            return (
                (_nearest(standardized, self.cluster_centers_) + 1)
                .astype(np.uint8)
                .reshape(features.shape[:2])
            )

        return map_tiles(
            tile_clusters, raster, self.features_.margin, self.tile_size, out, "clustering tiles"
        )

    def fit_predict(self, image: np.ndarray, out: str | os.PathLike | None = None) -> np.ndarray:
        """:meth:`fit` then :meth:`predict` on the same image."""
        return self.fit(image).predict(image, out)

    def _features(self) -> PixelFeatures:
        return (
            clone(self.features)
            if self.features is not None
            else PixelFeatures(sigmas=(1.0,), texture=False)
        )

    # ----------------------------------------------------------------------------- persistence

    def _check_saveable(self) -> None:
        check_is_fitted(self, "cluster_centers_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"centers": self.cluster_centers_, "mean": self.mean_, "scale": self.scale_}
        return {}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.features_ = self._features()
        self.cluster_centers_ = arrays["centers"]
        self.mean_, self.scale_ = arrays["mean"], arrays["scale"]
        self.n_clusters_ = len(self.cluster_centers_)
