"""A 2-D map of an index's images, similar images near each other: for browsing a collection.

>>> from imagelearn.retrieval import Index
>>> from imagelearn.retrieval.image_map import image_map
>>> layout = image_map(Index.open("photos.index"))  # doctest: +SKIP
>>> layout.ids[:3], layout.xy[:3]  # doctest: +SKIP

The map is the t-SNE (scikit-learn; after a PCA to :data:`PCA_DIMENSIONS` dimensions) of the
images' global descriptors, or of their tf-idf bags of visual words through a truncated SVD
when the index holds no global descriptors. Up to :data:`TSNE_LIMIT` images are laid out by
t-SNE (a seeded sample beyond), the others placed among their :data:`NEIGHBORS` most similar
laid-out images.

The writer keeps a map with the index (``map-<generation>.safetensors``, named by the
manifest): ``build``, ``add`` and ``tag`` lay out the images a map lacks near their
neighbours, and lay out the whole collection afresh once those outnumber
:data:`REFRESH_FRACTION` of it. :func:`image_map` reads it (removed images left out); an index
written before maps, which a reader may not write, gets one computed once and kept in the
cache home (``index/``), keyed by the snapshot.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from imagelearn.core.bundle import BundleError, atomic_write_bytes, member_path
from imagelearn.core.cache import CacheBudget, cache_root, mark_used

if TYPE_CHECKING:
    from imagelearn.retrieval.index import Index

log = logging.getLogger(__name__)

#: Images laid out by t-SNE at most; the others are placed among their neighbours. A map of
#: 500 images takes 3 s on two busy cores, of 10,000 16-35 s, of 50,000 33-47 s (two runs of
#: bench_browse at load 5-10).
TSNE_LIMIT = 10_000
#: t-SNE iterations: 500 lay out clusters as 1,000 do, in a third of the time.
TSNE_ITERATIONS = 500
#: Dimensions kept by the PCA (or truncated SVD) before t-SNE.
PCA_DIMENSIONS = 50
#: Laid-out neighbours an image is placed among (weighted by similarity).
NEIGHBORS = 5
#: A map is laid out afresh when the images it lacks exceed this fraction of those it holds.
REFRESH_FRACTION = 0.25
#: Images described at once (descriptors or bags) when placing many.
CHUNK = 1024


@dataclass(frozen=True)
class ImageMap:
    """Positions of images on a 2-D map.

    Attributes
    ----------
    ids : ndarray of int64, shape (n,)
        Image ids, ascending.
    xy : ndarray of float32, shape (n, 2)
        Positions in [0, 1] (x right, y down; both axes scaled alike).
    """

    ids: np.ndarray
    xy: np.ndarray

    def restricted(self, ids: np.ndarray) -> ImageMap:
        """The positions of those of ``ids`` that the map holds."""
        keep = np.isin(self.ids, ids)
        return ImageMap(self.ids[keep], self.xy[keep])

    def save(self, path: str | os.PathLike) -> None:
        """Write ``ids`` and ``xy`` as one safetensors file, atomically."""
        from safetensors.numpy import save

        data = save(
            {
                "ids": np.ascontiguousarray(self.ids, dtype=np.int64),
                "xy": np.ascontiguousarray(self.xy, dtype=np.float32),
            }
        )
        atomic_write_bytes(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImageMap:
        """Read a map that :meth:`save` wrote.

        Raises
        ------
        FileNotFoundError
            No file (a writer replaced the snapshot meanwhile).
        BundleError
            Not a map: unreadable, or arrays of the wrong shapes, types or range.
        """
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(path))
        except FileNotFoundError:
            raise
        except Exception as error:  # safetensors has its own error types for corrupt files
            raise BundleError(f"{path}: corrupt map ({error})") from error
        ids, xy = arrays.get("ids"), arrays.get("xy")
        if (
            ids is None
            or xy is None
            or ids.dtype != np.int64
            or xy.dtype != np.float32
            or ids.ndim != 1
            or xy.shape != (len(ids), 2)
            or not np.all(np.isfinite(xy))
            or (len(ids) and (ids.min() < 0 or np.any(np.diff(ids) <= 0)))
        ):
            raise BundleError(f"{path}: not an image map (ids (n,) int64 ascending, xy (n, 2))")
        return cls(ids, np.clip(xy, 0.0, 1.0))


def image_map(index: Index, cache_dir: str | os.PathLike | None = None) -> ImageMap:
    """The 2-D map of the searchable images of ``index`` (one position per id of
    :meth:`Index.ids`).

    The map stored with the index, when the manifest names one (images added meanwhile by an
    older writer placed among their neighbours); else the one cached for this snapshot; else
    computed (seconds per thousand images) and cached: the index directory is never written.

    Parameters
    ----------
    index : Index
    cache_dir : path-like, optional
        Where maps of indexes without one are kept (default ``cache_root("index")``; ``""``:
        not kept).
    """
    try:
        stored = stored_map(index)
    except FileNotFoundError:  # a writer replaced this snapshot since it was opened
        stored = None
    if stored is not None:
        return updated_map(index, stored, refresh=False)
    cached_path = _cache_path(cache_dir, f"map-{index.fingerprint}.safetensors")
    if cached_path is not None and cached_path.is_file():
        try:
            cached = ImageMap.load(cached_path)
            mark_used(cached_path)
            return updated_map(index, cached, refresh=False)
        except (BundleError, FileNotFoundError) as error:  # evicted or damaged: recompute
            log.debug("ignoring the cached map %s: %s", cached_path, error)
    computed = compute_map(index)
    if cached_path is not None:
        try:
            computed.save(cached_path)
            budget = CacheBudget.of(cached_path.parent)
            if budget is not None:
                budget.record(cached_path.stat().st_size)
        except OSError as error:  # a read-only cache costs a computation per process
            log.warning("could not keep the map in %s: %s", cached_path, error)
    return computed


def stored_map(index: Index) -> ImageMap | None:
    """The map the index's manifest names, as stored (None when it names none)."""
    name = index.content.get("map")
    if not name:
        return None
    return ImageMap.load(member_path(index.directory, name, what="index"))


