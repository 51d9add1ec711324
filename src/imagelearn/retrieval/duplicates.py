"""Near-duplicate groups of an index: copies of one picture, re-encoded, resized or cropped.

An index holds each content once (``add`` skips a file whose content is indexed, and reports
it in :attr:`AddReport.duplicates`), so copies are never byte for byte. They are found by the
index's own search: each image's
:data:`CANDIDATES` best matches (hybrid mode where the index holds global descriptors, else
local) are verified by RANSAC, and a match is a copy when its inliers are at least
``threshold`` of the smaller image's local features and its homography is a change of scale
and position only (within :data:`SIMILARITY_TOLERANCE`; a new viewpoint also rotates or
tilts the picture).

Measured on UKBench (``bench/README.md``, "near duplicates"): global descriptors alone cannot
tell copies from other photos of one object (whitened GeM cosine of views of one object: median
0.63, up to 0.92; of JPEG or half-size copies: from 0.37), while this rule finds every JPEG
(quality 30), half-size, cropped and grayscale copy of 40 photos, 29 of their 40 quarter-size
copies, and links 5 of the 750 pairs of views of one object of the 500 photos (zoomed shots
of one scene). Mirrored copies are not found (their features do not match).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from imagelearn.cluster.duplicates import linked_groups

if TYPE_CHECKING:
    from imagelearn.retrieval.index import Index, Match

#: Inliers of a copy, as a fraction of the smaller image's local features: UKBench views of
#: one object reach 0.23 (95th percentile), their copies start at 0.25 (JPEG quality 30).
NEAR_DUPLICATE_INLIERS = 0.25
#: Largest departure of a copy's homography from a change of scale and position: entries of
#: its linear part (at unit determinant) off the identity, plus the shift its perspective
#: terms cause across the image (as a fraction of it). Copies: at most 0.08; views: from 0.06.
SIMILARITY_TOLERANCE = 0.1
#: Best matches of each image that are verified.
CANDIDATES = 8
#: Inliers below which no match is a copy.
MIN_INLIERS = 10


def duplicate_groups(index: Index, threshold: float = NEAR_DUPLICATE_INLIERS) -> list[list[int]]:
    """Groups of ids of near-duplicate pictures (see the module's description).

    Parameters
    ----------
    index : Index
    threshold : float
        Fraction of the smaller image's local features that must be RANSAC inliers.

    Returns
    -------
    list of list of int
        Each group's ids ascending; groups largest first (then by their first id). About 2 ms
        per image on two cores.
    """
    ids = index.ids()
    if len(ids) < 2:
        return []
    records = index.records(ids.tolist())
    position = {int(image_id): row for row, image_id in enumerate(ids)}
    pairs = []
    mode = "hybrid" if index.content.get("global") else "local"
    for image_id in ids.tolist():
        query = records[image_id]
        try:
            matches = index.search_id(
                image_id, CANDIDATES, mode=mode, shortlist=CANDIDATES, verify_top=CANDIDATES
            ).matches
        except ValueError:  # no local features: nothing to verify with
            continue
        for match in matches:
            other = records.get(match.image_id)
            if other is None or match.image_id == image_id:
                continue
            smaller = min(query.n_features, other.n_features)
            if match.inliers >= max(MIN_INLIERS, threshold * smaller) and (
                similarity_deviation(match, query.width, query.height) <= SIMILARITY_TOLERANCE
            ):
                pairs.append((position[image_id], position[match.image_id]))
    if not pairs:
        return []
    rows, columns = np.asarray(pairs, dtype=np.int64).T
    groups = [sorted(ids[group].tolist()) for group in linked_groups(len(ids), rows, columns)]
    return sorted(groups, key=lambda group: (-len(group), group[0]))


def similarity_deviation(match: Match, width: int, height: int) -> float:
    """How far ``match``'s homography is from a change of scale and position (see
    :data:`SIMILARITY_TOLERANCE`); infinite without one, or for a mirroring one.

    ``width`` and ``height`` are the query image's, pixels.
    """
    homography = match.homography
    if homography is None or abs(homography[2, 2]) < 1e-12:
        return float("inf")
    homography = homography / homography[2, 2]
    linear = homography[:2, :2]
    determinant = float(np.linalg.det(linear))
    if determinant <= 0:
        return float("inf")
    off_identity = np.abs(linear / np.sqrt(determinant) - np.eye(2)).max()
    perspective = np.abs(homography[2, :2]).max() * max(width, height)
    return float(off_identity + perspective)
