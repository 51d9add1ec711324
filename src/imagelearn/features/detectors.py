"""Keypoint detectors with descriptors: the common base class and OpenCV's SIFT, ORB and AKAZE.

Every detector follows scikit-learn's parameter conventions (``__init__`` stores its keyword
arguments unchanged, :meth:`Detector.get_params` returns them) and exposes one method,
:meth:`Detector.detect`, mapping a uint8 image to :class:`~imagelearn.features.base.LocalFeatures`.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import cv2
import numpy as np

from imagelearn.core.images import ColorMode
from imagelearn.features.base import LocalFeatures


class Detector:
    """Base class: image checks, downscaling to ``max_side``, the keypoint cap, coordinates.

    Subclasses set the class attributes and implement :meth:`_detect` on an image that already
    fits ``max_side``; the base class maps keypoints back to the coordinates of the given image.
    """

    #: Registry name, e.g. ``"dense_rootsift"``.
    name: ClassVar[str]
    #: True when descriptors are packed bits (uint8) compared by Hamming distance.
    binary: ClassVar[bool] = False
    #: How :func:`~imagelearn.features.extract_features` loads files for this detector.
    color_mode: ClassVar[ColorMode] = "L"

    max_keypoints: int | None
    max_side: int | None

    @property
    def descriptor_size(self) -> int:
        """Descriptor length ``d``: floats, or bytes for binary detectors."""
        raise NotImplementedError

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self) -> dict[str, Any]:
        """Parameters as given to ``__init__`` (tuples as lists, so the dict is JSON-ready)."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in ((name, getattr(self, name)) for name in self._param_names())
        }

    def __repr__(self) -> str:
        arguments = ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())
        return f"{type(self).__name__}({arguments})"

    def detect(self, image: np.ndarray) -> LocalFeatures:
        """Detect keypoints and describe them.

        Parameters
        ----------
        image : ndarray of uint8, shape (H, W) gray or (H, W, 3) RGB
            Converted to what the detector needs (gray for SIFT, RGB for colour descriptors).

        Returns
        -------
        LocalFeatures
            Keypoints in the coordinates of ``image`` even when it was downscaled to
            ``max_side`` internally; at most ``max_keypoints``, the strongest kept.
        """
        return self.normalise_descriptors(self.detect_raw(image))

    def detect_raw(self, image: np.ndarray) -> LocalFeatures:
        """:meth:`detect` before the descriptors' final normalisation (e.g. RootSIFT's).

        This is what the feature cache stores: SIFT's raw values are small integers, which
        keep losslessly in one byte each.
        """
        self._check_params()
        image = check_image(image)
        height, width = image.shape[:2]
        working = downscale(image, self.max_side)
        keypoints, descriptors, strength = self._detect(working)
        if self.max_keypoints is not None and len(keypoints) > self.max_keypoints:
            strongest = np.sort(np.argsort(-strength, kind="stable")[: self.max_keypoints])
            keypoints, descriptors = keypoints[strongest], descriptors[strongest]
        features = LocalFeatures(
            np.ascontiguousarray(keypoints, dtype=np.float32),
            np.ascontiguousarray(descriptors),
            working.shape[:2],
        )
        return rescale_features(features, (height, width))

    def normalise_descriptors(self, features: LocalFeatures) -> LocalFeatures:
        """Features from :meth:`detect_raw` with their final descriptors."""
        descriptors = self._normalise(features.descriptors)
        if descriptors is features.descriptors:
            return features
        return LocalFeatures(features.keypoints, descriptors, features.image_shape)

    def _normalise(self, descriptors: np.ndarray) -> np.ndarray:
        """Final descriptors (n, d) from raw ones; unchanged unless a subclass says otherwise."""
        return descriptors

    def _check_params(self) -> None:
        for name in ("max_keypoints", "max_side"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | np.integer) or value < 1):
                raise ValueError(
                    f"{self.name}: {name} must be a positive integer or None, got {value!r}"
                )

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints (n, 4), descriptors (n, d) and a strength (n,) used by the cap."""
        raise NotImplementedError


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as a contiguous uint8 (H, W) or (H, W, 3) array; ValueError for anything else."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8 arrays, got {image.dtype}")
    if (
        not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3))
        or min(image.shape[:2]) < 1
    ):
        raise ValueError(f"images must have shape (H, W) or (H, W, 3), got {image.shape}")
    return np.ascontiguousarray(image)


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 gray (H, W) from gray or RGB."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) from gray or RGB."""
    return image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)


