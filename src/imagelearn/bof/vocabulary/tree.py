"""The vocabulary tree: hierarchical k-means (Nister & Stewenius, CVPR 2006).

``branching`` clusters per node, ``depth`` levels, up to ``branching ** depth`` leaf words; a
descriptor is assigned by descending the tree, ``branching * depth`` distances instead of one
per word. Every node is clustered by :mod:`imagelearn.core.kmeans` (k-majority for binary
descriptors).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from imagelearn.bof.vocabulary.base import Vocabulary, check_descriptors
from imagelearn.core.errors import ParameterError
from imagelearn.core.kmeans import check_init, chunks, cluster_centers, seed_from
from imagelearn.core.persistence import persistable
from imagelearn.core.progress import progress_bar
from imagelearn.core.threads import faiss_threads, single_threaded_blas

#: Bytes of gathered child centres the tree descends through at once.
TREE_CHUNK_BYTES = 64 * 2**20
#: The tree compares descriptors node by node (one matrix product each) when nodes hold at
#: least this many of them on average, else child by child.
TREE_GROUP_MIN_ROWS = 16


def _pairwise_squared(descriptors: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(n, m) squared distances (Hamming for packed bits) between rows and ``centers`` (m, d)."""
    if descriptors.dtype == np.uint8:
        return (
            np.bitwise_count(descriptors[:, None, :] ^ centers[None])
            .sum(axis=2, dtype=np.int64)
            .astype(np.float32)
        )
    distances = descriptors @ (-2.0 * centers.T)
    distances += np.einsum("nd,nd->n", descriptors, descriptors)[:, None]
    distances += np.einsum("md,md->m", centers, centers)[None, :]
    return np.maximum(distances, 0.0, out=distances)


