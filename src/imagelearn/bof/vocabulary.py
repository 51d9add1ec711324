"""Visual vocabularies: flat k-means and the vocabulary tree, for float and binary descriptors.

A vocabulary turns local descriptors into visual words. Two kinds, one face
(``fit`` / ``assign`` / ``assign_soft`` / ``quantization_error`` / ``to_arrays``):

* :class:`KMeansVocabulary`: flat k-means (FAISS); words are found through a FAISS index,
  exact (``index="flat"``) or approximate (``index="hnsw"``) for vocabularies of 100k+ words.
* :class:`VocabularyTree`: hierarchical k-means (Nister & Stewenius, CVPR 2006): ``branching``
  clusters per node, ``depth`` levels, up to ``branching ** depth`` leaf words; a descriptor
  is assigned by descending the tree, ``branching * depth`` distances instead of one per word.

Distances are squared Euclidean for float32 descriptors. Binary descriptors (ORB, AKAZE:
packed bits in uint8) are compared by Hamming distance, which is the squared Euclidean
distance between the bit vectors, and clustered by k-majority (Grana et al., 2013): Lloyd
iterations where each centre is the bitwise majority vote of its members, so words stay
binary and are searched with ``faiss.IndexBinaryFlat``.

Both start, by default, coarse-to-fine (nested mini-batch k-means, Newling & Fleuret, NeurIPS
2016): Lloyd runs on a random sample of 16 rows per word, then on a 3x larger sample that
contains it, and so on, before the ``n_iter`` iterations on every row. The early iterations cost
a fraction of a full one, so far fewer full iterations reach a given quantisation error.

Float k-means compares each descriptor with every word only once, at its first assignment; the
later Lloyd iterations compare it with the ``n_candidates`` words nearest its current word
(cluster closures, Wang et al., CVPR 2012), which keeps each step a small matrix product per
word. The current word is always a candidate, so no step increases the error; ``None`` compares
every word at every iteration (exact Lloyd).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import faiss
import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from threadpoolctl import ThreadpoolController

from imagelearn.core.parallel import resolve_n_jobs

#: Rows searched at once when assigning descriptors (bounds the distance buffers' memory).
ASSIGN_CHUNK_ROWS = 65_536
#: Bytes of gathered child centres the tree descends through at once.
TREE_CHUNK_BYTES = 64 * 2**20
#: The tree compares descriptors node by node (one matrix product each) when nodes hold at
#: least this many of them on average, else child by child.
TREE_GROUP_MIN_ROWS = 16
#: Neighbours per node of the HNSW graph used by ``KMeansVocabulary(index="hnsw")``.
HNSW_NEIGHBORS = 32
#: Candidates examined per HNSW search; higher is more exact and slower.
HNSW_SEARCH_DEPTH = 64

INDEX_KINDS = ("flat", "hnsw")
#: From this many words on, an HNSW graph assigns faster than brute force (at 10,000 words it
#: is slower: 53 against 35 µs per RootSIFT descriptor on one core).
HNSW_MIN_WORDS = 50_000
INIT_KINDS = ("auto", "k-means++", "random")
#: ``init="auto"`` seeds with k-means++ up to this many clusters, at random beyond.
KMEANSPP_MAX_CLUSTERS = 4096
#: k-means++ seeding looks at this many rows per cluster at most; fewer before a coarse-to-fine
#: start, whose first stages refine the seeds anyway.
KMEANSPP_ROWS_PER_CLUSTER = 8
KMEANSPP_ROWS_PER_CLUSTER_COARSE_TO_FINE = 2
#: ... but at least this many rows (few clusters must not be seeded from a handful of rows).
KMEANSPP_MIN_ROWS = 1024
#: Coarse-to-fine: the first sample's rows per cluster, each next sample's growth factor and
#: the Lloyd iterations run on each sample before the full ones.
NESTED_FIRST_ROWS_PER_CLUSTER = 16
NESTED_GROWTH = 3
NESTED_STAGE_ITER = 3
#: Words compared with a descriptor after its first assignment: its word's nearest words.
N_CANDIDATES = 32
#: Candidate search is used when there are more than this many words per candidate.
CANDIDATE_MIN_RATIO = 4
#: Above this many centres, the centres' neighbour graph is not searched exactly at every
#: iteration (k^2 d work) but refreshed from the last one (see :func:`refreshed_neighbors`),
#: examining the neighbours of each centre's ``GRAPH_REFRESH_HOPS`` nearest neighbours.
EXACT_GRAPH_MAX_CENTERS = 8192
GRAPH_REFRESH_HOPS = 8
#: Centres refreshed at once (bounds the gathered candidate centres' memory).
GRAPH_REFRESH_CHUNK = 512


@contextmanager
def faiss_threads(n_jobs: int | None) -> Iterator[None]:
    """Run FAISS with ``n_jobs`` threads (scikit-learn's convention), restoring the count after."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(resolve_n_jobs(n_jobs))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def check_descriptors(descriptors: Any, name: str = "descriptors") -> np.ndarray:
    """Return descriptors as a C-contiguous float32 array, or uint8 for packed binary ones.

    Raises
    ------
    ValueError
        When not 2-D, empty of columns, of another integer/boolean type, or not finite.
    """
    array = np.asarray(descriptors)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a 2-D array (n, d) with d > 0; got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{name} must be float (real-valued) or uint8 (packed binary bits); got {array.dtype}"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return array


def soft_weights(squared_distances: np.ndarray, bandwidth: float) -> np.ndarray:
    """Kernel-codebook weights (van Gemert et al., 2008) of each row's candidate words.

    Parameters
    ----------
    squared_distances : ndarray, shape (n, k)
        Squared distances (Hamming for binary) to ``k`` candidate words; ``inf`` = no candidate.
    bandwidth : float
        Kernel variance sigma^2, in squared-distance units.

    Returns
    -------
    ndarray of float32, shape (n, k): ``exp(-d^2 / (2 sigma^2))`` per row, rows summing to 1.
    """
    distances = np.asarray(squared_distances, dtype=np.float64)
    nearest = distances.min(axis=1, keepdims=True)
    weights = np.exp(-(distances - nearest) / (2.0 * max(bandwidth, 1e-12)))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The loaded thread pools, inspected once (inspection costs ~1 ms; limiting then doesn't)."""
    return ThreadpoolController()


def _single_threaded_blas() -> Any:
    """Products of a few rows by a node's children are too small for threads to pay off."""
    return _threadpools().limit(limits=1, user_api="blas")


def _check_init(init: str) -> None:
    if init not in INIT_KINDS:
        raise ValueError(f"init must be one of {INIT_KINDS}; got {init!r}")


def _seed(random_state: int | np.random.RandomState | None) -> int:
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _chunks(n_rows: int, chunk_rows: int) -> Iterator[slice]:
    for start in range(0, n_rows, chunk_rows):
        yield slice(start, min(start + chunk_rows, n_rows))


def _flat_index(words: np.ndarray, kind: str = "flat") -> faiss.Index | faiss.IndexBinary:
    """A FAISS index over ``words``: L2 for float32, Hamming for packed uint8 bits."""
    binary = words.dtype == np.uint8
    bits = words.shape[1] * 8
    if kind == "hnsw":
        index = (
            faiss.IndexBinaryHNSW(bits, HNSW_NEIGHBORS)
            if binary
            else faiss.IndexHNSWFlat(words.shape[1], HNSW_NEIGHBORS)
        )
        index.hnsw.efSearch = HNSW_SEARCH_DEPTH
    else:
        index = faiss.IndexBinaryFlat(bits) if binary else faiss.IndexFlatL2(words.shape[1])
    index.add(words)
    return index


def _search(index: faiss.Index | faiss.IndexBinary, descriptors: np.ndarray, k: int):
    """``k`` nearest words of every row, in chunks: (squared distances float32, words int64)."""
    distances = np.empty((len(descriptors), k), dtype=np.float32)
    words = np.empty((len(descriptors), k), dtype=np.int64)
    for rows in _chunks(len(descriptors), ASSIGN_CHUNK_ROWS):
        chunk_distances, words[rows] = index.search(descriptors[rows], k)
        distances[rows] = chunk_distances
    return distances, words


def kmeanspp_seeds(
    descriptors: np.ndarray,
    n_clusters: int,
    seed: int,
    rows_per_cluster: int = KMEANSPP_ROWS_PER_CLUSTER,
) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, 2007) on a random subsample.

    As scikit-learn's ``kmeans_plusplus``: each new centre is the best of ``2 + ln(k)``
    candidates drawn with probability proportional to the squared distance to the nearest
    centre so far. Runs on ``rows_per_cluster * n_clusters`` random rows (at least
    ``KMEANSPP_MIN_ROWS``; all of them if there are fewer).

    Returns
    -------
    ndarray, shape (n_clusters, d), same dtype as ``descriptors``
    """
    rng = np.random.default_rng(seed)
    n_rows = min(len(descriptors), max(rows_per_cluster * n_clusters, KMEANSPP_MIN_ROWS))
    rows = descriptors[np.sort(rng.choice(len(descriptors), n_rows, replace=False))]
    if rows.dtype == np.uint8:

        def squared_distances(indices: np.ndarray) -> np.ndarray:
            """(n_rows, len(indices)) Hamming distances to the rows ``indices``."""
            return np.stack(
                [np.bitwise_count(rows ^ rows[i]).sum(axis=1, dtype=np.int64) for i in indices],
                axis=1,
            ).astype(np.float32)
    else:
        norms = np.einsum("nd,nd->n", rows, rows)

        def squared_distances(indices: np.ndarray) -> np.ndarray:
            """(n_rows, len(indices)) squared Euclidean distances to the rows ``indices``."""
            distances = rows @ (-2.0 * rows[indices].T)
            distances += norms[:, None]
            distances += norms[indices]
            return np.maximum(distances, 0.0, out=distances)

    n_candidates = 2 + int(np.log(n_clusters))
    chosen = [int(rng.integers(n_rows))]
    nearest = squared_distances(np.array(chosen))[:, 0]
    with _single_threaded_blas():
        for _ in range(1, n_clusters):
            cumulative = np.cumsum(nearest, dtype=np.float64)
            if cumulative[-1] <= 0:  # fewer distinct rows than clusters: any row not chosen yet
                chosen.append(int(rng.choice(np.setdiff1d(np.arange(n_rows), chosen))))
                continue
            draws = np.searchsorted(
                cumulative, rng.random(n_candidates) * cumulative[-1], side="right"
            )
            candidates = np.minimum(draws, n_rows - 1)
            updated = np.minimum(nearest[:, None], squared_distances(candidates))
            best = int(updated.sum(axis=0, dtype=np.float64).argmin())
            chosen.append(int(candidates[best]))
            nearest = updated[:, best]
    return np.ascontiguousarray(rows[chosen])


def initial_centers(
    descriptors: np.ndarray, n_clusters: int, init: str, seed: int, coarse_to_fine: bool = False
) -> np.ndarray:
    """Starting centres: k-means++ seeds or random distinct rows.

    ``auto`` picks k-means++ up to ``KMEANSPP_MAX_CLUSTERS`` clusters, random rows beyond. A
    coarse-to-fine start seeds from fewer rows per cluster, as its first stages refine the seeds.
    """
    if init == "auto":
        init = "k-means++" if n_clusters <= KMEANSPP_MAX_CLUSTERS else "random"
    if init == "k-means++":
        rows_per_cluster = (
            KMEANSPP_ROWS_PER_CLUSTER_COARSE_TO_FINE
            if coarse_to_fine
            else KMEANSPP_ROWS_PER_CLUSTER
        )
        return kmeanspp_seeds(descriptors, n_clusters, seed, rows_per_cluster)
    rng = np.random.default_rng(seed)
    return descriptors[np.sort(rng.choice(len(descriptors), n_clusters, replace=False))].copy()


def _with_own_centre(neighbors: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Make sure each row of ``neighbors`` holds its own centre ``own`` (duplicates may hide it)."""
    missing = ~(neighbors == own[:, None]).any(axis=1)
    neighbors[missing, -1] = own[missing]
    return neighbors


def nearest_centers(centers: np.ndarray, n_neighbors: int) -> np.ndarray:
    """(k, n_neighbors) int64: each float centre's nearest centres, itself included, exactly."""
    _, neighbors = _flat_index(centers).search(centers, n_neighbors)
    return _with_own_centre(neighbors, np.arange(len(centers)))


def refreshed_neighbors(centers: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Each centre's nearest among its previous neighbours' neighbours, after the centres moved.

    One step of NN-descent (Dong et al., WWW 2011): for centre ``j`` the candidates are the
    neighbours (in ``previous``) of its ``GRAPH_REFRESH_HOPS`` nearest previous neighbours,
    which include ``j`` and its own previous neighbours. Costs ``k * hops * m * d`` instead of
    the exact search's ``k^2 d``.

    Parameters
    ----------
    centers : ndarray of float32, shape (k, d)
    previous : ndarray of int64, shape (k, m)
        A neighbour graph of the centres before they moved (each row holding its own centre).

    Returns
    -------
    ndarray of int64, shape (k, m)
    """
    n_neighbors = previous.shape[1]
    norms = np.einsum("kd,kd->k", centers, centers)
    refreshed = np.empty_like(previous)
    for rows in _chunks(len(centers), GRAPH_REFRESH_CHUNK):
        pool = np.sort(
            previous[previous[rows, :GRAPH_REFRESH_HOPS]].reshape(len(previous[rows]), -1)
        )
        products = np.matmul(centers[pool], centers[rows, :, None])[..., 0]
        squared = norms[pool] - 2.0 * products + norms[rows, None]
        squared[:, 1:][pool[:, 1:] == pool[:, :-1]] = np.inf  # each candidate once
        best = np.argpartition(squared, n_neighbors - 1, axis=1)[:, :n_neighbors]
        refreshed[rows] = np.take_along_axis(pool, best, axis=1)
    return _with_own_centre(refreshed, np.arange(len(centers)))


def assign_among_candidates(
    descriptors: np.ndarray,
    labels: np.ndarray,
    centers: np.ndarray,
    candidates: np.ndarray,
    n_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each row among ``candidates[labels[row]]`` (which holds ``labels[row]``).

    Rows are grouped by their current centre, so each group costs one (rows, m) matrix product;
    ``n_threads`` threads share the groups (the products release the GIL).

    Parameters
    ----------
    descriptors : ndarray of float32, shape (n, d)
    labels : ndarray of int64, shape (n,)
        Current centre of each row.
    centers : ndarray of float32, shape (k, d)
    candidates : ndarray of int64, shape (k, m)
        Centres each centre's rows are compared with (see :func:`nearest_centers`).

    Returns (labels (n,) int64, squared distances to them (n,) float32).
    """
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=len(centers))
    ends = np.cumsum(counts)
    grouped = np.take(descriptors, order, axis=0)
    scaled = -2.0 * centers
    center_norms = np.einsum("kd,kd->k", centers, centers)
    nearest = np.empty(len(order), dtype=np.int64)
    distances = np.empty(len(order), dtype=np.float32)

    def assign_groups(group_centers: np.ndarray) -> None:
        for center in group_centers:
            group = slice(ends[center] - counts[center], ends[center])
            choices = candidates[center]
            squared = grouped[group] @ scaled[choices].T
            squared += center_norms[choices]
            best = squared.argmin(axis=1)
            nearest[group] = choices[best]
            distances[group] = squared[np.arange(len(best)), best]

    occupied = np.flatnonzero(counts)
    # contiguous runs of groups holding about the same number of rows, one per thread
    splits = np.searchsorted(ends[occupied], np.arange(1, n_threads) * len(order) / n_threads)
    with _single_threaded_blas():
        if n_threads > 1:
            with ThreadPoolExecutor(n_threads) as pool:
                list(pool.map(assign_groups, np.split(occupied, splits)))
        else:
            assign_groups(occupied)
    distances += np.einsum("nd,nd->n", grouped, grouped)
    labels, squared_distances = np.empty_like(nearest), np.empty_like(distances)
    labels[order], squared_distances[order] = nearest, np.maximum(distances, 0.0)
    return labels, squared_distances


def mean_centers(
    descriptors: np.ndarray, labels: np.ndarray, distances: np.ndarray, centers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's update: each centre moves to its rows' mean.

    A centre left without rows is re-seeded with the row farthest from its centre (one row per
    empty centre, farthest first), and that row is relabelled to it.

    Returns (centres (k, d) float32, labels (n,) int64).
    """
    n_rows, n_clusters = len(descriptors), len(centers)
    membership = scipy.sparse.csc_matrix(
        (np.ones(n_rows, dtype=np.float32), (labels, np.arange(n_rows))),
        shape=(n_clusters, n_rows),
    )
    sums = np.asarray(membership @ descriptors)
    counts = np.bincount(labels, minlength=n_clusters)
    updated = centers.copy()
    occupied = counts > 0
    updated[occupied] = sums[occupied] / counts[occupied, None]
    empty = np.flatnonzero(~occupied)
    if len(empty):
        farthest = np.argsort(distances, kind="stable")[::-1][: len(empty)]
        updated[empty] = descriptors[farthest]
        labels = labels.copy()
        labels[farthest] = empty
    return updated, labels


def kmeans_centers(
    descriptors: np.ndarray,
    initial: np.ndarray,
    n_iter: int,
    known_labels: np.ndarray | None = None,
    n_candidates: int | None = N_CANDIDATES,
    n_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd k-means on float32 rows from ``initial`` (k, d) centres.

    A row's first assignment compares it with every centre (FAISS exact search); later ones
    only with the ``n_candidates`` centres nearest its current one (every centre when
    ``n_candidates`` is None or there are no more than ``CANDIDATE_MIN_RATIO`` times as many).

    Parameters
    ----------
    descriptors : ndarray of float32, shape (n, d)
    initial : ndarray of float32, shape (k, d)
    n_iter : int
    known_labels : ndarray of int64, shape (m,) with m <= n, or None
        Centres of the first ``m`` rows from an earlier assignment (to centres since moved).
    n_threads : int
        Threads of the candidate search (FAISS's own come from :func:`faiss_threads`).

    Returns the centres (k, d) float32, the rows' labels at the last assignment (n,) int64 and
    their mean squared distance to their centre there.
    """
    centers = np.ascontiguousarray(initial, dtype=np.float32)
    n_rows = len(descriptors)
    candidate_search = n_candidates is not None and len(centers) > CANDIDATE_MIN_RATIO * int(
        n_candidates
    )
    n_known = len(known_labels) if candidate_search and known_labels is not None else 0
    labels = np.empty(n_rows, dtype=np.int64)
    if n_known:
        labels[:n_known] = known_labels
    distances = np.empty(n_rows, dtype=np.float32)
    neighbors = None
    for _ in range(n_iter):
        if n_known:
            neighbors = (
                refreshed_neighbors(centers, neighbors)
                if neighbors is not None and len(centers) > EXACT_GRAPH_MAX_CENTERS
                else nearest_centers(centers, int(n_candidates))
            )
            labels[:n_known], distances[:n_known] = assign_among_candidates(
                descriptors[:n_known], labels[:n_known], centers, neighbors, n_threads
            )
        if n_known < n_rows:
            squared, nearest = _search(_flat_index(centers), descriptors[n_known:], 1)
            labels[n_known:], distances[n_known:] = nearest[:, 0], squared[:, 0]
        mean_distance = float(distances.astype(np.float64).mean())
        centers, labels = mean_centers(descriptors, labels, distances, centers)
        n_known = n_rows if candidate_search else 0
    return centers, labels, mean_distance


def kmajority_centers(
    descriptors: np.ndarray, initial: np.ndarray, n_iter: int
) -> tuple[np.ndarray, float]:
    """k-majority clustering of packed binary descriptors under the Hamming distance.

    Each iteration assigns rows to the nearest centre and sets each centre's bits to its
    members' majority (ties give 0). An empty cluster is re-seeded with the row farthest from
    its centre.

    Returns
    -------
    centers : ndarray of uint8, shape (n_clusters, n_bytes)
    mean_distance : float
        Mean Hamming distance of the rows to their centre at the last assignment.
    """
    centers = initial.copy()
    n_clusters = len(centers)
    bits = np.unpackbits(descriptors, axis=1)
    for _ in range(n_iter):
        distances, labels = _search(_flat_index(centers), descriptors, 1)
        labels = labels[:, 0]
        counts = np.bincount(labels, minlength=n_clusters)
        occupied = counts > 0
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[occupied]
        votes = np.add.reduceat(
            bits[np.argsort(labels, kind="stable")], starts, axis=0, dtype=np.int32
        )
        updated = centers.copy()
        updated[occupied] = np.packbits(2 * votes > counts[occupied, None], axis=1)
        n_empty = int((~occupied).sum())
        if n_empty:
            farthest = np.argsort(distances[:, 0], kind="stable")[::-1][:n_empty]
            updated[~occupied] = descriptors[farthest]
        if np.array_equal(updated, centers):
            break
        centers = updated
    return centers, float(distances.mean())


def nested_sample_sizes(n_rows: int, n_clusters: int) -> list[int]:
    """Rows in each coarse-to-fine sample, smallest first, all below ``n_rows``.

    The first holds ``NESTED_FIRST_ROWS_PER_CLUSTER`` rows per cluster, each next one
    ``NESTED_GROWTH`` times more. Each sample is a prefix of one random order of the rows, so
    it contains the samples before it.
    """
    sizes = []
    size = NESTED_FIRST_ROWS_PER_CLUSTER * n_clusters
    while size < n_rows:
        sizes.append(size)
        size *= NESTED_GROWTH
    return sizes


def cluster_centers(
    descriptors: np.ndarray,
    n_clusters: int,
    n_iter: int,
    init: str,
    seed: int,
    coarse_to_fine: bool = True,
    n_candidates: int | None = N_CANDIDATES,
    n_threads: int = 1,
) -> tuple[np.ndarray, float]:
    """k-means for float32 rows, k-majority for packed binary (uint8) rows.

    With ``coarse_to_fine``, ``NESTED_STAGE_ITER`` iterations run on each of the nested samples
    (:func:`nested_sample_sizes`; the rows are shuffled into a copy whose prefixes they are)
    before the ``n_iter`` iterations on all rows. Float rows keep their labels from stage to
    stage, so only the rows new to a stage are compared with every centre (see
    :func:`kmeans_centers` for ``n_candidates``).

    Returns the centres and the rows' mean squared (Hamming) distance to them.
    """
    centers = initial_centers(descriptors, n_clusters, init, seed, coarse_to_fine)
    sizes = nested_sample_sizes(len(descriptors), n_clusters) if coarse_to_fine else []
    if sizes:
        order = np.random.default_rng(seed).permutation(len(descriptors))
        descriptors = np.take(descriptors, order, axis=0)
    if descriptors.dtype == np.uint8:
        for size in sizes:
            centers, _ = kmajority_centers(descriptors[:size], centers, NESTED_STAGE_ITER)
        return kmajority_centers(descriptors, centers, n_iter)
    labels = None
    for size in sizes:
        centers, labels, _ = kmeans_centers(
            descriptors[:size], centers, NESTED_STAGE_ITER, labels, n_candidates, n_threads
        )
    centers, _, mean_distance = kmeans_centers(
        descriptors, centers, n_iter, labels, n_candidates, n_threads
    )
    return centers, mean_distance


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


class Vocabulary(BaseEstimator):
    """What every vocabulary offers once fitted; subclasses implement ``fit`` and ``_search``."""

    def _search(self, descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(squared distances (n, k) float32, words (n, k) int64), nearest first."""
        raise NotImplementedError

    @property
    def n_words_(self) -> int:
        """Number of visual words."""
        raise NotImplementedError

    def _check_fitted_descriptors(self, descriptors: Any) -> np.ndarray:
        if not hasattr(self, "bandwidth_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit first")
        descriptors = check_descriptors(descriptors)
        if descriptors.dtype != self.dtype_ or descriptors.shape[1] != self.dimension_:
            kind = "binary (uint8)" if self.dtype_ == np.uint8 else "float"
            raise ValueError(
                f"descriptors are {descriptors.dtype} with {descriptors.shape[1]} columns but the "
                f"vocabulary was built on {kind} descriptors with {self.dimension_} columns"
            )
        return descriptors

    def assign(self, descriptors: np.ndarray) -> np.ndarray:
        """Word of each descriptor.

        Parameters
        ----------
        descriptors : ndarray, shape (n, d); float32, or uint8 packed bits for binary vocabularies

        Returns
        -------
        ndarray of int64, shape (n,), in ``[0, n_words_)``.
        """
        descriptors = self._check_fitted_descriptors(descriptors)
        with faiss_threads(self.n_jobs):
            return self._search(descriptors, 1)[1][:, 0]

    def assign_soft(self, descriptors: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest words of each descriptor with kernel-codebook weights.

        Weights are ``exp(-d^2 / (2 sigma^2))``, normalised per descriptor, with ``sigma^2``
        (``bandwidth_``) the mean squared distance of the training descriptors to their word.

        Returns
        -------
        words : ndarray of int64, shape (n, k)
        weights : ndarray of float32, shape (n, k); each row sums to 1
        """
        descriptors = self._check_fitted_descriptors(descriptors)
        if not 1 <= int(k) <= self.n_words_:
            raise ValueError(f"k must be between 1 and n_words_={self.n_words_}; got {k}")
        with faiss_threads(self.n_jobs):
            distances, words = self._search(descriptors, int(k))
        return words, soft_weights(distances, self.bandwidth_)

    def quantization_error(self, descriptors: np.ndarray) -> float:
        """Mean squared distance of descriptors to their word (mean Hamming distance if binary)."""
        descriptors = self._check_fitted_descriptors(descriptors)
        with faiss_threads(self.n_jobs):
            return float(self._search(descriptors, 1)[0].astype(np.float64).mean())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The learned state as named arrays (for :func:`imagelearn.core.bundle.save_bundle`)."""
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Vocabulary:
        """A fitted vocabulary from ``get_params()`` and :meth:`to_arrays` output."""
        raise NotImplementedError


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
            raise ValueError(f"index must be one of {INDEX_KINDS}; got {self.index!r}")
        _check_init(self.init)
        if int(self.n_words) < 1 or int(self.n_iter) < 1:
            raise ValueError(f"n_words and n_iter must be >= 1; got {self.n_words}, {self.n_iter}")
        if len(descriptors) < self.n_words:
            raise ValueError(
                f"{self.n_words} words need at least as many descriptors; got {len(descriptors)}"
            )
        if self.n_candidates is not None and int(self.n_candidates) < 2:
            raise ValueError(f"n_candidates must be None or >= 2; got {self.n_candidates!r}")
        with faiss_threads(self.n_jobs):
            self.words_, self.bandwidth_ = cluster_centers(
                descriptors,
                int(self.n_words),
                int(self.n_iter),
                self.init,
                _seed(self.random_state),
                bool(self.coarse_to_fine),
                None if self.n_candidates is None else int(self.n_candidates),
                resolve_n_jobs(self.n_jobs),
            )
            self._index = _flat_index(self.words_, self.index)
        self.dtype_, self.dimension_ = descriptors.dtype, descriptors.shape[1]
        return self

    @property
    def n_words_(self) -> int:
        return len(self.words_)

    def _search(self, descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _search(self._index, descriptors, k)

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"words": self.words_, "bandwidth": np.array([self.bandwidth_], dtype=np.float64)}
        if self.index == "hnsw":  # the graph is saved so that a reload assigns identically
            serialize = (
                faiss.serialize_index_binary if self.dtype_ == np.uint8 else faiss.serialize_index
            )
            arrays["hnsw_graph"] = serialize(self._index)
        return arrays

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> KMeansVocabulary:
        vocabulary = cls(**params)
        vocabulary.words_ = np.ascontiguousarray(arrays["words"])
        vocabulary.dtype_ = vocabulary.words_.dtype
        vocabulary.dimension_ = vocabulary.words_.shape[1]
        vocabulary.bandwidth_ = float(arrays["bandwidth"][0])
        if "hnsw_graph" in arrays:
            binary = vocabulary.dtype_ == np.uint8
            deserialize = faiss.deserialize_index_binary if binary else faiss.deserialize_index
            vocabulary._index = deserialize(np.ascontiguousarray(arrays["hnsw_graph"]))
            vocabulary._index.hnsw.efSearch = HNSW_SEARCH_DEPTH
        else:
            vocabulary._index = _flat_index(vocabulary.words_, vocabulary.index)
        return vocabulary


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
        Leaf of each training descriptor, from the same descent as :meth:`assign`.
    """

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
        if branching < 2 or depth < 1 or int(self.n_iter) < 1 or int(self.beam_width) < 1:
            raise ValueError(
                f"branching must be >= 2, depth, n_iter and beam_width >= 1; got {self.branching}, "
                f"{self.depth}, {self.n_iter}, {self.beam_width}"
            )
        if len(descriptors) < branching:
            raise ValueError(
                f"branching={branching} needs at least as many descriptors; got {len(descriptors)}"
            )
        _check_init(self.init)
        rng = check_random_state(self.random_state)
        self.centers_, self.first_child_, self.n_children_ = [], [], []
        node_of_row = np.zeros(len(descriptors), dtype=np.int64)
        parent_centers = [self._mean_center(descriptors)]
        with faiss_threads(self.n_jobs), _single_threaded_blas():
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
                                _seed(rng),
                                bool(self.coarse_to_fine),
                            )[0]
                        )
                    else:
                        children.append(center[None])
                    n_children.append(len(children[-1]))
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
        for rows in _chunks(len(descriptors), self._chunk_rows()):
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
        with _single_threaded_blas():
            for rows in _chunks(len(descriptors), self._chunk_rows()):
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

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"bandwidth": np.array([self.bandwidth_], dtype=np.float64)}
        for level in range(len(self.centers_)):
            arrays[f"level{level}.centers"] = self.centers_[level]
            arrays[f"level{level}.first_child"] = self.first_child_[level]
            arrays[f"level{level}.n_children"] = self.n_children_[level]
        return arrays

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> VocabularyTree:
        tree = cls(**params)
        levels = range(int(tree.depth))
        tree.centers_ = [np.ascontiguousarray(arrays[f"level{level}.centers"]) for level in levels]
        tree.first_child_ = [
            arrays[f"level{level}.first_child"].astype(np.int64) for level in levels
        ]
        tree.n_children_ = [arrays[f"level{level}.n_children"].astype(np.int64) for level in levels]
        tree.dtype_ = tree.centers_[0].dtype
        tree.dimension_ = tree.centers_[0].shape[1]
        tree.bandwidth_ = float(arrays["bandwidth"][0])
        return tree


#: Vocabulary kinds by name, for :func:`make_vocabulary` and ``BagOfFeatures(vocabulary=...)``.
VOCABULARIES: dict[str, type[Vocabulary]] = {"kmeans": KMeansVocabulary, "tree": VocabularyTree}


def make_vocabulary(kind: str, **params: Any) -> Vocabulary:
    """An unfitted vocabulary of a registered ``kind`` ("kmeans" or "tree") with ``params``."""
    if kind not in VOCABULARIES:
        raise ValueError(f"unknown vocabulary {kind!r}; choose one of {sorted(VOCABULARIES)}")
    return VOCABULARIES[kind](**params)