def downscale(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink (area interpolation) so the longer side is at most ``max_side``; else unchanged."""
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def rescale_features(features: LocalFeatures, shape: tuple[int, int]) -> LocalFeatures:
    """Map keypoints from ``features.image_shape`` to an image of ``shape`` (height, width).

    Pixel centres are at integer coordinates on both sides (OpenCV's convention).
    """
    shape = (int(shape[0]), int(shape[1]))
    if tuple(features.image_shape) == shape:
        return features
    scale_y = shape[0] / features.image_shape[0]
    scale_x = shape[1] / features.image_shape[1]
    keypoints = features.keypoints.copy()
    keypoints[:, 0] = (keypoints[:, 0] + 0.5) * scale_x - 0.5
    keypoints[:, 1] = (keypoints[:, 1] + 0.5) * scale_y - 0.5
    keypoints[:, 2] *= np.sqrt(scale_x * scale_y)
    return LocalFeatures(keypoints, features.descriptors, shape)


def root_normalise(descriptors: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, then square root; float32.

    Normalises along the last axis. The result has unit L2 norm, so Euclidean distance on it is
    the Hellinger kernel on SIFT. All-zero vectors stay zero.
    """
    descriptors = np.abs(np.asarray(descriptors, dtype=np.float32))
    totals = descriptors.sum(axis=-1, keepdims=True)
    return np.sqrt(descriptors / np.maximum(totals, np.finfo(np.float32).tiny))


class RootNormalised:
    """Mixin for SIFT-like detectors: RootSIFT normalisation of every 128-value block."""

    def _normalise(self, descriptors: np.ndarray) -> np.ndarray:
        width = descriptors.shape[1] if descriptors.ndim == 2 else 128
        blocks = descriptors.reshape(len(descriptors), max(width // 128, 1), 128)
        return root_normalise(blocks).reshape(len(descriptors), blocks.shape[1] * 128)


def keypoint_array(keypoints: list[cv2.KeyPoint] | tuple[cv2.KeyPoint, ...]) -> np.ndarray:
    """OpenCV keypoints as float32 (n, 4): x, y, size, angle."""
    return np.array(
        [(k.pt[0], k.pt[1], k.size, k.angle) for k in keypoints], dtype=np.float32
    ).reshape(-1, 4)


class _OpenCVDetector(Detector):
    """A detector backed by an OpenCV ``Feature2D`` (detectAndCompute on gray images)."""

    _descriptor_dtype: ClassVar[type] = np.float32

    def _create(self) -> cv2.Feature2D:
        raise NotImplementedError

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keypoints, descriptors = self._create().detectAndCompute(to_gray(image), None)
        if descriptors is None:  # OpenCV returns None when nothing was found
            descriptors = np.zeros((0, self.descriptor_size), self._descriptor_dtype)
        strength = np.array([k.response for k in keypoints], dtype=np.float32)
        return keypoint_array(keypoints), descriptors, strength


class SIFT(_OpenCVDetector):
    """Lowe's SIFT (OpenCV): difference-of-Gaussians keypoints, 128-d gradient histograms.

    Parameters
    ----------
    max_keypoints : int or None
        Keep at most this many keypoints, the highest DoG responses.
    max_side : int or None
        Detect on a copy downscaled so its longer side is at most this (pixels).
    contrast_threshold : float
        DoG contrast threshold (OpenCV's ``contrastThreshold``; larger gives fewer keypoints).
    edge_threshold : float
        Principal-curvature ratio above which edge-like keypoints are dropped.
    n_octave_layers : int
        DoG layers per octave.

    Descriptors are OpenCV's float32 values (L2 norm about 512).
    """

    name = "sift"

    def __init__(
        self,
        max_keypoints: int | None = None,
        max_side: int | None = None,
        contrast_threshold: float = 0.04,
        edge_threshold: float = 10.0,
        n_octave_layers: int = 3,
    ) -> None:
        self.max_keypoints = max_keypoints
        self.max_side = max_side
        self.contrast_threshold = contrast_threshold
        self.edge_threshold = edge_threshold
        self.n_octave_layers = n_octave_layers

    @property
    def descriptor_size(self) -> int:
        return 128

    def _create(self) -> cv2.Feature2D:
        return cv2.SIFT_create(
            nfeatures=self.max_keypoints or 0,
            nOctaveLayers=self.n_octave_layers,
            contrastThreshold=self.contrast_threshold,
            edgeThreshold=self.edge_threshold,
        )


class RootSIFT(RootNormalised, SIFT):
    """SIFT keypoints with RootSIFT descriptors (L1-normalised, square-rooted; unit L2 norm).

    Same parameters as :class:`SIFT`. Euclidean distance between RootSIFT descriptors is the
    Hellinger distance between SIFT histograms, which matches and clusters better.
    """

    name = "rootsift"


#: ORB needs a finite count; this stands for "no cap" (more than any real image yields).
_ORB_UNCAPPED = 100_000


class ORB(_OpenCVDetector):
    """ORB (OpenCV): oriented FAST corners with rotated BRIEF, 256 bits packed in 32 bytes.

    Parameters
    ----------
    max_keypoints : int or None
        Keep at most this many corners (best Harris score); None: up to 100,000.
    max_side : int or None
        Detect on a copy downscaled so its longer side is at most this (pixels).
    scale_factor : float
        Ratio between pyramid levels.
    n_levels : int
        Pyramid levels.
    fast_threshold : int
        FAST intensity threshold (grey levels).
    """

    name = "orb"
    binary = True
    _descriptor_dtype = np.uint8

    def __init__(
        self,
        max_keypoints: int | None = 1000,
        max_side: int | None = None,
        scale_factor: float = 1.2,
        n_levels: int = 8,
        fast_threshold: int = 20,
    ) -> None:
        self.max_keypoints = max_keypoints
        self.max_side = max_side
        self.scale_factor = scale_factor
        self.n_levels = n_levels
        self.fast_threshold = fast_threshold

    @property
    def descriptor_size(self) -> int:
        return 32

    def _create(self) -> cv2.Feature2D:
        return cv2.ORB_create(
            nfeatures=self.max_keypoints or _ORB_UNCAPPED,
            scaleFactor=self.scale_factor,
            nlevels=self.n_levels,
            fastThreshold=self.fast_threshold,
        )


class AKAZE(_OpenCVDetector):
    """AKAZE (OpenCV contrib): nonlinear scale space, binary M-LDB descriptors of 61 bytes.

    Parameters
    ----------
    max_keypoints : int or None
        Keep at most this many keypoints, the highest detector responses.
    max_side : int or None
        Detect on a copy downscaled so its longer side is at most this (pixels).
    threshold : float
        Detector response threshold (larger gives fewer keypoints).
    """

    name = "akaze"
    binary = True
    _descriptor_dtype = np.uint8

    def __init__(
        self,
        max_keypoints: int | None = None,
        max_side: int | None = None,
        threshold: float = 0.001,
    ) -> None:
        self.max_keypoints = max_keypoints
        self.max_side = max_side
        self.threshold = threshold

    @property
    def descriptor_size(self) -> int:
        return 61

    def _create(self) -> cv2.Feature2D:
        return _akaze_factory()(threshold=self.threshold)


def _akaze_factory():
    """AKAZE's constructor: in ``cv2`` up to OpenCV 4, in ``cv2.xfeatures2d`` (contrib) from 5."""
    if hasattr(cv2, "AKAZE_create"):
        return cv2.AKAZE_create
    return cv2.xfeatures2d.AKAZE_create
