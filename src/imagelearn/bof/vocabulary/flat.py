"""The flat visual vocabulary: k-means words searched through a FAISS index.

Words are clustered by :mod:`imagelearn.core.kmeans` (k-means for float descriptors with
squared Euclidean distances, k-majority for packed binary ones with Hamming distances) and
found through a FAISS index, exact (``index="flat"``) or approximate (``index="hnsw"``) for
vocabularies of 100k+ words.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from imagelearn.bof.vocabulary.base import check_descriptors
from imagelearn.bof.vocabulary.words import INDEX_KINDS, KMeansWords, word_index
from imagelearn.core.errors import ParameterError
from imagelearn.core.kmeans import (
    check_init,
    check_n_candidates,
    cluster_centers,
    lloyd_rows,
    seed_from,
)
from imagelearn.core.persistence import persistable
from imagelearn.core.progress import progress_bar
from imagelearn.core.threads import faiss_threads, resolve_n_jobs


@persistable
class KMeansVocabulary(KMeansWords, BaseEstimator):
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

    # the constructor, state and word search are KMeansWords's: a retrieval index rebuilds
    # those without importing scikit-learn
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
