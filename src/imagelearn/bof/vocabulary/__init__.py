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
parameters. The engine's names are re-exported here for code that imported them from the
former ``imagelearn.bof.vocabulary`` module.
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
from imagelearn.core.kmeans import (
    ASSIGN_CHUNK_ROWS,
    CANDIDATE_MIN_RATIO,
    EXACT_GRAPH_MAX_CENTERS,
    GRAPH_REFRESH_CHUNK,
    GRAPH_REFRESH_HOPS,
    INIT_KINDS,
    KMEANSPP_MAX_CLUSTERS,
    KMEANSPP_MIN_ROWS,
    KMEANSPP_ROWS_PER_CLUSTER,
    KMEANSPP_ROWS_PER_CLUSTER_COARSE_TO_FINE,
    N_CANDIDATES,
    NESTED_FIRST_ROWS_PER_CLUSTER,
    NESTED_GROWTH,
    NESTED_STAGE_ITER,
    assign_among_candidates,
    cluster_centers,
    faiss_threads,
    initial_centers,
    kmajority_centers,
    kmeans_centers,
    kmeanspp_seeds,
    mean_centers,
    nearest_centers,
    nested_sample_sizes,
    refreshed_neighbors,
)

__all__ = [
    "ASSIGN_CHUNK_ROWS",
    "CANDIDATE_MIN_RATIO",
    "EXACT_GRAPH_MAX_CENTERS",
    "GRAPH_REFRESH_CHUNK",
    "GRAPH_REFRESH_HOPS",
    "HNSW_MIN_WORDS",
    "HNSW_NEIGHBORS",
    "HNSW_SEARCH_DEPTH",
    "INDEX_KINDS",
    "INIT_KINDS",
    "KMEANSPP_MAX_CLUSTERS",
    "KMEANSPP_MIN_ROWS",
    "KMEANSPP_ROWS_PER_CLUSTER",
    "KMEANSPP_ROWS_PER_CLUSTER_COARSE_TO_FINE",
    "NESTED_FIRST_ROWS_PER_CLUSTER",
    "NESTED_GROWTH",
    "NESTED_STAGE_ITER",
    "N_CANDIDATES",
    "TREE_CHUNK_BYTES",
    "TREE_GROUP_MIN_ROWS",
    "VOCABULARIES",
    "KMeansVocabulary",
    "Vocabulary",
    "VocabularyTree",
    "assign_among_candidates",
    "check_descriptors",
    "cluster_centers",
    "faiss_threads",
    "initial_centers",
    "kmajority_centers",
    "kmeans_centers",
    "kmeanspp_seeds",
    "make_vocabulary",
    "mean_centers",
    "nearest_centers",
    "nested_sample_sizes",
    "refreshed_neighbors",
    "soft_weights",
    "vocabulary_class",
    "word_index",
]
