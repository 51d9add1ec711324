"""From visual words to image histograms: spatial pyramid, tf-idf weighting, normalisation.

Layout of a histogram: one block of ``n_words`` bins per pyramid cell, levels in the order of
``pyramid`` (grid size ``g`` gives ``g * g`` cells), cells row-major from the top-left. For
``pyramid=(1, 2)`` and 1000 words: bins 0-999 are the whole image, 1000-1999 the top-left
quadrant, then top-right, bottom-left, bottom-right. Normalisation applies to the whole
concatenated vector (as in VLFeat's PHOW pipeline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _l1(histograms: np.ndarray, out: np.ndarray) -> np.ndarray:
    norms = np.abs(histograms).sum(axis=1, keepdims=True)
    return np.divide(histograms, np.maximum(norms, np.finfo(np.float32).tiny), out=out)


def _l2(histograms: np.ndarray, out: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(histograms, axis=1, keepdims=True)
    return np.divide(histograms, np.maximum(norms, np.finfo(np.float32).tiny), out=out)


def _power(histograms: np.ndarray, out: np.ndarray) -> np.ndarray:
    negative = np.signbit(histograms)
    roots = np.sqrt(np.abs(histograms, out=out), out=out)
    return _l2(np.negative(roots, out=roots, where=negative), out)


def _unchanged(histograms: np.ndarray, out: np.ndarray) -> np.ndarray:
    out[...] = histograms
    return out


#: Row normalisations by name, ``(histograms, out) -> out``. ``power`` is the signed square
#: root followed by L2, which for non-negative histograms equals the square root of the
#: L1-normalised one (Hellinger kernel).
NORMALIZATIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "l1": _l1,
    "l2": _l2,
    "power": _power,
    "none": _unchanged,
}


def normalize_histograms(
    histograms: np.ndarray, normalization: str = "l2", out: np.ndarray | None = None
) -> np.ndarray:
    """Normalise each row of ``histograms`` (n_images, n_bins); all-zero rows stay zero.

    Returns float32: a new array, or ``out`` (float32, of the same shape; it may be
    ``histograms`` itself, normalised in place); ``normalization`` is one of
    :data:`NORMALIZATIONS`.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"unknown normalization {normalization!r}; choose one of {sorted(NORMALIZATIONS)}"
        )
    histograms = np.asarray(histograms, dtype=np.float32)
    if out is None:
        out = np.empty_like(histograms)
    return NORMALIZATIONS[normalization](histograms, out)


def check_pyramid(pyramid: Sequence[int]) -> tuple[int, ...]:
    """Validate grid sizes (e.g. ``(1, 2, 4)``); returns them as a tuple of ints."""
    grids = tuple(int(grid) for grid in np.atleast_1d(pyramid))
    if not grids or any(grid < 1 for grid in grids) or len(set(grids)) != len(grids):
        raise ValueError(
            f"pyramid must list distinct grid sizes >= 1, like (1, 2, 4); got {pyramid!r}"
        )
    return grids


def n_pyramid_cells(pyramid: Sequence[int]) -> int:
    """Total number of cells, ``sum(g * g)``."""
    return sum(grid * grid for grid in check_pyramid(pyramid))


def pyramid_cells(
    positions: np.ndarray, image_shape: tuple[int, int], pyramid: Sequence[int]
) -> np.ndarray:
    """Cell of every keypoint at every pyramid level, as an offset into the concatenated cells.

    Parameters
    ----------
    positions : ndarray, shape (n, 2)
        ``x, y`` in pixels.
    image_shape : (height, width)
    pyramid : sequence of int
        Grid sizes.

    Returns
    -------
    ndarray of int64, shape (n, n_levels): cell index in ``[0, n_pyramid_cells(pyramid))``.
    """
    height, width = image_shape
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    cells, offset = [], 0
    for grid in check_pyramid(pyramid):
        column = np.clip(np.floor(positions[:, 0] * grid / width), 0, grid - 1).astype(np.int64)
        row = np.clip(np.floor(positions[:, 1] * grid / height), 0, grid - 1).astype(np.int64)
        cells.append(offset + row * grid + column)
        offset += grid * grid
    return np.stack(cells, axis=1) if cells else np.zeros((len(positions), 0), dtype=np.int64)


