"""Fitted vocabularies as a search uses them: each kind's parameters, learned arrays and word
search, with NumPy and FAISS only.

:class:`KMeansWords` and :class:`TreeWords` are the fitted halves of
:class:`~imagelearn.bof.vocabulary.KMeansVocabulary` and
:class:`~imagelearn.bof.vocabulary.VocabularyTree`: the estimators inherit their constructor
(one declaration of each kind's parameters), state and search, and add ``fit`` and
scikit-learn's ``BaseEstimator``. A retrieval index rebuilds the fitted half straight from its
bundle (:func:`words_class`, then ``from_arrays``), its parameters checked against that same
constructor, so that a search never imports scikit-learn or SciPy.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import faiss
import numpy as np

from imagelearn.bof.vocabulary.base import Vocabulary
from imagelearn.core.bundle import faiss_header_problems
from imagelearn.core.errors import ParameterError
from imagelearn.core.kmeans import N_CANDIDATES, chunks, exact_index, search
from imagelearn.core.threads import single_threaded_blas

#: Neighbours per node of the HNSW graph used by ``KMeansVocabulary(index="hnsw")``.
HNSW_NEIGHBORS = 32
#: Candidates examined per HNSW search; higher is more exact and slower.
HNSW_SEARCH_DEPTH = 64
INDEX_KINDS = ("flat", "hnsw")
#: From this many words on, an HNSW graph assigns faster than brute force (at 10,000 words it
#: is slower: 53 against 35 µs per RootSIFT descriptor on one core).
HNSW_MIN_WORDS = 50_000
#: Bytes of gathered child centres the tree descends through at once.
TREE_CHUNK_BYTES = 64 * 2**20
#: The tree compares descriptors node by node (one matrix product each) when nodes hold at
#: least this many of them on average, else child by child.
TREE_GROUP_MIN_ROWS = 16


def word_index(words: np.ndarray, kind: str = "flat") -> faiss.Index | faiss.IndexBinary:
    """A FAISS index over ``words`` (L2 for float32, Hamming for packed uint8): exact or HNSW."""
    if kind != "hnsw":
        return exact_index(words)
    if words.dtype == np.uint8:
        index = faiss.IndexBinaryHNSW(words.shape[1] * 8, HNSW_NEIGHBORS)
    else:
        index = faiss.IndexHNSWFlat(words.shape[1], HNSW_NEIGHBORS)
    index.hnsw.efSearch = HNSW_SEARCH_DEPTH
    index.add(words)
    return index


class KMeansWords(Vocabulary):
    """A fitted flat vocabulary: words searched through a FAISS index, exact or HNSW.

    The constructor of :class:`~imagelearn.bof.vocabulary.KMeansVocabulary` (parameters
    documented there); the training parameters are kept, unused, so that a saved vocabulary's
    parameters are checked as a whole.
    """

    bundle_kind = "kmeans-vocabulary"

    def __init__(
        self,
        n_words: int = 1000,
        n_iter: int = 20,
        init: str = "auto",
        coarse_to_fine: bool = True,
        n_candidates: int | None = N_CANDIDATES,
        index: str = "flat",
        n_jobs: int | None = -1,
        random_state: int | np.random.RandomState | None = 0,
    ) -> None:
        self.n_words = n_words
        self.n_iter = n_iter
        self.init = init
        self.coarse_to_fine = coarse_to_fine
        self.n_candidates = n_candidates
        self.index = index
        self.n_jobs = n_jobs
        self.random_state = random_state

    @property
    def n_words_(self) -> int:
        return len(self.words_)

    def max_words(self) -> int:
        return int(self.n_words)

    def _search(self, descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return search(self._index, descriptors, k)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"words": self.words_, "bandwidth": np.array([self.bandwidth_], dtype=np.float64)}
        if self.index == "hnsw":  # the graph is saved so that a reload assigns identically
            serialize = (
                faiss.serialize_index_binary if self.dtype_ == np.uint8 else faiss.serialize_index
            )
            arrays["hnsw_graph"] = serialize(self._index)
        return {}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.words_ = np.ascontiguousarray(arrays["words"])
        self.dtype_ = self.words_.dtype
        self.dimension_ = self.words_.shape[1]
        self.bandwidth_ = float(arrays["bandwidth"][0])
        if "hnsw_graph" in arrays:
            binary = self.dtype_ == np.uint8
            graph = np.ascontiguousarray(arrays["hnsw_graph"], dtype=np.uint8)
            problems = faiss_header_problems(
                graph,
                "IndexBinaryHNSW" if binary else "IndexHNSWFlat",
                self.dimension_ * 8 if binary else self.dimension_,
                len(self.words_),
            )
            if problems:
                raise ValueError(f"hnsw_graph is not the words' graph ({'; '.join(problems)})")
            deserialize = faiss.deserialize_index_binary if binary else faiss.deserialize_index
            try:
                self._index = deserialize(graph)
            except RuntimeError as error:
                raise ValueError(f"corrupt hnsw_graph ({str(error)[:200]})") from error
            self._index.hnsw.efSearch = HNSW_SEARCH_DEPTH
        else:
            self._index = word_index(self.words_, self.index)


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


class TreeWords(Vocabulary):
    """A fitted vocabulary tree: descriptors descend to a leaf (beam search, ``beam_width``).

    The constructor of :class:`~imagelearn.bof.vocabulary.VocabularyTree` (parameters
    documented there); the training parameters are kept, unused, so that a saved vocabulary's
    parameters are checked as a whole.
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


#: The fitted half of each vocabulary kind, by the names of
#: :data:`~imagelearn.bof.vocabulary.VOCABULARIES`.
FITTED_VOCABULARIES: dict[str, type[Vocabulary]] = {"kmeans": KMeansWords, "tree": TreeWords}


def words_class(kind: str) -> type[Vocabulary]:
    """The fitted half of the vocabulary kind ``kind`` (:data:`FITTED_VOCABULARIES`).

    Raises
    ------
    ParameterError
        ``parameter="vocabulary"``: ``kind`` is not a vocabulary kind.
    """
    if not isinstance(kind, str) or kind not in FITTED_VOCABULARIES:
        raise ParameterError(
            "vocabulary",
            f"unknown vocabulary {kind!r}; choose one of: {', '.join(FITTED_VOCABULARIES)} "
            "(or give an unfitted Vocabulary instance)",
        )
    return FITTED_VOCABULARIES[kind]


def parameter_names(kind: str) -> list[str]:
    """The constructor parameters of the vocabulary kind ``kind``, sorted (as scikit-learn's
    ``_get_param_names`` lists them)."""
    signature = inspect.signature(words_class(kind).__init__).parameters
    return sorted(name for name in signature if name != "self")


def check_vocabulary_params(kind: str, params: Mapping[str, Any]) -> None:
    """Refuse a key of ``params`` that the vocabulary kind ``kind`` does not take.

    Raises
    ------
    ParameterError
        ``parameter="vocabulary"``: unknown kind; ``parameter="vocabulary_params"``: a key the
        kind does not take (the message lists the accepted ones).
    """
    accepted = parameter_names(kind)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ParameterError(
            "vocabulary_params",
            f"vocabulary {kind!r} has no parameter {', '.join(unknown)}; its parameters: "
            f"{', '.join(accepted)}",
        )
