"""The contract every local-feature detector follows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LocalFeatures:
    """Local features of one image.

    Attributes
    ----------
    keypoints : ndarray of float32, shape (n, 4)
        ``x, y`` (pixels, in the coordinates of the image as loaded, before any internal
        downscaling), ``size`` (diameter in pixels, same coordinates) and ``angle`` (degrees,
        -1 when the detector gives none).
    descriptors : ndarray, shape (n, d)
        float32 for real-valued descriptors; uint8 with packed bits (d bytes = 8*d bits) for
        binary descriptors (ORB, AKAZE), compared by Hamming distance.
    image_shape : (height, width)
        Size of the image the keypoints refer to.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    image_shape: tuple[int, int]

    @property
    def binary(self) -> bool:
        """True for packed binary descriptors (uint8)."""
        return self.descriptors.dtype == np.uint8

    def __len__(self) -> int:
        return len(self.descriptors)
