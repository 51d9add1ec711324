"""Dense detectors: descriptors on a regular multi-scale grid, for Bag of Features on small images.

All dense detectors with the same ``step``, ``sizes`` and ``max_side`` use the same keypoints in
the same order (every size at every grid centre, grouped by size), so their descriptors can be
paired row by row (e.g. dense RootSIFT beside dense Lab colour).

Keypoint sizes follow OpenCV's SIFT convention: a descriptor covers a square ``6 * size`` wide
(4 bins of 3 sigma, size = 2 sigma). A patch of ``sizes[i]`` pixels therefore gives keypoints of
size ``sizes[i] / 6``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import cv2
import numpy as np

from imagelearn.features.detectors import Detector, RootNormalised, to_gray, to_rgb

#: Width of the square a SIFT descriptor describes, in keypoint sizes.
SIFT_PATCH_PER_SIZE = 6.0
#: Blur of the first level of OpenCV's SIFT pyramid (sigma, pixels).
_SIFT_BASE_SIGMA = 1.6


def grid_centres(shape: tuple[int, int], step: float, smallest_patch: float) -> np.ndarray:
    """Centres (m, 2) of a regular grid, x and y, where a patch of ``smallest_patch`` fits.

    The grid is centred in the image; an image smaller than the patch gets its centre only.
    """

    def axis(length: int) -> np.ndarray:
        count = int(np.floor(max(0.0, length - smallest_patch) / step)) + 1
        start = (length - 1 - (count - 1) * step) / 2
        return start + step * np.arange(count)

    xs, ys = np.meshgrid(axis(shape[1]), axis(shape[0]))
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def patch_bounds(centres: np.ndarray, widths: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixel bounds (n, 4) ``x0, y0, x1, y1`` (exclusive ends, clipped to the image) of squares.

    ``centres`` is (n, 2) x and y, ``widths`` (n,) in pixels.
    """
    first = np.floor(centres - widths[:, None] / 2 + 0.5).astype(np.int64)
    last = first + np.maximum(1, np.rint(widths)).astype(np.int64)[:, None]
    limits = np.array([shape[1], shape[0]])
    return np.concatenate([np.clip(first, 0, limits - 1), np.clip(last, 1, limits)], axis=1)


