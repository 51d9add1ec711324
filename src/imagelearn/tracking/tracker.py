"""Following one object through a video by recognising it in every frame.

Each frame is matched against the object photo with the retrieval verification (descriptor
ratio-test correspondences, homography by USAC/MAGSAC). The previous frame's estimate is
carried forward: features are first detected only in a window around the last position, and
the whole frame is searched only when that fails.

A fitted tracker holds only the object model (the photo's features and size): it can follow
the object through several videos one after another, and is saved with ``save`` and read
back with ``ObjectTracker.load``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import cv2
import numpy as np
from pydantic import Field
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from imagelearn.core.images import load_image
from imagelearn.core.persistence import PersistentEstimator
from imagelearn.core.schema import Fixed, StateSchema
from imagelearn.evaluation.tracking import Box
from imagelearn.features import make_detector
from imagelearn.features.base import LocalFeatures
from imagelearn.retrieval.verification import (
    Verification,
    pairs_by_descriptors,
    project_corners,
    verify_pairs,
)


@dataclass(frozen=True)
class TrackedFrame:
    """The object's estimate in one frame.

    Attributes
    ----------
    frame : int
        Frame number from 0.
    homography : ndarray (3, 3) or None
        Object-photo pixels -> frame pixels; None when the object was not found.
    inliers : int
    confidence : float in [0, 1]
        ``inlier ratio * min(1, inliers / (2 * min_inliers))``; 0 when not found.
    searched_window : bool
        True when found in the window around the previous estimate (not the whole frame).
    corners : ndarray (4, 2) or None
        The object photo's corners in the frame.
    """

    frame: int
    homography: np.ndarray | None
    inliers: int
    confidence: float
    searched_window: bool
    corners: np.ndarray | None

    @property
    def box(self) -> Box | None:
        """Axis-aligned box (x, y, w, h) around ``corners``, pixels."""
        if self.corners is None:
            return None
        low, high = self.corners.min(axis=0), self.corners.max(axis=0)
        return (float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1]))


@dataclass
class _Track:
    """What following one video carries from frame to frame."""

    #: The last confident frame's features inside the object, in object-photo coordinates.
    recent_features: LocalFeatures | None = None
    #: The last frame in which the object was found.
    last_found: TrackedFrame | None = None


class ObjectTrackerState(StateSchema):
    """The JSON state of a saved :class:`ObjectTracker`: the object's (width, height), pixels."""

    object_size: Fixed[Annotated[int, Field(ge=1)], 2]


