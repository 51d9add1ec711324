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
parameters.
"""

from imagelearn.bof.vocabulary.base import Vocabulary, check_descriptors, soft_weights
from imagelearn.bof.vocabulary.flat import (
    HNSW_MIN_WORDS,
    HNSW_NEIGHBORS,
    HNSW_SEARCH_DEPTH,
    INDEX_KINDS,
    KMeansVocabulary,
    word_index,
)
from imagelearn.bof.vocabulary.registry import VOCABULARIES, make_vocabulary, vocabulary_class
from imagelearn.bof.vocabulary.tree import TREE_CHUNK_BYTES, TREE_GROUP_MIN_ROWS, VocabularyTree

__all__ = [
    "HNSW_MIN_WORDS",
    "HNSW_NEIGHBORS",
    "HNSW_SEARCH_DEPTH",
    "INDEX_KINDS",
    "TREE_CHUNK_BYTES",
    "TREE_GROUP_MIN_ROWS",
    "VOCABULARIES",
    "KMeansVocabulary",
    "Vocabulary",
    "VocabularyTree",
    "check_descriptors",
    "make_vocabulary",
    "soft_weights",
    "vocabulary_class",
    "word_index",
]