def updated_map(index: Index, previous: ImageMap | None, refresh: bool = True) -> ImageMap:
    """``previous`` for the searchable images of ``index``: removed ones left out, those it
    lacks placed among their neighbours; laid out afresh (with ``refresh``) when there is no
    ``previous`` or it lacks more than :data:`REFRESH_FRACTION` of the images it holds."""
    ids = index.ids()
    if previous is None:
        return compute_map(index)
    kept = previous.restricted(ids)
    missing = np.setdiff1d(ids, kept.ids)
    if len(missing) == 0:
        return kept
    if len(kept.ids) == 0 or (refresh and len(missing) > REFRESH_FRACTION * len(kept.ids)):
        return compute_map(index)
    reference = _sample(kept.ids, TSNE_LIMIT)
    reference_xy = kept.xy[np.searchsorted(kept.ids, reference)]
    placed = _place(index, missing, reference, reference_xy)
    order = np.argsort(np.concatenate([kept.ids, missing]))
    return ImageMap(
        np.concatenate([kept.ids, missing])[order],
        np.concatenate([kept.xy, placed])[order].astype(np.float32),
    )


def compute_map(index: Index, random_state: int = 0) -> ImageMap:
    """Lay out the searchable images of ``index`` afresh (see the module's description)."""
    ids = index.ids()
    if len(ids) == 0:
        return ImageMap(np.zeros(0, np.int64), np.zeros((0, 2), np.float32))
    laid_out = _sample(ids, TSNE_LIMIT, random_state)
    xy = layout_2d(_reduced(_vectors(index, laid_out), random_state), random_state)
    rest = np.setdiff1d(ids, laid_out)
    if len(rest) == 0:
        return ImageMap(laid_out, xy)
    placed = _place(index, rest, laid_out, xy)
    order = np.argsort(np.concatenate([laid_out, rest]))
    return ImageMap(
        np.concatenate([laid_out, rest])[order],
        np.concatenate([xy, placed])[order].astype(np.float32),
    )