class ObjectTracker(PersistentEstimator, BaseEstimator):
    """Recognise an object photo frame by frame.

    Parameters
    ----------
    detector : str
        Local detector registry name.
    max_keypoints : int
        Strongest keypoints per frame (and in the object photo).
    min_side : int
        Frames and object photos smaller than this (longer side, pixels) are enlarged before
        detection, so small videos still give features.
    ratio : float
        Lowe's ratio test threshold.
    min_inliers : int
        Inliers needed to accept a frame's homography.
    ransac_threshold : float
        RANSAC threshold, pixels of the (enlarged) frame.
    margin : float
        The search window is the last found box grown by this fraction of its size on each
        side, and by as much again for every frame since it was found.
    max_lost : int
        Frames after the last found one during which the window is still searched first
        (the whole frame is searched when the window fails, and always after that).
    similarity_fallback : bool
        When no homography is found, fit a similarity (rotation, scale, shift) inside the
        previous frame's search window, which needs half the inliers: small or non-planar
        objects (faces, people) rarely give a homography in every frame.
    update_model : bool
        Learn the object's changing appearance while tracking: after a frame found with at
        least twice ``min_inliers`` inliers, its features inside the object are mapped back
        into the object photo's coordinates (through the inverse homography) and matched in
        the next frames of that video beside the photo's own, which stay as the anchor
        against drift.

    Attributes
    ----------
    object_features_ : LocalFeatures
        The object photo's features, keypoints in its pixels.
    object_size_ : (width, height) of the object photo, pixels

    Examples
    --------
    >>> tracker = ObjectTracker().fit("object.jpg")  # doctest: +SKIP
    >>> boxes = [estimate.box for estimate in tracker.track(frames)]  # doctest: +SKIP
    """

    bundle_kind = "object-tracker"
    state_schema = ObjectTrackerState

    def __init__(
        self,
        detector: str = "rootsift",
        max_keypoints: int = 1500,
        min_side: int = 320,
        ratio: float = 0.8,
        min_inliers: int = 10,
        ransac_threshold: float = 4.0,
        margin: float = 0.5,
        max_lost: int = 10,
        similarity_fallback: bool = True,
        update_model: bool = True,
    ) -> None:
        self.detector = detector
        self.max_keypoints = max_keypoints
        self.min_side = min_side
        self.ratio = ratio
        self.min_inliers = min_inliers
        self.ransac_threshold = ransac_threshold
        self.margin = margin
        self.max_lost = max_lost
        self.similarity_fallback = similarity_fallback
        self.update_model = update_model

    def _detect(self, image: np.ndarray) -> LocalFeatures:
        """Features in ``image`` pixels, detected on a copy enlarged to ``min_side`` if smaller."""
        scale = max(1.0, self.min_side / max(image.shape[:2]))
        working = image
        if scale > 1.0:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            working = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
        features = make_detector(self.detector, max_keypoints=self.max_keypoints).detect(working)
        keypoints = features.keypoints.copy()
        keypoints[:, :3] /= scale
        return LocalFeatures(keypoints, features.descriptors, image.shape[:2])

    def fit(self, object_image: np.ndarray | str | os.PathLike) -> ObjectTracker:
        """Describe the object photo (an RGB array or an image file).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            The photo has too few features to be recognised.
        """
        image = object_image if isinstance(object_image, np.ndarray) else load_image(object_image)
        features = self._detect(image)
        if len(features) < self.min_inliers:
            raise ValueError(
                f"the object photo has {len(features)} features; at least "
                f"{self.min_inliers} are needed to recognise it (is it blank or tiny?)"
            )
        self.object_features_ = features
        self.object_size_ = (image.shape[1], image.shape[0])
        return self

    def _model(self, track: _Track) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors and object-photo positions ``(n, 2)`` matched against each frame."""
        models = [self.object_features_]
        if track.recent_features is not None:
            models.append(track.recent_features)
        descriptors = np.concatenate([model.descriptors for model in models])
        points = np.concatenate([model.keypoints[:, :2] for model in models])
        return descriptors, points

    def _match(
        self, frame: np.ndarray, window: tuple[int, int, int, int] | None, track: _Track
    ) -> tuple[Verification, LocalFeatures]:
        """Verification of the model against ``frame`` (searched inside ``window`` if given).

        Inside a window, a failed homography falls back to a similarity when
        ``similarity_fallback`` is set. Returns the verification and the window's features,
        keypoints in frame pixels.
        """
        x0, y0, x1, y1 = window or (0, 0, frame.shape[1], frame.shape[0])
        features = self._detect(frame[y0:y1, x0:x1])
        features.keypoints[:, :2] += np.array([x0, y0], np.float32)
        model_descriptors, model_points = self._model(track)
        model_rows, frame_rows = pairs_by_descriptors(
            model_descriptors, features.descriptors, self.ratio
        )
        pairs = (model_points[model_rows], features.keypoints[frame_rows, :2])
        threshold = self.ransac_threshold / max(1.0, self.min_side / max(frame.shape[:2]))
        verification = verify_pairs(*pairs, threshold, self.min_inliers)
        if verification.homography is None and window is not None and self.similarity_fallback:
            fewer = max(3, self.min_inliers // 2)
            verification = verify_pairs(*pairs, threshold, fewer, model="similarity")
        return verification, features

    def _appearance(self, features: LocalFeatures, homography: np.ndarray) -> LocalFeatures | None:
        """``features`` that fall inside the object, moved into object-photo coordinates.

        None when fewer than ``min_inliers`` fall inside.
        """
        points = cv2.perspectiveTransform(
            features.keypoints[None, :, :2].astype(np.float64), np.linalg.inv(homography)
        )[0]
        width, height = self.object_size_
        inside = (
            (points[:, 0] >= 0)
            & (points[:, 0] < width)
            & (points[:, 1] >= 0)
            & (points[:, 1] < height)
        )
        if inside.sum() < self.min_inliers:
            return None
        keypoints = features.keypoints[inside].copy()
        keypoints[:, :2] = points[inside]
        return LocalFeatures(keypoints, features.descriptors[inside], (height, width))

    def _window(
        self, frame_shape: tuple[int, ...], number: int, found: TrackedFrame | None
    ) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) to search first in frame ``number``, or None for the whole frame."""
        if found is None or number - found.frame > self.max_lost + 1:
            return None
        x, y, width, height = found.box
        grow = self.margin * (number - found.frame) * max(width, height)
        x0, y0 = max(0, int(x - grow)), max(0, int(y - grow))
        x1 = min(frame_shape[1], int(np.ceil(x + width + grow)))
        y1 = min(frame_shape[0], int(np.ceil(y + height + grow)))
        return (x0, y0, x1, y1) if x1 - x0 >= 16 and y1 - y0 >= 16 else None

    def _find(self, frame: np.ndarray, number: int, track: _Track) -> TrackedFrame:
        """Find the object in one RGB frame, starting from ``track``'s previous estimate."""
        window = self._window(frame.shape, number, track.last_found)
        verification = None
        if window is not None:
            verification, features = self._match(frame, window, track)
        searched_window = verification is not None and verification.homography is not None
        if not searched_window:
            verification, features = self._match(frame, None, track)
        if verification.homography is None:
            return TrackedFrame(number, None, 0, 0.0, False, None)
        ratio = verification.inliers / max(1, verification.n_tentative)
        confidence = ratio * min(1.0, verification.inliers / (2.0 * self.min_inliers))
        corners = project_corners(verification.homography, *self.object_size_)
        tracked = TrackedFrame(
            number,
            verification.homography,
            verification.inliers,
            confidence,
            searched_window,
            corners,
        )
        if self.update_model and verification.inliers >= 2 * self.min_inliers:
            appearance = self._appearance(features, verification.homography)
            if appearance is not None:
                track.recent_features = appearance
        track.last_found = tracked
        return tracked

    def track(self, frames: Iterable[np.ndarray]) -> Iterator[TrackedFrame]:
        """Estimates for a sequence of RGB frames, in order, one as each frame is read.

        The appearance learned (``update_model``) and the last position belong to this
        sequence: the fitted tracker itself is left unchanged.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before :meth:`fit` (or :meth:`load`).
        """
        check_is_fitted(self, "object_features_")
        return self._track(frames)

    def _track(self, frames: Iterable[np.ndarray]) -> Iterator[TrackedFrame]:
        track = _Track()
        for number, frame in enumerate(frames):
            yield self._find(frame, number, track)

    # ------------------------------------------------------------ persistence

    def _check_saveable(self) -> None:
        check_is_fitted(self, "object_features_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {
            "keypoints": self.object_features_.keypoints,
            "descriptors": self.object_features_.descriptors,
        }
        return {"object_size": list(self.object_size_)}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        width, height = (int(side) for side in state["object_size"])
        keypoints, descriptors = arrays["keypoints"], arrays["descriptors"]
        if len(keypoints) != len(descriptors):
            raise ValueError(f"{len(keypoints)} keypoints but {len(descriptors)} descriptors")
        self.object_features_ = LocalFeatures(keypoints, descriptors, (height, width))
        self.object_size_ = (width, height)
