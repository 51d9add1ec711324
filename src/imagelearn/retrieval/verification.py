"""Spatial verification: tentative correspondences, then a homography by RANSAC (USAC/MAGSAC).

Correspondences come either from shared visual words (the classic large-scale way: no
descriptor is stored per database image, only its keypoints and words) or from descriptor
nearest neighbours with Lowe's ratio test (tracking, where both images' descriptors are at
hand). A match is accepted when the homography has at least ``min_inliers`` inliers and
keeps orientation and a plausible scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: Most pairs a single visual word may propose (a word seen 3x in each image proposes 9).
MAX_PAIRS_PER_WORD = 9
#: Orientation bins (over 360 degrees) of the weak geometric consistency histogram.
WGC_ANGLE_BINS = 12
#: Scale bin width (octaves) of the weak geometric consistency histogram.
WGC_OCTAVE_BIN = 0.5
#: Largest area change (either way) a verified homography may imply.
MAX_SCALE_CHANGE = 100.0


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying one image pair.

    Attributes
    ----------
    inliers : int
        Correspondences consistent with ``homography`` (0 when none was found).
    homography : ndarray of float64, shape (3, 3), or None
        Maps query pixels to database pixels.
    query_points, database_points : ndarray of float32, shape (inliers, 2)
        The inlier correspondences, pixels.
    n_tentative : int
        Tentative correspondences RANSAC started from.
    """

    inliers: int
    homography: np.ndarray | None
    query_points: np.ndarray
    database_points: np.ndarray
    n_tentative: int

    @classmethod
    def failed(cls, n_tentative: int = 0) -> Verification:
        empty = np.zeros((0, 2), dtype=np.float32)
        return cls(0, None, empty, empty, n_tentative)


def pairs_by_words(
    query_words: np.ndarray,
    database_words: np.ndarray,
    max_pairs_per_word: int = MAX_PAIRS_PER_WORD,
) -> tuple[np.ndarray, np.ndarray]:
    """Tentative correspondences: every pair of features that share a visual word.

    Words that would propose more than ``max_pairs_per_word`` pairs (bursts, repeated
    texture) propose none.

    Returns
    -------
    query_rows, database_rows : ndarrays of int64, shape (n_pairs,)
        Sorted by query row, then database row.
    """
    _, query_rows, database_rows = batched_pairs_by_words(
        query_words, [database_words], max_pairs_per_word
    )
    return query_rows, database_rows


