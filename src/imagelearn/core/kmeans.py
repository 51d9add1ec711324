"""k-means on arrays: seeding, Lloyd iterations with candidate search, exact assignment.

One engine for every clustering of vectors in the package (visual vocabularies, image
clustering, pixel clustering). Rows are float32 (squared Euclidean distance) or packed binary
codes in uint8 (Hamming distance, which is the squared Euclidean distance between the bit
vectors); binary rows are clustered by k-majority (Grana et al., 2013): Lloyd iterations where
each centre is the bitwise majority vote of its members, so centres stay binary.

Seeding is greedy k-means++ (Arthur & Vassilvitskii, 2007) on a subsample. By default, Lloyd
starts coarse-to-fine (nested mini-batch k-means, Newling & Fleuret, NeurIPS 2016): a few
iterations on a random sample of 16 rows per cluster, then on a 3x larger sample that contains
it, and so on, before the ``n_iter`` iterations on every row. The early iterations cost a
fraction of a full one, so far fewer full iterations reach a given error.

Float Lloyd compares each row with every centre only once, at its first assignment; the later
iterations compare it with the ``n_candidates`` centres nearest its current centre (cluster
closures, Wang et al., CVPR 2012), which keeps each step a small matrix product per centre.
The current centre is always a candidate, so no step increases the error; ``None`` compares
every centre at every iteration (exact Lloyd). Iterations stop early once the centres no longer
move (a fixed point: further iterations would repeat it) or, given a tolerance, move less than
it (scikit-learn's ``tol``).

Assigning rows to fitted centres (:func:`exact_index`, :func:`search`) needs FAISS alone; SciPy
and scikit-learn load only to cluster, so that a search assigns its words without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from imagelearn.core.errors import ParameterError
from imagelearn.core.execution import thread_map
from imagelearn.core.progress import Counter
from imagelearn.core.threads import faiss_threads, resolve_n_jobs, single_threaded_blas

#: Rows searched at once when assigning: bounds the buffers (16,384 128-D float32 rows are
#: 8 MB) and keeps timings steadier on a busy machine than larger chunks.
ASSIGN_CHUNK_ROWS = 16_384
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
#: Centres compared with a row after its first assignment: its centre's nearest centres.
N_CANDIDATES = 32
#: Candidate search is used when there are more than this many centres per candidate.
CANDIDATE_MIN_RATIO = 4
#: Above this many centres, the centres' neighbour graph is not searched exactly at every
#: iteration (k^2 d work) but refreshed from the last one (see :func:`refreshed_neighbors`),
#: examining the neighbours of each centre's ``GRAPH_REFRESH_HOPS`` nearest neighbours.
EXACT_GRAPH_MAX_CENTERS = 8192
GRAPH_REFRESH_HOPS = 8
#: Centres refreshed at once (bounds the gathered candidate centres' memory).
GRAPH_REFRESH_CHUNK = 512
#: Centres whose nearest centres are searched at once (bounds the distance block: 32 MB for
#: 8192 centres).
NEIGHBOR_CHUNK_CENTERS = 1024
#: Centres whose candidates' blocks the candidate search gathers at once (bounds their memory:
#: 256 x 128 x 32 float32 is 4 MB).
CANDIDATE_BLOCK_CENTERS = 256


def check_init(init: str) -> None:
    """Raise :class:`ParameterError` unless ``init`` is one of :data:`INIT_KINDS`."""
    if init not in INIT_KINDS:
        raise ParameterError("init", f"init must be one of {INIT_KINDS}; got {init!r}")


def check_n_candidates(n_candidates: int | None) -> None:
    """Raise :class:`ParameterError` unless ``n_candidates`` is None or at least 2."""
    if n_candidates is not None and int(n_candidates) < 2:
        raise ParameterError(
            "n_candidates", f"n_candidates must be None or >= 2; got {n_candidates!r}"
        )


def seed_from(random_state: int | np.random.RandomState | None) -> int:
    """An int seed drawn from ``random_state`` (scikit-learn's convention)."""
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def chunks(n_rows: int, chunk_rows: int) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk_rows`` rows covering ``range(n_rows)``."""
    for start in range(0, n_rows, chunk_rows):
        yield slice(start, min(start + chunk_rows, n_rows))


def exact_index(centers: np.ndarray) -> faiss.Index | faiss.IndexBinary:
    """A brute-force FAISS index over ``centers``: L2 for float32, Hamming for packed uint8."""
    if centers.dtype == np.uint8:
        index = faiss.IndexBinaryFlat(centers.shape[1] * 8)
    else:
        index = faiss.IndexFlatL2(centers.shape[1])
    index.add(centers)
    return index


def search(
    index: faiss.Index | faiss.IndexBinary, points: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` nearest entries of ``index`` for every row, in chunks of ``ASSIGN_CHUNK_ROWS``.

    Returns (squared distances (n, k) float32, Hamming for binary; entries (n, k) int64),
    nearest first.
    """
    distances = np.empty((len(points), k), dtype=np.float32)
    nearest = np.empty((len(points), k), dtype=np.int64)
    for rows in chunks(len(points), ASSIGN_CHUNK_ROWS):
        chunk_distances, nearest[rows] = index.search(points[rows], k)
        distances[rows] = chunk_distances
    return distances, nearest


def assign(points: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every row, by exact search.

    Parameters
    ----------
    points : ndarray of float32 or packed uint8, shape (n, d)
    centers : ndarray of the same dtype, shape (k, d)

    Returns (labels (n,) int64, squared (Hamming) distances to them (n,) float32).
    """
    distances, labels = search(exact_index(centers), points, 1)
    return labels[:, 0], distances[:, 0]


def kmeanspp_seeds(
    points: np.ndarray,
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
    ndarray, shape (n_clusters, d), same dtype as ``points``
    """
    rng = np.random.default_rng(seed)
    n_rows = min(len(points), max(rows_per_cluster * n_clusters, KMEANSPP_MIN_ROWS))
    rows = points[np.sort(rng.choice(len(points), n_rows, replace=False))]
    if rows.dtype == np.uint8:

        def squared_distances(indices: np.ndarray) -> np.ndarray:
            """(len(indices), n_rows) Hamming distances to the rows ``indices``."""
            return np.stack(
                [np.bitwise_count(rows ^ rows[i]).sum(axis=1, dtype=np.int64) for i in indices]
            ).astype(np.float32)
    else:
        norms = np.einsum("nd,nd->n", rows, rows)
        rows_t = np.ascontiguousarray(rows.T)  # a contiguous right operand: faster products

        def squared_distances(indices: np.ndarray) -> np.ndarray:
            """(len(indices), n_rows) squared Euclidean distances to the rows ``indices``."""
            distances = (-2.0 * rows[indices]) @ rows_t
            distances += norms
            distances += norms[indices, None]
            return np.maximum(distances, 0.0, out=distances)

    n_candidates = 2 + int(np.log(n_clusters))
    chosen = [int(rng.integers(n_rows))]
    nearest = squared_distances(np.array(chosen))[0]
    with single_threaded_blas():
        for _ in range(1, n_clusters):
            cumulative = np.cumsum(nearest, dtype=np.float64)
            if cumulative[-1] <= 0:  # fewer distinct rows than clusters: any row not chosen yet
                chosen.append(int(rng.choice(np.setdiff1d(np.arange(n_rows), chosen))))
                continue
            draws = np.searchsorted(
                cumulative, rng.random(n_candidates) * cumulative[-1], side="right"
            )
            candidates = np.minimum(draws, n_rows - 1)
            updated = np.minimum(nearest, squared_distances(candidates))
            best = int(updated.sum(axis=1, dtype=np.float64).argmin())
            chosen.append(int(candidates[best]))
            nearest = updated[best]
    return np.ascontiguousarray(rows[chosen])


def initial_centers(
    points: np.ndarray, n_clusters: int, init: str, seed: int, coarse_to_fine: bool = False
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
        return kmeanspp_seeds(points, n_clusters, seed, rows_per_cluster)
    rng = np.random.default_rng(seed)
    return points[np.sort(rng.choice(len(points), n_clusters, replace=False))].copy()


def _with_own_center(neighbors: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Make sure each row of ``neighbors`` holds its own centre ``own`` (duplicates may hide it)."""
    missing = ~(neighbors == own[:, None]).any(axis=1)
    neighbors[missing, -1] = own[missing]
    return neighbors


def nearest_centers(centers: np.ndarray, n_neighbors: int) -> np.ndarray:
    """(k, n_neighbors) int64: each float centre's nearest centres, nearest first, itself
    included, exactly.

    One matrix product per ``NEIGHBOR_CHUNK_CENTERS`` centres, then a partial sort of each row
    (1.5-10x faster than FAISS's heap search for k = 1000-256 and 32 neighbours).
    """
    norms = np.einsum("kd,kd->k", centers, centers)
    scaled_t = np.ascontiguousarray(-2.0 * centers.T)
    neighbors = np.empty((len(centers), n_neighbors), dtype=np.int64)
    for rows in chunks(len(centers), NEIGHBOR_CHUNK_CENTERS):
        squared = centers[rows] @ scaled_t  # squared distances less each row's own norm
        squared += norms
        nearest = np.argpartition(squared, n_neighbors - 1, axis=1)[:, :n_neighbors]
        by_distance = np.argsort(np.take_along_axis(squared, nearest, axis=1), axis=1)
        neighbors[rows] = np.take_along_axis(nearest, by_distance, axis=1)
    return _with_own_center(neighbors, np.arange(len(centers)))


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
    for rows in chunks(len(centers), GRAPH_REFRESH_CHUNK):
        pool = np.sort(
            previous[previous[rows, :GRAPH_REFRESH_HOPS]].reshape(len(previous[rows]), -1)
        )
        products = np.matmul(centers[pool], centers[rows, :, None])[..., 0]
        squared = norms[pool] - 2.0 * products + norms[rows, None]
        squared[:, 1:][pool[:, 1:] == pool[:, :-1]] = np.inf  # each candidate once
        best = np.argpartition(squared, n_neighbors - 1, axis=1)[:, :n_neighbors]
        refreshed[rows] = np.take_along_axis(pool, best, axis=1)
    return _with_own_center(refreshed, np.arange(len(centers)))


def assign_among_candidates(
    points: np.ndarray,
    labels: np.ndarray,
    centers: np.ndarray,
    candidates: np.ndarray,
    n_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each row among ``candidates[labels[row]]`` (which holds ``labels[row]``).

    Rows are grouped by their current centre, so each group costs one (rows, d) x (d, m) matrix
    product against its candidates' (d, m) block, gathered contiguous
    ``CANDIDATE_BLOCK_CENTERS`` centres at a time (a transposed view halves a small product's
    speed). Each group's rows are gathered on their own (a small buffer that stays in cache,
    not a sorted copy of every row); the products of all rows fill one (n, m) buffer, whose
    row minima are then found at once. ``n_threads`` threads of the shared pool
    (:func:`~imagelearn.core.execution.thread_map`) share the groups (the products release the
    GIL).

    Parameters
    ----------
    points : ndarray of float32, shape (n, d)
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
    bounds = [0, *ends.tolist()]  # group of centre c: rows bounds[c] to bounds[c + 1]
    scaled = -2.0 * centers
    candidate_norms = np.einsum("kd,kd->k", centers, centers)[candidates]
    products = np.empty((len(order), candidates.shape[1]), dtype=np.float32)

    def multiply_groups(group_centers: np.ndarray) -> None:
        for first in range(0, len(group_centers), CANDIDATE_BLOCK_CENTERS):
            block_centers = group_centers[first : first + CANDIDATE_BLOCK_CENTERS]
            blocks = np.ascontiguousarray(scaled[candidates[block_centers]].transpose(0, 2, 1))
            for block, center in zip(blocks, block_centers.tolist(), strict=True):
                group = slice(bounds[center], bounds[center + 1])
                np.matmul(points.take(order[group], axis=0), block, out=products[group])
                products[group] += candidate_norms[center]

    occupied = np.flatnonzero(counts)
    # contiguous runs of groups holding about the same number of rows, one per thread
    splits = np.searchsorted(ends[occupied], np.arange(1, n_threads) * len(order) / n_threads)
    with single_threaded_blas():
        list(thread_map(multiply_groups, np.split(occupied, splits), n_threads))
    best = products.argmin(axis=1)
    nearest = candidates[labels[order], best]
    distances = np.take_along_axis(products, best[:, None], axis=1)[:, 0]
    distances += np.einsum("nd,nd->n", points, points)[order]
    labels, squared_distances = np.empty_like(nearest), np.empty_like(distances)
    labels[order], squared_distances[order] = nearest, np.maximum(distances, 0.0)
    return labels, squared_distances


def mean_centers(
    points: np.ndarray, labels: np.ndarray, distances: np.ndarray, centers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's update: each centre moves to its rows' mean.

    A centre left without rows is re-seeded with the row farthest from its centre (one row per
    empty centre, farthest first), and that row is relabelled to it.

    Returns (centres (k, d) float32, labels (n,) int64).
    """
    import scipy.sparse

    n_rows, n_clusters = len(points), len(centers)
    membership = scipy.sparse.csc_matrix(
        (np.ones(n_rows, dtype=np.float32), (labels, np.arange(n_rows))),
        shape=(n_clusters, n_rows),
    )
    sums = np.asarray(membership @ points)
    counts = np.bincount(labels, minlength=n_clusters)
    updated = centers.copy()
    occupied = counts > 0
    updated[occupied] = sums[occupied] / counts[occupied, None]
    empty = np.flatnonzero(~occupied)
    if len(empty):
        farthest = np.argsort(distances, kind="stable")[::-1][: len(empty)]
        updated[empty] = points[farthest]
        labels = labels.copy()
        labels[farthest] = empty
    return updated, labels


def kmeans_centers(
    points: np.ndarray,
    initial: np.ndarray,
    n_iter: int,
    known_labels: np.ndarray | None = None,
    n_candidates: int | None = N_CANDIDATES,
    n_threads: int = 1,
    shift_tol: float = 0.0,
    counter: Counter | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd k-means on float32 rows from ``initial`` (k, d) centres.

    A row's first assignment compares it with every centre (FAISS exact search); later ones
    only with the ``n_candidates`` centres nearest its current one (every centre when
    ``n_candidates`` is None or there are no more than ``CANDIDATE_MIN_RATIO`` times as many).
    Stops before ``n_iter`` iterations when the centres' total squared shift in an iteration
    is at most ``shift_tol`` (0: when they no longer move at all).

    Parameters
    ----------
    points : ndarray of float32, shape (n, d)
    initial : ndarray of float32, shape (k, d)
    n_iter : int
    known_labels : ndarray of int64, shape (m,) with m <= n, or None
        Centres of the first ``m`` rows from an earlier assignment (to centres since moved).
    n_threads : int
        Threads of the candidate search (FAISS's own come from :func:`faiss_threads`).
    shift_tol : float
        In squared-distance units.
    counter : Counter, optional
        Advanced by ``n`` rows at every iteration (a progress bar).

    Returns the centres (k, d) float32, the rows' labels at the last assignment (n,) int64 and
    their mean squared distance to their centre there.
    """
    centers = np.ascontiguousarray(initial, dtype=np.float32)
    n_rows = len(points)
    candidate_search = n_candidates is not None and len(centers) > CANDIDATE_MIN_RATIO * int(
        n_candidates
    )
    # a refreshed graph can still improve when the centres stand still: no early stop then
    refreshed_graph = candidate_search and len(centers) > EXACT_GRAPH_MAX_CENTERS
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
                if neighbors is not None and refreshed_graph
                else nearest_centers(centers, int(n_candidates))
            )
            labels[:n_known], distances[:n_known] = assign_among_candidates(
                points[:n_known], labels[:n_known], centers, neighbors, n_threads
            )
        if n_known < n_rows:
            labels[n_known:], distances[n_known:] = assign(points[n_known:], centers)
        mean_distance = float(distances.astype(np.float64).mean())
        updated, labels = mean_centers(points, labels, distances, centers)
        n_known = n_rows if candidate_search else 0
        shift = float(np.square(updated - centers, dtype=np.float64).sum())
        centers = updated
        if counter is not None:
            counter.update(n_rows)
        if not refreshed_graph and shift <= shift_tol:
            break
    return centers, labels, mean_distance


def kmajority_centers(
    points: np.ndarray, initial: np.ndarray, n_iter: int, counter: Counter | None = None
) -> tuple[np.ndarray, float]:
    """k-majority clustering of packed binary rows under the Hamming distance.

    Each iteration assigns rows to the nearest centre and sets each centre's bits to its
    members' majority (ties give 0). An empty cluster is re-seeded with the row farthest from
    its centre. Stops before ``n_iter`` iterations when the centres no longer change.
    ``counter`` (a progress bar) is advanced by ``n`` rows at every iteration.

    Returns
    -------
    centers : ndarray of uint8, shape (n_clusters, n_bytes)
    mean_distance : float
        Mean Hamming distance of the rows to their centre at the last assignment.
    """
    centers = initial.copy()
    n_clusters = len(centers)
    bits = np.unpackbits(points, axis=1)
    for _ in range(n_iter):
        labels, distances = assign(points, centers)
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
            farthest = np.argsort(distances, kind="stable")[::-1][:n_empty]
            updated[~occupied] = points[farthest]
        if counter is not None:
            counter.update(len(points))
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


def lloyd_rows(n_rows: int, n_clusters: int, n_iter: int, coarse_to_fine: bool = True) -> int:
    """Rows :func:`cluster_centers` assigns in all its iterations, at most (fewer when it
    stops early): the total of its progress ``counter``."""
    sizes = nested_sample_sizes(n_rows, n_clusters) if coarse_to_fine else []
    return NESTED_STAGE_ITER * sum(sizes) + n_iter * n_rows


def cluster_centers(
    points: np.ndarray,
    n_clusters: int,
    n_iter: int,
    init: str,
    seed: int,
    coarse_to_fine: bool = True,
    n_candidates: int | None = N_CANDIDATES,
    n_threads: int = 1,
    shift_tol: float = 0.0,
    counter: Counter | None = None,
) -> tuple[np.ndarray, float]:
    """k-means for float32 rows, k-majority for packed binary (uint8) rows.

    With ``coarse_to_fine``, ``NESTED_STAGE_ITER`` iterations run on each of the nested samples
    (:func:`nested_sample_sizes`; the rows are shuffled into a copy whose prefixes they are)
    before the ``n_iter`` iterations on all rows. Float rows keep their labels from stage to
    stage, so only the rows new to a stage are compared with every centre (see
    :func:`kmeans_centers` for ``n_candidates`` and ``shift_tol``, which binary rows ignore:
    k-majority stops when its centres no longer change). ``counter`` (a progress bar) is
    advanced by the rows of every iteration, :func:`lloyd_rows` in all.

    Returns the centres and the rows' mean squared (Hamming) distance to them at the last
    assignment.
    """
    centers = initial_centers(points, n_clusters, init, seed, coarse_to_fine)
    sizes = nested_sample_sizes(len(points), n_clusters) if coarse_to_fine else []
    if sizes:
        order = np.random.default_rng(seed).permutation(len(points))
        points = np.take(points, order, axis=0)
    if points.dtype == np.uint8:
        for size in sizes:
            centers, _ = kmajority_centers(points[:size], centers, NESTED_STAGE_ITER, counter)
        return kmajority_centers(points, centers, n_iter, counter)
    labels = None
    for size in sizes:
        centers, labels, _ = kmeans_centers(
            points[:size],
            centers,
            NESTED_STAGE_ITER,
            labels,
            n_candidates,
            n_threads,
            shift_tol,
            counter,
        )
    centers, _, mean_distance = kmeans_centers(
        points, centers, n_iter, labels, n_candidates, n_threads, shift_tol, counter
    )
    return centers, mean_distance


@dataclass(frozen=True)
class KMeansResult:
    """The best clustering found by :func:`kmeans`.

    Attributes
    ----------
    centers : ndarray, shape (n_clusters, d); float32, or packed uint8 for binary rows
    labels : ndarray of int64, shape (n,)
        Nearest centre of every row (exact search against the final centres).
    mean_squared_distance : float
        Mean squared distance (Hamming for binary rows) of the rows to their nearest centre.
    """

    centers: np.ndarray
    labels: np.ndarray
    mean_squared_distance: float


def kmeans(
    points: Any,
    n_clusters: int,
    n_iter: int = 20,
    *,
    init: str = "auto",
    n_init: int = 1,
    coarse_to_fine: bool = True,
    n_candidates: int | None = N_CANDIDATES,
    tol: float = 0.0,
    n_jobs: int | None = -1,
    random_state: int | np.random.RandomState | None = 0,
) -> KMeansResult:
    """k-means (k-majority for packed uint8 rows), best of ``n_init`` seedings.

    Parameters
    ----------
    points : array-like, shape (n, d)
        Real-valued rows (clustered in float32) or packed binary codes (uint8).
    n_clusters : int
        Between 1 and ``n``.
    n_iter : int
        Lloyd iterations on every row, at most (see :func:`cluster_centers`).
    init, coarse_to_fine, n_candidates
        See :func:`initial_centers`, :func:`cluster_centers` and :func:`kmeans_centers`.
    n_init : int
        Independent seedings; the run with the smallest final error is kept.
    tol : float
        Stop a run once its centres' total squared shift in an iteration is at most ``tol``
        times the rows' mean per-column variance (scikit-learn's ``KMeans(tol=...)``); 0 runs
        until ``n_iter`` iterations or an exact fixed point.
    n_jobs : int or None
        FAISS and candidate-search threads; -1 uses all cores.
    random_state : int, RandomState or None
        Seeds every run.

    Returns
    -------
    KMeansResult
    """
    points = np.asarray(points)
    if points.dtype != np.uint8:
        points = np.ascontiguousarray(points, dtype=np.float32)
    if points.ndim != 2:
        raise ParameterError("points", f"points must be a 2-D array (n, d); got {points.shape}")
    if not 1 <= int(n_clusters) <= len(points):
        raise ParameterError(
            "n_clusters",
            f"n_clusters must be between 1 and the number of rows ({len(points)}); "
            f"got {n_clusters}",
        )
    for name, value in (("n_iter", n_iter), ("n_init", n_init)):
        if int(value) < 1:
            raise ParameterError(name, f"{name} must be >= 1; got {value!r}")
    check_init(init)
    check_n_candidates(n_candidates)
    if tol < 0:
        raise ParameterError("tol", f"tol must be >= 0; got {tol!r}")
    shift_tol = (
        float(tol) * float(points.var(axis=0, dtype=np.float64).mean())
        if tol and points.dtype != np.uint8
        else 0.0
    )
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    best = None
    with faiss_threads(n_jobs):
        for _ in range(int(n_init)):
            centers, _ = cluster_centers(
                points,
                int(n_clusters),
                int(n_iter),
                init,
                seed_from(rng),
                coarse_to_fine,
                n_candidates,
                resolve_n_jobs(n_jobs),
                shift_tol,
            )
            labels, distances = assign(points, centers)
            error = float(distances.astype(np.float64).mean())
            if best is None or error < best.mean_squared_distance:
                best = KMeansResult(centers, labels, error)
    return best
