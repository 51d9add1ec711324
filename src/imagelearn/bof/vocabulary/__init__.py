"""Visual vocabularies: flat k-means and the vocabulary tree, for float and binary descriptors.

A vocabulary turns local descriptors into visual words. Two kinds, one face
(``fit`` / ``assign`` / ``assign_soft`` / ``quantization_error`` / ``to_arrays``):

* :class:`KMeansVocabulary` (:mod:`.flat`): flat k-means; words are found through a FAISS
  index, exact (``index="flat"``) or approximate (``index="hnsw"``) for 100k+ words.
* :class:`VocabularyTree` (:mod:`.tree`): hierarchical k-means (Nister & Stewenius, CVPR
  2006), ``branching ** depth`` leaf words at most, assigned by descending the tree.

Both cluster with the package's k-means engine, :mod:`imagelearn.core.kmeans` (k-means++
seeding, a coarse-to-fine start, Lloyd iterations with candidate search; k-majority for binary
descriptors). :func:`make_vocabulary` (:mod:`.registry`) builds either by name, validating its
parameters. Each estimator is its fitted half (:mod:`.words`: parameters, learned arrays,
word search, without scikit-learn) plus ``fit``; a retrieval index searches with the fitted
half alone. Names are imported on first use, so ``from imagelearn.bof.vocabulary import
TreeWords`` loads no scikit-learn.
"""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.bof.vocabulary.base import Vocabulary, check_descriptors, soft_weights
    from imagelearn.bof.vocabulary.flat import KMeansVocabulary
    from imagelearn.bof.vocabulary.registry import VOCABULARIES, make_vocabulary, vocabulary_class
    from imagelearn.bof.vocabulary.tree import VocabularyTree
    from imagelearn.bof.vocabulary.words import (
        FITTED_VOCABULARIES,
        HNSW_MIN_WORDS,
        HNSW_NEIGHBORS,
        HNSW_SEARCH_DEPTH,
        INDEX_KINDS,
        TREE_CHUNK_BYTES,
        TREE_GROUP_MIN_ROWS,
        KMeansWords,
        TreeWords,
        check_vocabulary_params,
        word_index,
        words_class,
    )

__all__ = [
    "FITTED_VOCABULARIES",
    "HNSW_MIN_WORDS",
    "HNSW_NEIGHBORS",
    "HNSW_SEARCH_DEPTH",
    "INDEX_KINDS",
    "TREE_CHUNK_BYTES",
    "TREE_GROUP_MIN_ROWS",
    "VOCABULARIES",
    "KMeansVocabulary",
    "KMeansWords",
    "TreeWords",
    "Vocabulary",
    "VocabularyTree",
    "check_descriptors",
    "check_vocabulary_params",
    "make_vocabulary",
    "soft_weights",
    "vocabulary_class",
    "word_index",
    "words_class",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
