"""The vocabulary tree: hierarchical k-means (Nister & Stewenius, CVPR 2006).

``branching`` clusters per node, ``depth`` levels, up to ``branching ** depth`` leaf words; a
descriptor is assigned by descending the tree, ``branching * depth`` distances instead of one
per word. Every node is clustered by :mod:`imagelearn.core.kmeans` (k-majority for binary
descriptors).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from imagelearn.bof.vocabulary.base import check_descriptors
from imagelearn.bof.vocabulary.words import TreeWords
from imagelearn.core.errors import ParameterError
from imagelearn.core.kmeans import check_init, cluster_centers, seed_from
from imagelearn.core.persistence import persistable
from imagelearn.core.progress import progress_bar
from imagelearn.core.threads import faiss_threads, single_threaded_blas


@persistable
class VocabularyTree(TreeWords, BaseEstimator):
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

    # the constructor, state and descent are TreeWords's: a retrieval index rebuilds those
    # without importing scikit-learn
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
