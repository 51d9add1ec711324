"""Agreement between clusters and known labels: ARI, NMI, purity."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def purity(labels_true: np.ndarray, labels_cluster: np.ndarray) -> float:
    """Share of images whose cluster's majority class is their own class."""
    table = contingency_matrix(labels_true, labels_cluster)
    return float(table.max(axis=0).sum() / table.sum())


def clustering_agreement(labels_true: np.ndarray, labels_cluster: np.ndarray) -> dict[str, float]:
    """``ari``, ``nmi`` and ``purity`` of a clustering against true labels (noise -1 counts as a cluster)."""
    return {
        "ari": float(adjusted_rand_score(labels_true, labels_cluster)),
        "nmi": float(normalized_mutual_info_score(labels_true, labels_cluster)),
        "purity": purity(labels_true, labels_cluster),
    }
