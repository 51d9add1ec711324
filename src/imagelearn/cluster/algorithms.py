"""Grouping descriptor vectors: k-means, agglomerative (Ward) and HDBSCAN, with k chosen by silhouette.

Nothing here builds an n x n matrix for large n: k-means is the package's engine
(:mod:`imagelearn.core.kmeans`, FAISS searches), Ward runs on at most
``max_ward_points`` k-means micro-clusters when the collection is larger, silhouette is
measured on a sample, and HDBSCAN (whose exact spanning tree costs n^2 time) runs on at most
``max_hdbscan_points`` sampled vectors, the others taking the label of their nearest sampled
neighbor (the idea of the ``hdbscan`` library's ``approximate_predict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import HDBSCAN, AgglomerativeClustering
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from sklearn.utils.validation import check_is_fitted

from imagelearn.core import kmeans as engine
from imagelearn.core.persistence import PersistentEstimator
from imagelearn.core.schema import Fixed, StateSchema

METHODS = ("kmeans", "agglomerative", "hdbscan")
#: k-means of images: the best of ``KMEANS_N_INIT`` seedings, ``KMEANS_N_ITER`` iterations each.
KMEANS_N_ITER = 25
KMEANS_N_INIT = 3
#: Lloyd iterations of the micro-clusters that Ward groups above ``max_ward_points`` vectors.
MICRO_CLUSTER_N_ITER = 10


def _ward(vectors: np.ndarray, n_clusters: int, max_points: int, random_state: int) -> np.ndarray:
    """Ward clustering; above ``max_points`` vectors it clusters k-means micro-centers instead."""
    if len(vectors) <= max_points:
        return (
            AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
            .fit_predict(vectors)
            .astype(np.int64)
        )
    micro = engine.kmeans(vectors, max_points, MICRO_CLUSTER_N_ITER, random_state=random_state)
    center_labels = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(
        micro.centers
    )
    return center_labels[micro.labels].astype(np.int64)


def _hdbscan(
    vectors: np.ndarray, min_cluster_size: int, max_points: int, random_state: int
) -> np.ndarray:
    """HDBSCAN labels (-1 noise); above ``max_points`` vectors, fitted on a seeded sample.

    Unsampled vectors take the label of their nearest sampled vector (noise included).
    """
    if len(vectors) <= max_points:
        return (
            HDBSCAN(min_cluster_size=min_cluster_size, copy=True)
            .fit_predict(vectors)
            .astype(np.int64)
        )
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(len(vectors), max_points, replace=False))
    sample_labels = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(
        vectors[sample]
    )
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    nearest, _ = engine.assign(vectors, np.ascontiguousarray(vectors[sample]))
    return sample_labels[nearest].astype(np.int64)


def silhouette(
    vectors: np.ndarray, labels: np.ndarray, sample_size: int = 4000, random_state: int = 0
) -> float:
    """Mean silhouette on a random sample (memory sample_size^2), NaN when fewer than 2 clusters."""
    kept = labels >= 0
    if len(np.unique(labels[kept])) < 2:
        return float("nan")
    return float(
        silhouette_score(
            vectors[kept],
            labels[kept],
            sample_size=min(sample_size, int(kept.sum())),
            random_state=random_state,
        )
    )


class ImageClustererState(StateSchema):
    """The JSON state of a saved :class:`ImageClusterer`: the number of clusters found and,
    when ``n_clusters`` was chosen by silhouette, the ``(k, score)`` curve."""

    n_clusters: int = Field(ge=0)
    silhouette_curve: list[Fixed[float, 2]] | None = None


class ImageClusterer(PersistentEstimator, ClusterMixin, BaseEstimator):
    """Cluster image descriptors.

    Saved with :meth:`save` as an ``image-clusterer`` bundle and read back with
    ``ImageClusterer.load(directory)``; :meth:`predict` places new images in the clusters.

    Parameters
    ----------
    method : {"kmeans", "agglomerative", "hdbscan"}
    n_clusters : int or "auto"
        "auto" tries every number of clusters in ``n_clusters_range`` and keeps the best mean
        silhouette (ignored by HDBSCAN, which finds the number itself).
    n_clusters_range : (int, int)
        Inclusive range of numbers of clusters tried by "auto".
    pca_components : int or None
        Vectors are L2-normalized, then reduced by PCA to this many dimensions (None: no PCA).
    min_cluster_size : int
        HDBSCAN's smallest group; smaller groups are noise (label -1).
    max_ward_points : int
        Largest collection clustered by Ward directly (memory grows with its square).
    max_hdbscan_points : int
        Largest collection clustered by HDBSCAN directly (time grows with its square); above
        it, HDBSCAN runs on a sample this large and the rest join their nearest sampled image.
    random_state : int

    Attributes
    ----------
    labels_ : ndarray (n_images,) int64, -1 for HDBSCAN noise
    n_clusters_ : int
    centers_ : ndarray (n_clusters_, n_components) float32, in the reduced space
    distances_ : ndarray (n_images,) float32, distance of each vector to its cluster center
    silhouette_curve_ : dict n_clusters -> silhouette (only with n_clusters="auto")
    reduced_ : ndarray (n_images, n_components) float32, the vectors that were clustered
    pca_mean_, pca_components_ : ndarray float32 (n_features,), (n_components, n_features)
        The PCA that reduced them; None when the vectors were not reduced.
    """

    bundle_kind = "image-clusterer"
    state_schema = ImageClustererState

    def __init__(
        self,
        method: str = "kmeans",
        n_clusters: int | str = "auto",
        n_clusters_range: Sequence[int] = (2, 12),
        pca_components: int | None = 64,
        min_cluster_size: int = 5,
        max_ward_points: int = 5000,
        max_hdbscan_points: int = 20000,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.n_clusters = n_clusters
        self.n_clusters_range = n_clusters_range
        self.pca_components = pca_components
        self.min_cluster_size = min_cluster_size
        self.max_ward_points = max_ward_points
        self.max_hdbscan_points = max_hdbscan_points
        self.random_state = random_state

    def _reduce(self, vectors: np.ndarray) -> np.ndarray:
        """L2-normalize ``vectors`` and learn the PCA (``pca_mean_``, ``pca_components_``)."""
        vectors = _l2_normalized(vectors)
        components = self.pca_components
        if components is None or components >= min(vectors.shape):
            self.pca_mean_ = self.pca_components_ = None
            return np.ascontiguousarray(vectors)
        pca = PCA(n_components=components, random_state=self.random_state)
        reduced = pca.fit_transform(vectors).astype(np.float32)
        self.pca_mean_ = pca.mean_.astype(np.float32)
        self.pca_components_ = pca.components_.astype(np.float32)
        return reduced

    def _project(self, vectors: np.ndarray) -> np.ndarray:
        """New vectors in the space that was clustered (the fitted normalization and PCA)."""
        vectors = _l2_normalized(vectors)
        if self.pca_components_ is not None:
            vectors = (vectors - self.pca_mean_) @ self.pca_components_.T
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _cluster(self, vectors: np.ndarray, k: int) -> np.ndarray:
        if self.method == "kmeans":
            return engine.kmeans(
                vectors, k, KMEANS_N_ITER, n_init=KMEANS_N_INIT, random_state=self.random_state
            ).labels
        return _ward(vectors, k, self.max_ward_points, self.random_state)

    def fit(self, X: np.ndarray, y: None = None) -> ImageClusterer:
        """Cluster ``X`` of shape (n_images, n_features); returns self."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        X = np.asarray(X)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError(f"need at least 2 images to cluster, got {len(X)}")
        reduced = self._reduce(X)
        if self.method == "hdbscan":
            labels = _hdbscan(
                reduced, self.min_cluster_size, self.max_hdbscan_points, self.random_state
            )
        elif self.n_clusters == "auto":
            low, high = (
                int(self.n_clusters_range[0]),
                min(int(self.n_clusters_range[1]), len(X) - 1),
            )
            if high < low:
                raise ValueError(
                    f"{len(X)} images are too few to try n_clusters in "
                    f"{tuple(self.n_clusters_range)}"
                )
            candidates = {k: self._cluster(reduced, k) for k in range(max(2, low), high + 1)}
            self.silhouette_curve_ = {
                k: silhouette(reduced, labels, random_state=self.random_state)
                for k, labels in candidates.items()
            }
            labels = candidates[
                max(
                    self.silhouette_curve_,
                    key=lambda k: np.nan_to_num(self.silhouette_curve_[k], nan=-1),
                )
            ]
        else:
            k = int(self.n_clusters)
            if not 1 <= k <= len(X):
                raise ValueError(
                    f"n_clusters={k} must be between 1 and the number of images ({len(X)})"
                )
            labels = self._cluster(reduced, k)
        self._set_result(reduced, labels)
        return self

    def _set_result(self, reduced: np.ndarray, labels: np.ndarray) -> None:
        """Renumber clusters by decreasing size and compute centers and distances."""
        found = [label for label in np.unique(labels) if label >= 0]
        order = sorted(found, key=lambda label: -np.sum(labels == label))
        renumber = {old: new for new, old in enumerate(order)}
        self.labels_ = np.array([renumber.get(label, -1) for label in labels], dtype=np.int64)
        self.n_clusters_ = len(order)
        self.centers_ = (
            np.stack([reduced[self.labels_ == c].mean(axis=0) for c in range(self.n_clusters_)])
            if order
            else np.zeros((0, reduced.shape[1]), np.float32)
        )
        self.distances_ = np.full(len(reduced), np.nan, dtype=np.float32)
        assigned = self.labels_ >= 0
        self.distances_[assigned] = np.linalg.norm(
            reduced[assigned] - self.centers_[self.labels_[assigned]], axis=1
        )
        self.reduced_ = reduced

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The cluster of the nearest center for each row of ``X`` (n_images, n_features).

        New vectors are normalized and projected as the training ones were. HDBSCAN's noise
        is not predicted: every vector joins its nearest cluster (-1 only when there is none).

        Returns
        -------
        ndarray of int64, shape (n_images,)
        """
        check_is_fitted(self, "centers_")
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_images, n_features); got shape {X.shape}")
        if self.n_clusters_ == 0:
            return np.full(len(X), -1, dtype=np.int64)
        nearest, _ = engine.assign(self._project(X), np.ascontiguousarray(self.centers_))
        return nearest.astype(np.int64)

    # ----------------------------------------------------------------------------- persistence

    def _check_saveable(self) -> None:
        check_is_fitted(self, "labels_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The number of clusters and silhouette curve as JSON; labels, centers, distances,
        clustered vectors and PCA as arrays."""
        state: dict[str, Any] = {"n_clusters": self.n_clusters_}
        if hasattr(self, "silhouette_curve_"):
            state["silhouette_curve"] = [[k, value] for k, value in self.silhouette_curve_.items()]
        arrays = {
            "labels": self.labels_,
            "centers": self.centers_,
            "distances": self.distances_,
            "reduced": self.reduced_,
        }
        if self.pca_components_ is not None:
            arrays |= {"pca_mean": self.pca_mean_, "pca_components": self.pca_components_}
        return state, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.labels_ = np.asarray(arrays["labels"], dtype=np.int64)
        self.centers_ = np.asarray(arrays["centers"], dtype=np.float32)
        self.distances_ = np.asarray(arrays["distances"], dtype=np.float32)
        self.reduced_ = np.asarray(arrays["reduced"], dtype=np.float32)
        self.n_clusters_ = int(state["n_clusters"])
        if len(self.centers_) != self.n_clusters_:
            raise ValueError(f"{len(self.centers_)} centers for {self.n_clusters_} clusters")
        self.pca_mean_, self.pca_components_ = (
            (arrays["pca_mean"], arrays["pca_components"])
            if "pca_components" in arrays
            else (None, None)
        )
        if state.get("silhouette_curve") is not None:
            self.silhouette_curve_ = {
                int(k): float(value) for k, value in state["silhouette_curve"]
            }


def _l2_normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` scaled to unit L2 norm, float32 (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