def compute_idf(
    words: Sequence[np.ndarray | None],
    n_words: int,
    weights: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """Smoothed inverse document frequency of every word over a set of images
    (:func:`idf_from_frequencies` of the images in which each word occurs, with a non-zero
    weight).

    Parameters
    ----------
    words : sequence of int arrays, shape (n_i,) or (n_i, k), one per image (None = no image)
    n_words : int
    weights : sequence of float arrays shaped like ``words``, optional

    Returns
    -------
    ndarray of float32, shape (n_words,)
    """
    document_frequency = np.zeros(n_words, dtype=np.int64)
    n_images = 0
    for index, image_words in enumerate(words):
        if image_words is None:
            continue
        n_images += 1
        image_words = np.asarray(image_words).ravel()
        if weights is not None and weights[index] is not None:
            image_words = image_words[np.asarray(weights[index]).ravel() > 0]
        document_frequency[np.unique(image_words)] += 1
    return idf_from_frequencies(document_frequency, n_images)


def idf_from_frequencies(document_frequency: np.ndarray, n_images: int) -> np.ndarray:
    """``idf = ln((1 + n_images) / (1 + df)) + 1`` for the number ``df`` (n_words,) of images
    in which each word occurs: as scikit-learn's ``TfidfTransformer(smooth_idf=True)``, finite
    for unseen words and never zero; float32 (n_words,)."""
    frequency = np.asarray(document_frequency, dtype=np.float64)
    return (np.log((1.0 + n_images) / (1.0 + frequency)) + 1.0).astype(np.float32)


def encode_histograms(
    words: Sequence[np.ndarray | None],
    n_words: int,
    weights: Sequence[np.ndarray | None] | None = None,
    positions: Sequence[np.ndarray | None] | None = None,
    image_shapes: Sequence[tuple[int, int] | None] | None = None,
    pyramid: Sequence[int] = (1,),
    idf: np.ndarray | None = None,
    normalization: str = "l2",
) -> np.ndarray:
    """Bag-of-words histograms of many images.

    Parameters
    ----------
    words : sequence of int arrays, one per image
        Word of each descriptor, shape (n_i,) (hard assignment) or (n_i, k) (soft: k words each).
        ``None`` (an unreadable image) gives an all-zero row.
    n_words : int
        Vocabulary size.
    weights : sequence of float arrays shaped like ``words``, optional
        Vote of each word; 1 when omitted.
    positions : sequence of arrays (n_i, 2), optional
        Keypoint ``x, y`` in pixels; needed when ``pyramid`` has a grid above 1.
    image_shapes : sequence of (height, width), optional
        Needed with ``positions``.
    pyramid : sequence of int
        Grid sizes of the spatial pyramid; ``(1,)`` is a plain bag of words.
    idf : ndarray, shape (n_words,), optional
        Word weights (tf-idf); applied in every cell.
    normalization : {"l2", "l1", "power", "none"}

    Returns
    -------
    ndarray of float32, shape (n_images, n_words * n_pyramid_cells(pyramid))
    """
    grids = check_pyramid(pyramid)
    n_cells = n_pyramid_cells(grids)
    spatial = grids != (1,)
    if spatial and (positions is None or image_shapes is None):
        raise ValueError(f"a spatial pyramid {grids} needs keypoint positions and image shapes")
    histograms = np.zeros((len(words), n_cells * n_words), dtype=np.float64)
    for index, image_words in enumerate(words):
        if image_words is None or len(image_words) == 0:
            continue
        image_words = np.asarray(image_words, dtype=np.int64).reshape(len(image_words), -1)
        votes = (
            np.ones(image_words.shape)
            if weights is None
            else np.asarray(weights[index], dtype=np.float64)
        )
        votes = votes.reshape(image_words.shape)
        if spatial:
            cells = pyramid_cells(positions[index], image_shapes[index], grids)
        else:
            cells = np.zeros((len(image_words), 1), dtype=np.int64)
        # every (cell level, word candidate) pair of a descriptor casts one vote
        bins = cells[:, :, None] * n_words + image_words[:, None, :]
        histograms[index] = np.bincount(
            bins.ravel(),
            weights=np.broadcast_to(votes[:, None, :], bins.shape).ravel(),
            minlength=histograms.shape[1],
        )
    if idf is not None:
        histograms *= np.tile(np.asarray(idf, dtype=np.float64), n_cells)
    return normalize_histograms(histograms, normalization)
