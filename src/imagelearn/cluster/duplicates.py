"""Near-duplicate groups: images whose descriptors are almost identical (cosine similarity)."""

from __future__ import annotations

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def near_duplicate_groups(vectors: np.ndarray, threshold: float = 0.95) -> list[np.ndarray]:
    """Groups (arrays of row indices, largest first) linked by cosine similarity >= ``threshold``.

    Uses a FAISS range search, so memory grows with the number of close pairs, not n^2.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) < 2:
        return []
    normalised = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(normalised.shape[1])
    index.add(normalised)
    limits, _, neighbours = index.range_search(normalised, float(threshold))
    rows = np.repeat(np.arange(len(vectors)), np.diff(limits.astype(np.int64)))
    return linked_groups(len(vectors), rows, neighbours)


def linked_groups(n: int, rows: np.ndarray, columns: np.ndarray) -> list[np.ndarray]:
    """The groups of ``n`` items that the pairs ``(rows[i], columns[i])`` link, directly or
    through others (connected components): arrays of indices ascending, largest first;
    items linked to no other are left out."""
    rows, columns = np.asarray(rows, np.int64), np.asarray(columns, np.int64)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(n, n))
    n_groups, membership = connected_components(graph, directed=False)
    sizes = np.bincount(membership, minlength=n_groups)
    groups = [np.flatnonzero(membership == group) for group in np.flatnonzero(sizes > 1)]
    return sorted(groups, key=len, reverse=True)