def box_means(integral: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Mean of each channel inside rectangles, from an integral image.

    Parameters
    ----------
    integral : ndarray of float64, shape (H + 1, W + 1, C)
    bounds : ndarray of int, shape (n, 4)
        ``x0, y0, x1, y1`` with ``x0 < x1``, ``y0 < y1``.

    Returns
    -------
    ndarray of float64, shape (n, C)
    """
    x0, y0, x1, y1 = bounds.T
    sums = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return sums / ((x1 - x0) * (y1 - y0))[:, None]


def box_stds(integral: np.ndarray, squares: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Standard deviation (n, C) of each channel inside rectangles, from the integral images
    of the channels and of their squares (see :func:`box_means`)."""
    means = box_means(integral, bounds)
    return np.sqrt(np.maximum(box_means(squares, bounds) - means**2, 0.0))


def channel_integrals(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integral images (H + 1, W + 1, C) of the channels and of their squares."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[:, :, None]
    integral, squares = cv2.integral2(image, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
    return integral.reshape(*integral.shape[:2], -1), squares.reshape(*squares.shape[:2], -1)


def lab_units(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of a uint8 RGB image as float32 (H, W, 3): L in 0..100, a and b in -128..127.

    Uses OpenCV's 8-bit conversion (a lookup table, 30x faster than the float path under
    threads); it is within 1 Lab unit of the exact values.
    """
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab


class _DenseDetector(Detector):
    """Shared grid logic: ``step``, ``sizes`` and the keypoints of every size at every centre."""

    step: float
    sizes: Sequence[float]

    def _check_params(self) -> None:
        super()._check_params()
        if not np.isscalar(self.step) or not self.step > 0:
            raise ValueError(
                f"{self.name}: step must be a positive number of pixels, got {self.step!r}"
            )
        sizes = np.asarray(self.sizes, dtype=float)
        if sizes.ndim != 1 or len(sizes) == 0 or not np.all(sizes > 0):
            raise ValueError(
                f"{self.name}: sizes must be a non-empty list of positive patch widths, got {self.sizes!r}"
            )

    def _grid(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Centres (m, 2) and the patch width of each keypoint (len(sizes) * m,), size-major."""
        centres = grid_centres(shape, float(self.step), float(min(self.sizes)))
        widths = np.repeat(np.asarray(self.sizes, dtype=np.float32), len(centres))
        return np.tile(centres, (len(self.sizes), 1)), widths

    @staticmethod
    def _keypoints(centres: np.ndarray, widths: np.ndarray) -> np.ndarray:
        angles = np.full(len(widths), -1.0, dtype=np.float32)
        return np.column_stack([centres, widths / SIFT_PATCH_PER_SIZE, angles]).astype(np.float32)


class DenseSIFT(_DenseDetector):
    """SIFT descriptors (upright) on a regular multi-scale grid, like VLFeat's PHOW.

    Each patch width is described on the level of OpenCV's SIFT scale space whose blur matches
    it, so large patches are smoothed like detected keypoints of the same size.

    Parameters
    ----------
    step : float
        Grid spacing in pixels (of the image after ``max_side``).
    sizes : sequence of float
        Widths in pixels of the square patches described at every grid centre.
    contrast_threshold : float
        Patches whose grey-level standard deviation (intensities in 0..1) is below this get an
        all-zero descriptor (flat sky or background), as VLFeat's PHOW does.
    max_keypoints : int or None
        Keep at most this many keypoints, the highest-contrast patches.
    max_side : int or None
        Work on a copy downscaled so its longer side is at most this (pixels).
    """

    name = "dense_sift"

    def __init__(
        self,
        step: float = 8,
        sizes: Sequence[float] = (16, 24, 32),
        contrast_threshold: float = 0.005,
        max_keypoints: int | None = None,
        max_side: int | None = 512,
    ) -> None:
        self.step = step
        self.sizes = sizes
        self.contrast_threshold = contrast_threshold
        self.max_keypoints = max_keypoints
        self.max_side = max_side

    #: Planes described one by one (see :meth:`_planes`), 128 values each.
    _n_planes: ClassVar[int] = 1

    @property
    def descriptor_size(self) -> int:
        return 128 * self._n_planes

    def _planes(self, image: np.ndarray) -> list[np.ndarray]:
        """The uint8 planes described one by one (grey level here)."""
        return [to_gray(image)]

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centres, widths = self._grid(image.shape[:2])
        keypoints = self._keypoints(centres, widths)
        cv_keypoints = [
            cv2.KeyPoint(float(x), float(y), float(size), 0.0, 0.0, int(octave))
            for (x, y, size, _), octave in zip(
                keypoints, _packed_octaves(keypoints[:, 2]), strict=True
            )
        ]
        sift = cv2.SIFT_create()
        descriptors = np.hstack(
            [_compute(sift, plane, cv_keypoints) for plane in self._planes(image)]
        )
        integral, squares = channel_integrals(to_gray(image).astype(np.float64) / 255.0)
        contrast = box_stds(integral, squares, patch_bounds(centres, widths, image.shape[:2]))[:, 0]
        descriptors[contrast < self.contrast_threshold] = 0.0
        return keypoints, descriptors.astype(np.float32, copy=False), contrast


def _compute(sift: cv2.SIFT, plane: np.ndarray, keypoints: list[cv2.KeyPoint]) -> np.ndarray:
    computed, descriptors = sift.compute(plane, keypoints)
    if len(computed) != len(keypoints):  # OpenCV keeps provided keypoints; guard the contract
        raise RuntimeError(f"OpenCV SIFT dropped {len(keypoints) - len(computed)} grid keypoints")
    return descriptors


def _packed_octaves(sizes: np.ndarray) -> np.ndarray:
    """OpenCV's packed ``octave`` field (octave + layer << 8) of the scale-space level whose blur
    fits each keypoint size.

    A keypoint of size ``s`` has sigma ``s / 2``; level ``t`` (3 per octave) has blur
    ``1.6 * 2 ** (t / 3)``. The coarsest level whose blur does not exceed the sigma is chosen.
    """
    levels = np.floor(
        3 * np.log2(np.asarray(sizes, dtype=np.float64) / 2 / _SIFT_BASE_SIGMA) + 1e-6
    )
    octave, layer = np.divmod(np.maximum(levels, 0).astype(np.int64), 3)
    return octave + (layer << 8)


class DenseRootSIFT(RootNormalised, DenseSIFT):
    """Dense SIFT with RootSIFT normalisation (unit L2 norm); parameters as :class:`DenseSIFT`."""

    name = "dense_rootsift"


class DenseOpponentRootSIFT(DenseRootSIFT):
    """RootSIFT on the three opponent colour channels (van de Sande et al. 2010), 384-d.

    Channels: O1 = (R - G) / 2 + 128, O2 = (R + G - 2B) / 4 + 128, O3 = (R + G + B) / 3, each
    described by RootSIFT (unit norm per channel) and concatenated. Parameters as
    :class:`DenseSIFT`; the contrast threshold uses the grey level.
    """

    name = "dense_opponent_rootsift"
    color_mode = "RGB"
    _n_planes = 3

    def _planes(self, image: np.ndarray) -> list[np.ndarray]:
        red, green, blue = (
            channel.astype(np.int16) for channel in np.moveaxis(to_rgb(image), 2, 0)
        )
        planes = (
            (red - green) // 2 + 128,
            (red + green - 2 * blue) // 4 + 128,
            (red + green + blue) // 3,
        )
        return [np.ascontiguousarray(plane, dtype=np.uint8) for plane in planes]


class DenseLab(_DenseDetector):
    """Local colour on the dense grid: mean CIE Lab per cell and Lab standard deviation per patch.

    Descriptor: the mean L, a, b of each of ``cells x cells`` sub-squares of the patch (row-major),
    then the standard deviation of L, a, b over the whole patch; in Lab units (L 0..100, a and b
    about -100..100). Length ``3 * cells**2 + 3``.

    Parameters
    ----------
    step, sizes, max_keypoints, max_side
        As :class:`DenseSIFT` (the same values give the same keypoints).
    cells : int
        Sub-squares per patch side.

    The cap ``max_keypoints`` keeps the patches with the most colour variation.
    """

    name = "dense_lab"
    color_mode = "RGB"

    def __init__(
        self,
        step: float = 8,
        sizes: Sequence[float] = (16, 24, 32),
        cells: int = 1,
        max_keypoints: int | None = None,
        max_side: int | None = 512,
    ) -> None:
        self.step = step
        self.sizes = sizes
        self.cells = cells
        self.max_keypoints = max_keypoints
        self.max_side = max_side

    @property
    def descriptor_size(self) -> int:
        return 3 * self.cells**2 + 3

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.cells, int | np.integer) or self.cells < 1:
            raise ValueError(f"{self.name}: cells must be a positive integer, got {self.cells!r}")

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centres, widths = self._grid(image.shape[:2])
        integral, squares = channel_integrals(lab_units(to_rgb(image)))
        bounds = patch_bounds(centres, widths, image.shape[:2])
        spread = box_stds(integral, squares, bounds)
        descriptors = np.hstack([self._cell_means(integral, bounds), spread]).astype(np.float32)
        return self._keypoints(centres, widths), descriptors, spread.sum(axis=1)

    def _cell_means(self, integral: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """Mean Lab of each cell, (n, 3 * cells**2), cells row-major."""
        fractions = np.arange(self.cells + 1) / self.cells
        x_edges = np.rint(bounds[:, [0]] + fractions * (bounds[:, [2]] - bounds[:, [0]])).astype(
            np.int64
        )
        y_edges = np.rint(bounds[:, [1]] + fractions * (bounds[:, [3]] - bounds[:, [1]])).astype(
            np.int64
        )
        means = []
        for row in range(self.cells):
            for column in range(self.cells):
                cell = np.stack(
                    [
                        x_edges[:, column],
                        y_edges[:, row],
                        x_edges[:, column + 1],
                        y_edges[:, row + 1],
                    ],
                    axis=1,
                )
                cell[:, 2:] = np.maximum(cell[:, 2:], cell[:, :2] + 1)  # at least one pixel
                means.append(box_means(integral, cell))
        return np.hstack(means)
