"""The flat visual vocabulary: k-means words searched through a FAISS index.

Words are clustered by :mod:`imagelearn.core.kmeans` (k-means for float descriptors with
squared Euclidean distances, k-majority for packed binary ones with Hamming distances) and
found through a FAISS index, exact (``index="flat"``) or approximate (``index="hnsw"``) for
vocabularies of 100k+ words.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from imagelearn.bof.vocabulary.base import Vocabulary, check_descriptors
from imagelearn.core.bundle import faiss_header_problems
from imagelearn.core.errors import ParameterError
from imagelearn.core.kmeans import (
    N_CANDIDATES,
    check_init,
    check_n_candidates,
    cluster_centers,
    exact_index,
    lloyd_rows,
    search,
    seed_from,
)
from imagelearn.core.persistence import persistable
from imagelearn.core.progress import progress_bar
from imagelearn.core.threads import faiss_threads, resolve_n_jobs

#: Neighbours per node of the HNSW graph used by ``KMeansVocabulary(index="hnsw")``.
HNSW_NEIGHBORS = 32
#: Candidates examined per HNSW search; higher is more exact and slower.
HNSW_SEARCH_DEPTH = 64

INDEX_KINDS = ("flat", "hnsw")
#: From this many words on, an HNSW graph assigns faster than brute force (at 10,000 words it
#: is slower: 53 against 35 µs per RootSIFT descriptor on one core).
HNSW_MIN_WORDS = 50_000


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


@persistable
class KMeansVocabulary(Vocabulary):
    """Flat visual vocabulary: k-means (k-majority for binary descriptors), FAISS assignment.

    Parameters
    ----------
    n_words : int
        Number of clusters (words).
    n_iter : int
        Lloyd (or k-majority) iterations.
    init : {"auto", "k-means++", "random"}
        Starting centres: k-means++ seeding on a subsample, or random distinct descriptors;
        ``auto`` uses k-means++ up to 4096 words (its cost grows with the square of
        ``n_words``).
    coarse_to_fine : bool
        Start with Lloyd iterations on nested random samples growing 3x from 16 descriptors
        per word (nested mini-batch k-means): the same error as without it in far fewer
        full iterations (see bench/README.md).
    n_candidates : int or None
        After its first assignment, a float descriptor is compared only with the
        ``n_candidates`` words nearest its current word (cluster closures); None compares it
        with every word at every iteration (exact Lloyd). Used from ``4 * n_candidates``
        words on; binary descriptors always compare every word. Beyond 8192 words the words'
        neighbour graph is refreshed from the last iteration's instead of searched exactly
        (60,000 words: 1.4x faster, error +0.04%).
    index : {"flat", "hnsw"}
        How words are searched: exact brute force, or an HNSW graph (approximate, much
        faster from ~50k words on).
    n_jobs : int or None
        FAISS threads; -1 uses all cores.
    random_state : int, RandomState or None
        Seeds the initial centres.

    Attributes
    ----------
    words_ : ndarray, shape (n_words, d); float32, or uint8 packed bits for binary descriptors
    bandwidth_ : float
        Mean squared distance of the training descriptors to their word at the last iteration
        (the soft-assignment kernel's sigma^2).
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

    def fit(self, descriptors: np.ndarray, y: None = None) -> KMeansVocabulary:
        """Cluster ``descriptors`` (n, d) into ``n_words`` words; uses every row given."""
        descriptors = check_descriptors(descriptors)
        if self.index not in INDEX_KINDS:
            raise ParameterError("index", f"index must be one of {INDEX_KINDS}; got {self.index!r}")
        check_init(self.init)
        check_n_candidates(self.n_candidates)
        for name in ("n_words", "n_iter"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(name, f"{name} must be >= 1; got {getattr(self, name)!r}")
        if len(descriptors) < self.n_words:
            raise ParameterError(
                "n_words",
                f"{self.n_words} words need at least as many descriptors; got {len(descriptors)}",
            )
        n_words, n_iter = int(self.n_words), int(self.n_iter)
        bar = progress_bar(
            "vocabulary (k-means)",
            lloyd_rows(len(descriptors), n_words, n_iter, bool(self.coarse_to_fine)),
            unit=" descriptors",
            unit_scale=True,
        )
        with faiss_threads(self.n_jobs), bar:
            self.words_, self.bandwidth_ = cluster_centers(
                descriptors,
                n_words,
                n_iter,
                self.init,
                seed_from(self.random_state),
                bool(self.coarse_to_fine),
                None if self.n_candidates is None else int(self.n_candidates),
                resolve_n_jobs(self.n_jobs),
                counter=bar,
            )
            self._index = word_index(self.words_, self.index)
        self.dtype_, self.dimension_ = descriptors.dtype, descriptors.shape[1]
        return self

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
