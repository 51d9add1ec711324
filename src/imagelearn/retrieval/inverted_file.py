"""The inverted file: for every visual word, the images that contain it and their tf-idf weight.

An image is a bag of visual words weighted ``sqrt(count) * idf`` (the square root damps
bursts of repeated structure), L2-normalised; the score of a database image is the cosine
between its bag and the query's, accumulated over the query's words only (Sivic & Zisserman
2003; Nister & Stewenius 2006). Postings are CSR arrays: ``offsets`` (n_words + 1) into
``images`` (int32 image ids) and ``weights`` (float32), multiplied as a scipy sparse matrix, so an index is a list of immutable
segments whose scores add up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # SciPy loads on the first local ranking: a hybrid search never needs it
    from scipy import sparse


def inverse_document_frequency(word_lists: Sequence[np.ndarray], n_words: int) -> np.ndarray:
    """``log(N / df)`` of every word over ``N`` images; words never seen get the largest value.

    Parameters
    ----------
    word_lists : sequence of int arrays
        The words of each image's features.
    n_words : int

    Returns
    -------
    ndarray of float32, shape (n_words,)
    """
    document_frequency = np.zeros(n_words, dtype=np.int64)
    for words in word_lists:
        document_frequency[np.unique(words)] += 1
    n_images = max(1, len(word_lists))
    return np.log(n_images / np.maximum(document_frequency, 1)).astype(np.float32) + np.float32(
        1e-3
    )


def bag_of_words(words: np.ndarray, idf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The L2-normalised tf-idf bag of one image.

    Parameters
    ----------
    words : int array, shape (n_features,)
    idf : ndarray of float32, shape (n_words,)

    Returns
    -------
    unique_words : ndarray of int64, shape (m,), sorted
    weights : ndarray of float32, shape (m,); unit L2 norm (all zero when ``words`` is empty)
    """
    unique_words, counts = np.unique(np.asarray(words, dtype=np.int64), return_counts=True)
    weights = np.sqrt(counts).astype(np.float32) * idf[unique_words]
    norm = float(np.linalg.norm(weights))
    return unique_words, weights / norm if norm > 0 else weights


@dataclass(frozen=True)
class Postings:
    """CSR postings of a group of images.

    Attributes
    ----------
    offsets : ndarray of int64, shape (n_words + 1,)
        Postings of word ``w`` are rows ``offsets[w]:offsets[w + 1]``.
    images : ndarray of int32, shape (n_postings,)
        Image ids.
    weights : ndarray of float32, shape (n_postings,)
        The word's weight in the image's normalised bag.
    """

    offsets: np.ndarray
    images: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_bags(
        cls, image_ids: Sequence[int], bags: Sequence[tuple[np.ndarray, np.ndarray]], n_words: int
    ) -> Postings:
        """Postings of images given as ``(unique_words, weights)`` bags (see :func:`bag_of_words`)."""
        lengths = [len(words) for words, _ in bags]
        words = np.concatenate([w for w, _ in bags]) if bags else np.zeros(0, np.int64)
        weights = np.concatenate([v for _, v in bags]) if bags else np.zeros(0, np.float32)
        images = np.repeat(np.asarray(image_ids, dtype=np.int32), lengths)
        order = np.argsort(words, kind="stable")
        offsets = np.zeros(n_words + 1, dtype=np.int64)
        np.cumsum(np.bincount(words, minlength=n_words), out=offsets[1:])
        return cls(offsets, images[order], weights[order].astype(np.float32))

    @property
    def nbytes(self) -> int:
        """Bytes of the three arrays."""
        return self.offsets.nbytes + self.images.nbytes + self.weights.nbytes

    @cached_property
    def matrix(self) -> sparse.csr_matrix:
        """The postings as a sparse (n_words, max id + 1) matrix sharing the arrays (no copy)."""
        from scipy import sparse

        n_columns = int(self.images.max()) + 1 if len(self.images) else 1
        index_type = np.int32 if len(self.images) < 2**31 else np.int64
        return sparse.csr_matrix(
            (
                self.weights,
                self.images.astype(index_type, copy=False),
                self.offsets.astype(index_type),
            ),
            shape=(len(self.offsets) - 1, n_columns),
            copy=False,
        )

    def scores(self, words: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images sharing a word with the query and their score ``sum_w weights[w] * posting(w)``.

        Parameters
        ----------
        words : int array, shape (m,)
            The query's distinct words.
        weights : ndarray of float32, shape (m,)
            Their weights in the query's bag.

        Returns
        -------
        ids : ndarray of int64, shape (k,)
        scores : ndarray of float32, shape (k,)
        """
        from scipy import sparse

        matrix = self.matrix
        query = sparse.csr_matrix(
            (
                np.asarray(weights, np.float32),
                np.asarray(words, matrix.indices.dtype),
                np.array([0, len(words)]),
            ),
            shape=(1, matrix.shape[0]),
        )
        product = query @ matrix
        return product.indices.astype(np.int64), product.data


def score_postings(
    segments: Sequence[Postings], words: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores against one query bag of every image sharing a word: (ids int64, scores float32).

    Segments hold disjoint images, so their results are concatenated.
    """
    results = [postings.scores(words, weights) for postings in segments]
    if not results:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])