def batched_pairs_by_words(
    query_words: np.ndarray,
    database_words: Sequence[np.ndarray],
    max_pairs_per_word: int = MAX_PAIRS_PER_WORD,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pairs_by_words` of one query against many database images, in one pass.

    Parameters
    ----------
    query_words : int array, shape (n_query,)
    database_words : sequence of int arrays
        The words of each database image's features.
    max_pairs_per_word : int

    Returns
    -------
    images, query_rows, database_rows : ndarrays of int64, shape (n_pairs,)
        The position in ``database_words`` of each pair's image, the query row and the row
        within that image; sorted by image, then query row, then database row.
    """
    query_words = np.asarray(query_words, dtype=np.int64)
    query_order = np.argsort(query_words, kind="stable")
    words, first, query_counts = np.unique(
        query_words[query_order], return_index=True, return_counts=True
    )
    lengths = np.array([len(w) for w in database_words], dtype=np.int64)
    flat_words = (
        np.concatenate([np.asarray(w, dtype=np.int64) for w in database_words])
        if len(database_words)
        else np.zeros(0, np.int64)
    )
    images = np.repeat(np.arange(len(lengths)), lengths)
    rows = np.arange(len(flat_words)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    # each database feature's slot among the query's words (-1: a word the query lacks), by a
    # table over the word ids: a gather instead of a binary search per feature (a UKBench search
    # by id, which is mostly verification, takes a quarter less CPU time)
    slot_of = np.full(int(max(flat_words.max(initial=-1), words.max(initial=-1))) + 1, -1)
    slot_of[words] = np.arange(len(words))
    slots = slot_of[flat_words]
    shared = slots >= 0
    images, rows, slots = images[shared], rows[shared], slots[shared]
    # features of one image with one word: how many, for the burst limit
    _, group, database_counts = np.unique(
        images * len(words) + slots, return_inverse=True, return_counts=True
    )
    keep = database_counts[group] * query_counts[slots] <= max_pairs_per_word
    images, rows, slots = images[keep], rows[keep], slots[keep]
    # each kept database feature pairs with every query feature of its word
    per_feature = query_counts[slots]
    pair_of = np.repeat(np.arange(len(rows)), per_feature)
    within = np.arange(len(pair_of)) - np.repeat(np.cumsum(per_feature) - per_feature, per_feature)
    query_rows = query_order[first[slots][pair_of] + within]
    images, database_rows = images[pair_of], rows[pair_of]
    order = np.lexsort((database_rows, query_rows, images))
    return images[order], query_rows[order], database_rows[order]


def pairs_by_descriptors(
    query_descriptors: np.ndarray, database_descriptors: np.ndarray, ratio: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Tentative correspondences by nearest neighbour with Lowe's ratio test.

    Float descriptors use the L2 distance, packed binary (uint8) ones the Hamming distance.

    Returns
    -------
    query_rows, database_rows : ndarrays of int64, shape (n_pairs,)
    """
    if len(query_descriptors) == 0 or len(database_descriptors) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    norm = cv2.NORM_HAMMING if query_descriptors.dtype == np.uint8 else cv2.NORM_L2
    matcher = cv2.BFMatcher(norm)
    matches = matcher.knnMatch(query_descriptors, database_descriptors, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    query_rows = np.array([m.queryIdx for m in good], dtype=np.int64)
    database_rows = np.array([m.trainIdx for m in good], dtype=np.int64)
    return query_rows, database_rows


def consistent_pairs(
    query_keypoints: np.ndarray,
    database_keypoints: np.ndarray,
    angle_bins: int = WGC_ANGLE_BINS,
    octave_bins: float = WGC_OCTAVE_BIN,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Weak geometric consistency (Jegou et al. 2008) of tentative pairs.

    A true match rotates and scales all features of an object about alike: pairs vote in a
    histogram of (orientation change, log2 scale change); the pairs in the peak bin and its
    eight neighbours are kept.

    Parameters
    ----------
    query_keypoints, database_keypoints : ndarray, shape (n_pairs, 4)
        Paired keypoints (x, y, size, angle in degrees; angle -1 when unknown).
    angle_bins : int
        Bins over 360 degrees.
    octave_bins : float
        Width of a scale bin, octaves.
    groups : int array, shape (n_pairs,), optional
        The image pair of each pair (0, 1, ...): each group votes in its own histogram, as if
        it were checked alone. None: one group.

    Returns
    -------
    ndarray of bool, shape (n_pairs,)
    """
    if len(query_keypoints) == 0:
        return np.zeros(0, dtype=bool)
    groups = np.zeros(len(query_keypoints), np.int64) if groups is None else np.asarray(groups)
    rotation = np.mod(database_keypoints[:, 3] - query_keypoints[:, 3], 360.0)
    rotation_bin = np.floor(rotation * angle_bins / 360.0).astype(np.int64) % angle_bins
    log_scale = np.log2(
        np.maximum(database_keypoints[:, 2], 1e-3) / np.maximum(query_keypoints[:, 2], 1e-3)
    )
    scale_bin = np.floor(log_scale / octave_bins).astype(np.int64)
    scale_bin -= scale_bin.min()
    n_scales, n_groups = int(scale_bin.max()) + 1, int(groups.max()) + 1
    votes = np.bincount(
        (groups * angle_bins + rotation_bin) * n_scales + scale_bin,
        minlength=n_groups * angle_bins * n_scales,
    ).reshape(n_groups, angle_bins * n_scales)
    peak_rotation, peak_scale = np.divmod(votes.argmax(axis=1)[groups], n_scales)
    rotation_distance = np.abs(rotation_bin - peak_rotation)
    rotation_distance = np.minimum(rotation_distance, angle_bins - rotation_distance)
    return (rotation_distance <= 1) & (np.abs(scale_bin - peak_scale) <= 1)


def plausible_homography(homography: np.ndarray) -> bool:
    """True when the homography keeps orientation and changes area by at most MAX_SCALE_CHANGE."""
    if not np.isfinite(homography).all():
        return False
    determinant = float(np.linalg.det(homography[:2, :2] / homography[2, 2]))
    return 1.0 / MAX_SCALE_CHANGE < determinant < MAX_SCALE_CHANGE


def verify_pairs(
    query_points: np.ndarray,
    database_points: np.ndarray,
    threshold: float,
    min_inliers: int = 8,
    model: str = "homography",
) -> Verification:
    """Fit a geometric model to tentative correspondences robustly.

    Parameters
    ----------
    query_points, database_points : ndarray, shape (n, 2)
        Corresponding pixel positions, row by row.
    threshold : float
        RANSAC reprojection threshold in database-image pixels.
    min_inliers : int
        Fewer inliers count as a failed verification.
    model : {"homography", "similarity"}
        A homography (8 degrees of freedom; OpenCV's USAC/MAGSAC, at least 4 pairs), or a
        similarity (rotation, uniform scale, shift: 4 degrees of freedom, RANSAC, at least 2
        pairs) for objects seen roughly face-on with few matches. Either way the result's
        ``homography`` is a 3 x 3 matrix.

    Returns
    -------
    Verification
    """
    n_pairs = len(query_points)
    minimal = {"homography": 4, "similarity": 2}[model]
    if n_pairs < max(minimal, min_inliers):
        return Verification.failed(n_pairs)
    source = np.ascontiguousarray(query_points, dtype=np.float32)
    target = np.ascontiguousarray(database_points, dtype=np.float32)
    if model == "homography":
        homography, mask = cv2.findHomography(
            source,
            target,
            cv2.USAC_MAGSAC,
            ransacReprojThreshold=threshold,
            maxIters=2000,
            confidence=0.999,
        )
    else:
        similarity, mask = cv2.estimateAffinePartial2D(
            source, target, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=2000
        )
        homography = None if similarity is None else np.vstack([similarity, [0.0, 0.0, 1.0]])
    if homography is None or mask is None or not plausible_homography(homography):
        return Verification.failed(n_pairs)
    inlier = mask.ravel().astype(bool)
    if int(inlier.sum()) < min_inliers:
        return Verification.failed(n_pairs)
    return Verification(int(inlier.sum()), homography, source[inlier], target[inlier], n_pairs)


def project_corners(homography: np.ndarray, width: float, height: float) -> np.ndarray:
    """The four corners of a ``width x height`` image mapped by ``homography``: (4, 2) float64."""
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    return cv2.perspectiveTransform(corners[None], np.asarray(homography, np.float64))[0]