def layout_2d(vectors: np.ndarray, random_state: int = 0) -> np.ndarray:
    """t-SNE of ``vectors`` (n, d), scaled into [0, 1] (both axes alike, centred): (n, 2)
    float32. Fewer than 6 rows are laid out by their first two principal components."""
    n = len(vectors)
    if n == 1:
        return np.full((1, 2), 0.5, np.float32)
    if n < 6:
        centred = vectors - vectors.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        points = centred @ components[:2].T
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    else:
        from sklearn.manifold import TSNE

        points = TSNE(
            n_components=2,
            perplexity=min(30.0, (n - 1) / 3),
            init="pca",
            max_iter=TSNE_ITERATIONS,
            random_state=random_state,
        ).fit_transform(np.asarray(vectors, np.float32))
    return _unit_square(points)


def _unit_square(points: np.ndarray) -> np.ndarray:
    low, high = points.min(axis=0), points.max(axis=0)
    span = float(max(high - low)) or 1.0
    scaled = (points - low) / span
    scaled += (1.0 - scaled.max(axis=0)) / 2  # centre the shorter axis
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _vectors(index: Index, ids: np.ndarray) -> np.ndarray | sparse.csr_matrix:
    """What the map describes images by: global descriptors (dense), else tf-idf bags."""
    descriptors = index.global_descriptors(ids)
    return descriptors if descriptors is not None else index.bags(ids)


def _reduced(vectors: np.ndarray | sparse.csr_matrix, random_state: int) -> np.ndarray:
    """PCA (dense) or truncated SVD (sparse bags) to at most :data:`PCA_DIMENSIONS`."""
    n = vectors.shape[0]
    dimensions = min(PCA_DIMENSIONS, n - 1, vectors.shape[1] - 1)
    if dimensions < 2:
        return vectors.toarray() if sparse.issparse(vectors) else np.asarray(vectors)
    if sparse.issparse(vectors):
        from sklearn.decomposition import TruncatedSVD

        return TruncatedSVD(dimensions, random_state=random_state).fit_transform(vectors)
    from sklearn.decomposition import PCA

    return PCA(dimensions, random_state=random_state).fit_transform(vectors)


def _place(
    index: Index, ids: np.ndarray, reference: np.ndarray, reference_xy: np.ndarray
) -> np.ndarray:
    """Positions of ``ids``: the similarity-weighted mean of their :data:`NEIGHBORS` most
    similar ``reference`` images' positions (inner products of :func:`_vectors`), plus a
    seeded jitter of a thousandth so that copies do not hide one another."""
    references = _vectors(index, reference)
    k = min(NEIGHBORS, len(reference))
    placed = np.empty((len(ids), 2), np.float32)
    rng = np.random.default_rng(0)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        similarity = _vectors(index, chunk) @ references.T
        similarity = similarity.toarray() if sparse.issparse(similarity) else similarity
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(similarity, nearest, axis=1), 0) + 1e-6
        weights /= weights.sum(axis=1, keepdims=True)
        points = np.einsum("nk,nkc->nc", weights, reference_xy[nearest])
        placed[start : start + len(chunk)] = points + rng.normal(0, 1e-3, points.shape)
    return np.clip(placed, 0.0, 1.0)


def _sample(ids: np.ndarray, limit: int, random_state: int = 0) -> np.ndarray:
    """``ids`` when at most ``limit``, else a seeded sample of ``limit`` of them; ascending."""
    if len(ids) <= limit:
        return np.asarray(ids, np.int64)
    chosen = np.random.default_rng(random_state).choice(len(ids), limit, replace=False)
    return np.sort(np.asarray(ids, np.int64)[chosen])


def _cache_path(cache_dir: str | os.PathLike | None, name: str) -> Path | None:
    if cache_dir is not None and not str(cache_dir):
        return None
    folder = Path(cache_dir) if cache_dir is not None else cache_root("index")
    return folder / name