def _gathered_squared(descriptors: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(n, b) squared distances between each row and its own ``b`` centers (n, b, d)."""
    if descriptors.dtype == np.uint8:
        return (
            np.bitwise_count(centers ^ descriptors[:, None, :])
            .sum(axis=2, dtype=np.int64)
            .astype(np.float32)
        )
    distances = np.einsum("nbd,nbd->nb", centers, centers)
    distances -= 2.0 * np.einsum("nbd,nd->nb", centers, descriptors)
    distances += np.einsum("nd,nd->n", descriptors, descriptors)[:, None]
    return np.maximum(distances, 0.0, out=distances)


@persistable
class VocabularyTree(Vocabulary):
    """Hierarchical k-means vocabulary (Nister & Stewenius, 2006).

    The root's descriptors are clustered into ``branching`` children, each child's again,
    ``depth`` levels down; the leaves are the words. A node with fewer than ``branching``
    descriptors is not split (it continues as its own single child), so ``n_words_`` can be
    below ``branching ** depth``. Assignment descends greedily to the nearest child.

    Parameters
    ----------
    branching : int
        Children per node (>= 2).
    depth : int
        Levels below the root (>= 1).
    n_iter : int
        k-means (k-majority) iterations at every node (with candidate search from 129
        children per node on, see :class:`KMeansVocabulary`).
    init : {"auto", "k-means++", "random"}
        Starting centres at every node (see :class:`KMeansVocabulary`).
    coarse_to_fine : bool
        Start every node's k-means on nested samples (see :class:`KMeansVocabulary`).
    beam_width : int
        Nodes kept per level when assigning: 1 descends greedily (Nister & Stewenius); more
        find a nearer leaf (the leaves under the ``beam_width`` nearest nodes of each level
        are compared) at ``beam_width`` times the cost. Training always descends greedily.
    n_jobs : int or None
        FAISS threads; -1 uses all cores.
    random_state : int, RandomState or None

    Attributes
    ----------
    centers_ : list of ``depth`` ndarrays
        ``centers_[l]`` (n_nodes at level l + 1, d): node centres, float32 or packed uint8.
    first_child_, n_children_ : lists of ``depth`` int64 ndarrays
        Children of node ``i`` at level ``l`` are rows ``first_child_[l][i]`` to
        ``first_child_[l][i] + n_children_[l][i] - 1`` of ``centers_[l]`` (level 0 = root).
    bandwidth_ : float
        Mean squared distance of the training descriptors to their leaf.
    labels_ : ndarray of int64, shape (n_train,)
        Leaf of each training descriptor, from the same descent as :meth:`assign` (not saved).
    """

    bundle_kind = "vocabulary-tree"

    def __init__(
        self,
        branching: int = 10,
        depth: int = 3,
        n_iter: int = 20,
        init: str = "auto",
        coarse_to_fine: bool = True,
        beam_width: int = 1,
        n_jobs: int | None = -1,
        random_state: int | np.random.RandomState | None = 0,
    ) -> None:
        self.branching = branching
        self.depth = depth
        self.n_iter = n_iter
        self.init = init
        self.coarse_to_fine = coarse_to_fine
        self.beam_width = beam_width
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, descriptors: np.ndarray, y: None = None) -> VocabularyTree:
        """Build the tree on ``descriptors`` (n, d), level by level."""
        descriptors = check_descriptors(descriptors)
        branching, depth = int(self.branching), int(self.depth)
        for name, minimum in (("branching", 2), ("depth", 1), ("n_iter", 1), ("beam_width", 1)):
            if int(getattr(self, name)) < minimum:
                raise ParameterError(
                    name, f"{name} must be >= {minimum}; got {getattr(self, name)!r}"
                )
        if len(descriptors) < branching:
            raise ParameterError(
                "branching",
                f"branching={branching} needs at least as many descriptors; got {len(descriptors)}",
            )
        check_init(self.init)
        rng = check_random_state(self.random_state)
        self.centers_, self.first_child_, self.n_children_ = [], [], []
        node_of_row = np.zeros(len(descriptors), dtype=np.int64)
        parent_centers = [self._mean_center(descriptors)]
        # every level clusters each descriptor once, in one node: the bar counts them
        bar = progress_bar(
            "vocabulary (tree)", depth * len(descriptors), " descriptors", unit_scale=True
        )
        with faiss_threads(self.n_jobs), single_threaded_blas(), bar:
            for level in range(depth):
                order = np.argsort(node_of_row, kind="stable")
                bounds = np.searchsorted(node_of_row[order], np.arange(len(parent_centers) + 1))
                children, n_children = [], []
                for node, center in enumerate(parent_centers):
                    members = descriptors[order[bounds[node] : bounds[node + 1]]]
                    if len(members) >= branching:
                        children.append(
                            cluster_centers(
                                members,
                                branching,
                                int(self.n_iter),
                                self.init,
                                seed_from(rng),
                                bool(self.coarse_to_fine),
                            )[0]
                        )
                    else:
                        children.append(center[None])
                    n_children.append(len(children[-1]))
                    bar.update(len(members))
                self.n_children_.append(np.asarray(n_children, dtype=np.int64))
                self.first_child_.append(
                    np.concatenate(([0], np.cumsum(n_children)[:-1])).astype(np.int64)
                )
                self.centers_.append(np.ascontiguousarray(np.concatenate(children)))
                node_of_row, distances = self._descend(descriptors, node_of_row, level)
                parent_centers = list(self.centers_[-1])
        self.labels_ = node_of_row
        self.bandwidth_ = float(distances.astype(np.float64).mean())
        self.dtype_, self.dimension_ = descriptors.dtype, descriptors.shape[1]
        return self

    @staticmethod
    def _mean_center(descriptors: np.ndarray) -> np.ndarray:
        if descriptors.dtype == np.uint8:
            bits = np.unpackbits(descriptors, axis=1)
            return np.packbits(2 * bits.sum(axis=0, dtype=np.int64) > len(bits))
        return descriptors.mean(axis=0, dtype=np.float64).astype(np.float32)

    @property
    def n_words_(self) -> int:
        return len(self.centers_[-1])

    def max_words(self) -> int:
        """``branching ** depth``: fewer when some nodes hold fewer descriptors than ``branching``."""
        return int(self.branching) ** int(self.depth)

    def _child_distances(
        self, descriptors: np.ndarray, nodes: np.ndarray, level: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Children of ``nodes`` (at ``level``) and squared distances to them, ``inf`` for padding.

        When many descriptors share a node (upper levels), each node's descriptors are compared
        with its children in one matrix product; otherwise every descriptor's children are
        gathered and compared row by row.

        Returns (children (n, branching) int64 rows of ``centers_[level]``, distances (n, branching)).
        """
        slots = np.arange(int(self.branching))
        first, count = self.first_child_[level][nodes], self.n_children_[level][nodes]
        children = first[:, None] + np.minimum(slots[None, :], count[:, None] - 1)
        order = np.argsort(nodes, kind="stable")
        sorted_nodes = nodes[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_nodes[1:] != sorted_nodes[:-1])))
        if len(starts) * TREE_GROUP_MIN_ROWS <= len(nodes):
            distances = np.empty(children.shape, dtype=np.float32)
            for start, end in zip(starts, [*starts[1:], len(nodes)], strict=True):
                rows = order[start:end]
                distances[rows] = _pairwise_squared(
                    descriptors[rows], self.centers_[level][children[rows[0]]]
                )
        else:
            distances = _gathered_squared(descriptors, self.centers_[level][children])
        distances[slots[None, :] >= count[:, None]] = np.inf
        return children, distances

    def _chunk_rows(self) -> int:
        row_bytes = int(self.branching) * self.centers_[0].shape[1] * self.centers_[0].itemsize
        return max(1, TREE_CHUNK_BYTES // row_bytes)

    def _descend(
        self, descriptors: np.ndarray, nodes: np.ndarray, level: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest child (a row of ``centers_[level]``) of each descriptor's node at ``level``.

        Returns (children (n,) int64, squared distances to them (n,) float32).
        """
        nearest = np.empty(len(descriptors), dtype=np.int64)
        nearest_distances = np.empty(len(descriptors), dtype=np.float32)
        for rows in chunks(len(descriptors), self._chunk_rows()):
            children, distances = self._child_distances(descriptors[rows], nodes[rows], level)
            best = distances.argmin(axis=1)
            nearest[rows] = children[np.arange(len(children)), best]
            nearest_distances[rows] = distances[np.arange(len(children)), best]
        return nearest, nearest_distances

    def _beam_children(
        self, descriptors: np.ndarray, nodes: np.ndarray, node_distances: np.ndarray, level: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Children of each row's beam of ``nodes`` (n, b) at ``level`` and distances to them.

        Returns (children (n, b * branching), distances (n, b * branching)); ``inf`` marks
        padding and the children of beam slots that were padding themselves.
        """
        parts = [
            self._child_distances(descriptors, nodes[:, slot], level)
            for slot in range(nodes.shape[1])
        ]
        if len(parts) == 1:  # a beam of one node is never padding
            return parts[0]
        children = np.concatenate([slot_children for slot_children, _ in parts], axis=1)
        distances = np.concatenate(
            [
                np.where(np.isinf(node_distances[:, [slot]]), np.inf, slot_distances)
                for slot, (_, slot_distances) in enumerate(parts)
            ],
            axis=1,
        )
        return children, distances

    def _search(self, descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Descend keeping the ``beam_width`` nearest nodes per level, then rank their leaves."""
        if k > int(self.branching):
            raise ValueError(
                f"a vocabulary tree ranks the leaves of one parent: k must be <= branching={self.branching}; got {k}"
            )
        distances = np.empty((len(descriptors), k), dtype=np.float32)
        words = np.empty((len(descriptors), k), dtype=np.int64)
        last = len(self.centers_) - 1
        with single_threaded_blas():
            for rows in chunks(len(descriptors), self._chunk_rows()):
                chunk = descriptors[rows]
                nodes = np.zeros((len(chunk), 1), dtype=np.int64)
                node_distances = np.zeros((len(chunk), 1), dtype=np.float32)
                for level in range(last + 1):
                    children, child_distances = self._beam_children(
                        chunk, nodes, node_distances, level
                    )
                    keep = int(self.beam_width) if level < last else k
                    ranked = (
                        child_distances.argmin(axis=1)[:, None]
                        if keep == 1
                        else np.argsort(child_distances, axis=1, kind="stable")[:, :keep]
                    )
                    nodes = np.take_along_axis(children, ranked, axis=1)
                    node_distances = np.take_along_axis(child_distances, ranked, axis=1)
                words[rows], distances[rows] = nodes, node_distances
        return distances, words

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"bandwidth": np.array([self.bandwidth_], dtype=np.float64)}
        for level in range(len(self.centers_)):
            arrays[f"level{level}.centers"] = self.centers_[level]
            arrays[f"level{level}.first_child"] = self.first_child_[level]
            arrays[f"level{level}.n_children"] = self.n_children_[level]
        return {}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        levels = range(int(self.depth))
        self.centers_ = [np.ascontiguousarray(arrays[f"level{level}.centers"]) for level in levels]
        self.first_child_ = [
            arrays[f"level{level}.first_child"].astype(np.int64) for level in levels
        ]
        self.n_children_ = [arrays[f"level{level}.n_children"].astype(np.int64) for level in levels]
        self.dtype_ = self.centers_[0].dtype
        self.dimension_ = self.centers_[0].shape[1]
        self.bandwidth_ = float(arrays["bandwidth"][0])
