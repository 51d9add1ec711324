"""Grouping descriptor vectors: k-means, agglomerative (Ward) and HDBSCAN, with k chosen by silhouette.

Nothing here builds an n x n matrix for large n: k-means is the package's engine
(:mod:`imagelearn.core.kmeans`, FAISS searches), Ward runs on at most
``max_ward_points`` k-means micro-clusters when the collection is larger, silhouette is
measured on a sample, and HDBSCAN (whose exact spanning tree costs n^2 time) runs on at most
``max_hdbscan_points`` sampled vectors, the others taking the label of their nearest sampled
neighbour (the idea of the ``hdbscan`` library's ``approximate_predict``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import HDBSCAN, AgglomerativeClustering
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

from imagelearn.core import kmeans as engine

METHODS = ("kmeans", "agglomerative", "hdbscan")
#: k-means of images: the best of ``KMEANS_N_INIT`` seedings, ``KMEANS_N_ITER`` iterations each.
KMEANS_N_ITER = 25
KMEANS_N_INIT = 3
#: Lloyd iterations of the micro-clusters that Ward groups above ``max_ward_points`` vectors.
MICRO_CLUSTER_N_ITER = 10


def _ward(vectors: np.ndarray, n_clusters: int, max_points: int, random_state: int) -> np.ndarray:
    """Ward clustering; above ``max_points`` vectors it clusters k-means micro-centres instead."""
    if len(vectors) <= max_points:
        return (
            AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
            .fit_predict(vectors)
            .astype(np.int64)
        )
    micro = engine.kmeans(vectors, max_points, MICRO_CLUSTER_N_ITER, random_state=random_state)
    centre_labels = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(
        micro.centers
    )
    return centre_labels[micro.labels].astype(np.int64)


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


class ImageClusterer(ClusterMixin, BaseEstimator):
    """Cluster image descriptors.

    Parameters
    ----------
    method : {"kmeans", "agglomerative", "hdbscan"}
    n_clusters : int or "auto"
        "auto" tries every k in ``k_range`` and keeps the best mean silhouette
        (ignored by HDBSCAN, which finds the number itself).
    k_range : (int, int)
        Inclusive range of k tried by "auto".
    pca_components : int or None
        Vectors are L2-normalised, then reduced by PCA to this many dimensions (None: no PCA).
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
    distances_ : ndarray (n_images,) float32, distance of each vector to its cluster centre
    silhouette_curve_ : dict k -> silhouette (only with n_clusters="auto")
    reduced_ : ndarray (n_images, n_components) float32, the vectors that were clustered
    """

    def __init__(
        self,
        method: str = "kmeans",
        n_clusters: int | str = "auto",
        k_range: Sequence[int] = (2, 12),
        pca_components: int | None = 64,
        min_cluster_size: int = 5,
        max_ward_points: int = 5000,
        max_hdbscan_points: int = 20000,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.n_clusters = n_clusters
        self.k_range = k_range
        self.pca_components = pca_components
        self.min_cluster_size = min_cluster_size
        self.max_ward_points = max_ward_points
        self.max_hdbscan_points = max_hdbscan_points
        self.random_state = random_state

    def _reduce(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        components = self.pca_components
        if components is None or components >= min(vectors.shape):
            return np.ascontiguousarray(vectors)
        return (
            PCA(n_components=components, random_state=self.random_state)
            .fit_transform(vectors)
            .astype(np.float32)
        )

    def _cluster(self, vectors: np.ndarray, k: int) -> np.ndarray:
        if self.method == "kmeans":
            return engine.kmeans(
                vectors, k, KMEANS_N_ITER, n_init=KMEANS_N_INIT, random_state=self.random_state
            ).labels
        return _ward(vectors, k, self.max_ward_points, self.random_state)

    def fit(self, X: np.ndarray, y: None = None) -> ImageClusterer:
        """Cluster ``X`` of shape (n_images, n_features)."""
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
            low, high = int(self.k_range[0]), min(int(self.k_range[1]), len(X) - 1)
            if high < low:
                raise ValueError(f"{len(X)} images are too few to try k in {tuple(self.k_range)}")
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
        """Renumber clusters by decreasing size and compute centres and distances."""
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
