"""Per-pixel features at several scales, in the manner of ilastik's pixel classifier.

Every feature is a Gaussian-scale filter response computed with :mod:`scipy.ndimage` in
``reflect`` mode. Each output pixel depends only on the input pixels within
:attr:`PixelFeatures.margin` of it, and the arithmetic per pixel does not depend on where
the pixel sits in the array, so a tile processed with that halo gives exactly the values of
the whole image (which is what :mod:`imagelearn.segment.tiling` relies on). The optional CNN
features (``cnn=``) are the exception: near a tile's halo edge they see the network's padding,
so tiled results agree with whole-image ones closely but not bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from sklearn.base import BaseEstimator

from imagelearn.core.persistence import persistable

#: Filters are truncated at this many standard deviations (vigra and ilastik use 3).
TRUNCATE = 3.0

_CENTRAL_DIFFERENCE = np.array([-0.5, 0.0, 0.5], dtype=np.float64)
_SECOND_DIFFERENCE = np.array([1.0, -2.0, 1.0], dtype=np.float64)
#: Ratio of the inner Gaussian in a difference of Gaussians (ilastik's choice).
DOG_RATIO = 0.66


@dataclass(frozen=True)
class ColorSpace:
    """A conversion of an ``(H, W, 3)`` uint8 RGB image into float32 channels.

    ``intensity`` is the index of the channel the texture filters read.
    """

    convert: Callable[[np.ndarray], np.ndarray]
    names: tuple[str, ...]
    intensity: int


def _opencv(code: int) -> Callable[[np.ndarray], np.ndarray]:
    # 8-bit conversions in OpenCV are integer lookups: identical values wherever a pixel sits.
    return lambda rgb: cv2.cvtColor(np.ascontiguousarray(rgb), code).astype(np.float32)


#: Colour spaces for 3-channel uint8 images; 1-channel images are used as intensity, and
#: images with other band counts or dtypes (multi-band TIFFs) as their raw bands.
COLOR_SPACES: dict[str, ColorSpace] = {
    "lab": ColorSpace(_opencv(cv2.COLOR_RGB2Lab), ("L", "a", "b"), 0),
    "rgb": ColorSpace(lambda rgb: rgb.astype(np.float32), ("R", "G", "B"), 1),
    "hsv": ColorSpace(_opencv(cv2.COLOR_RGB2HSV), ("H", "S", "V"), 2),
    "gray": ColorSpace(lambda rgb: _opencv(cv2.COLOR_RGB2GRAY)(rgb)[..., None], ("gray",), 0),
}


def _gaussian(channel: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(
        channel, sigma, mode="reflect", truncate=TRUNCATE, output=np.float32
    )


def _difference(
    channel: np.ndarray, axis: int, kernel: np.ndarray = _CENTRAL_DIFFERENCE
) -> np.ndarray:
    return ndimage.correlate1d(channel, kernel, axis=axis, mode="reflect", output=np.float32)


def _symmetric_eigenvalues(xx: np.ndarray, xy: np.ndarray, yy: np.ndarray) -> list[np.ndarray]:
    """Eigenvalues (larger first) of the 2x2 symmetric matrices ``[[xx, xy], [xy, yy]]``."""
    half_trace = (xx + yy) / 2
    radius = np.sqrt(((xx - yy) / 2) ** 2 + xy**2)
    return [half_trace + radius, half_trace - radius]


def _gradient_magnitude(
    channel: np.ndarray, smoothed: np.ndarray, sigma: float
) -> list[np.ndarray]:
    return [np.hypot(_difference(smoothed, 1), _difference(smoothed, 0))]


def _laplacian(channel: np.ndarray, smoothed: np.ndarray, sigma: float) -> list[np.ndarray]:
    return [
        _difference(smoothed, 0, _SECOND_DIFFERENCE) + _difference(smoothed, 1, _SECOND_DIFFERENCE)
    ]


def _hessian(channel: np.ndarray, smoothed: np.ndarray, sigma: float) -> list[np.ndarray]:
    xx = _difference(smoothed, 1, _SECOND_DIFFERENCE)
    yy = _difference(smoothed, 0, _SECOND_DIFFERENCE)
    xy = _difference(_difference(smoothed, 1), 0)
    return _symmetric_eigenvalues(xx, xy, yy)


def _difference_of_gaussians(
    channel: np.ndarray, smoothed: np.ndarray, sigma: float
) -> list[np.ndarray]:
    return [smoothed - _gaussian(channel, DOG_RATIO * sigma)]


def _structure_tensor(channel: np.ndarray, smoothed: np.ndarray, sigma: float) -> list[np.ndarray]:
    dx, dy = _difference(smoothed, 1), _difference(smoothed, 0)
    return _symmetric_eigenvalues(
        _gaussian(dx * dx, sigma), _gaussian(dx * dy, sigma), _gaussian(dy * dy, sigma)
    )


@dataclass(frozen=True)
class TextureFilter:
    """A filter of the intensity channel at scale ``sigma``.

    ``compute(channel, smoothed, sigma)`` gets the channel and its Gaussian at ``sigma``;
    ``reach(sigma)`` is how many pixels beyond the Gaussian's radius the filter reads.
    """

    compute: Callable[[np.ndarray, np.ndarray, float], list[np.ndarray]]
    outputs: tuple[str, ...]
    reach: Callable[[float], int]


def gaussian_radius(sigma: float) -> int:
    """Half-width in pixels of the truncated Gaussian kernel scipy uses for ``sigma``."""
    return int(TRUNCATE * sigma + 0.5)


#: Texture filters applied to the intensity channel at every scale (ilastik's set).
TEXTURE_FILTERS: dict[str, TextureFilter] = {
    "gradient": TextureFilter(_gradient_magnitude, ("magnitude",), lambda sigma: 1),
    "laplacian": TextureFilter(_laplacian, ("value",), lambda sigma: 1),
    "dog": TextureFilter(_difference_of_gaussians, ("value",), lambda sigma: 0),
    "hessian": TextureFilter(_hessian, ("eig1", "eig2"), lambda sigma: 2),
    "structure": TextureFilter(
        _structure_tensor, ("eig1", "eig2"), lambda sigma: 1 + gaussian_radius(sigma)
    ),
}


def channels_of(image: np.ndarray, color_space: str) -> tuple[np.ndarray, tuple[str, ...], int]:
    """Convert an image to float32 feature channels.

    Parameters
    ----------
    image : ndarray, ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` uint8 or ``(H, W, C)`` any dtype
    color_space : str
        Key of :data:`COLOR_SPACES`; used only for 3-channel uint8 images.

    Returns
    -------
    channels : float32 ``(H, W, C')``
    names : tuple of str, one per channel
    intensity : int, the channel texture filters read (the band mean for multi-band images,
        appended as a last channel)
    """
    if color_space not in COLOR_SPACES:
        raise ValueError(f"unknown color space {color_space!r}; choose from {sorted(COLOR_SPACES)}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    if image.shape[2] == 1:
        return image.astype(np.float32), ("intensity",), 0
    if image.shape[2] == 3 and image.dtype == np.uint8:
        space = COLOR_SPACES[color_space]
        return space.convert(image), space.names, space.intensity
    bands = image.astype(np.float32)
    mean = bands.mean(axis=2, keepdims=True, dtype=np.float32)
    names = tuple(f"band{index}" for index in range(image.shape[2]))
    return np.concatenate([bands, mean], axis=2), (*names, "band_mean"), image.shape[2]


@persistable
class PixelFeatures(BaseEstimator):
    """Multi-scale per-pixel features: smoothed colour plus texture filters of intensity.

    Parameters
    ----------
    sigmas : tuple of float
        Gaussian scales in pixels (each > 0).
    color_space : str
        Key of :data:`COLOR_SPACES` for RGB images.
    texture : bool
        Add the texture filters (on the intensity channel) at every scale.
    texture_filters : tuple of str
        Keys of :data:`TEXTURE_FILTERS` used when ``texture`` is true.
    cnn : str or None
        A backbone name (e.g. ``"mobilenet_v2"``, whose ImageNet weights are offline): add its
        early feature maps (strides 2 to 8) upsampled to every pixel; see
        :mod:`imagelearn.segment.cnn_features`. 8-bit grey or RGB images only.

    Examples
    --------
    >>> features = PixelFeatures(sigmas=(1, 2), color_space="lab")
    >>> features.transform(np.zeros((8, 9, 3), np.uint8)).shape
    (8, 9, 20)
    """

    def __init__(
        self,
        sigmas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0),
        color_space: str = "lab",
        texture: bool = True,
        texture_filters: tuple[str, ...] = tuple(TEXTURE_FILTERS),
        cnn: str | None = None,
    ) -> None:
        self.sigmas = sigmas
        self.color_space = color_space
        self.texture = texture
        self.texture_filters = texture_filters
        self.cnn = cnn

    def _check(self) -> list[str]:
        if not self.sigmas or any(not sigma > 0 for sigma in self.sigmas):
            raise ValueError(
                f"sigmas must be a non-empty list of positive scales, got {self.sigmas}"
            )
        unknown = [name for name in self.texture_filters if name not in TEXTURE_FILTERS]
        if unknown:
            raise ValueError(
                f"unknown texture filter(s) {unknown}; choose from {sorted(TEXTURE_FILTERS)}"
            )
        return list(self.texture_filters) if self.texture else []

    @property
    def margin(self) -> int:
        """Pixels of context each output pixel reads on every side (the halo tiles need)."""
        filters = self._check()
        reach = max((TEXTURE_FILTERS[name].reach(max(self.sigmas)) for name in filters), default=0)
        filter_margin = gaussian_radius(max(self.sigmas)) + reach
        if self.cnn is None:
            return filter_margin
        from imagelearn.segment.cnn_features import CNN_MARGIN

        return max(filter_margin, CNN_MARGIN)

    def feature_names(self, image: np.ndarray) -> list[str]:
        """Names of the ``F`` features :meth:`transform` returns for images shaped like ``image``."""
        _, channel_names, intensity = channels_of(image[:1, :1], self.color_space)
        names = []
        for sigma in self.sigmas:
            names += [f"gaussian_{name}_s{sigma:g}" for name in channel_names]
            for filter_name in self._check():
                outputs = TEXTURE_FILTERS[filter_name].outputs
                names += [
                    f"{filter_name}_{output}_{channel_names[intensity]}_s{sigma:g}"
                    for output in outputs
                ]
        if self.cnn is not None:
            from imagelearn.segment.cnn_features import cnn_feature_names

            names += list(cnn_feature_names(self.cnn))
        return names

    def transform(self, image: np.ndarray) -> np.ndarray:
        """Compute the features of every pixel.

        Parameters
        ----------
        image : ndarray ``(H, W)`` or ``(H, W, C)``
            Any size, down to one pixel (borders are reflected).

        Returns
        -------
        float32 ndarray ``(H, W, F)``, ``F = len(feature_names(image))``.
        """
        filters = self._check()
        channels, _, intensity = channels_of(np.asarray(image), self.color_space)
        height, width, n_channels = channels.shape
        n_features = n_channels + sum(len(TEXTURE_FILTERS[name].outputs) for name in filters)
        stack = np.empty((height, width, n_features * len(self.sigmas)), dtype=np.float32)
        index = 0
        for sigma in self.sigmas:  # each map goes into the stack at once: peak memory ~ stack
            smoothed = [_gaussian(channels[..., band], sigma) for band in range(n_channels)]
            outputs = list(smoothed)
            for name in filters:
                outputs += TEXTURE_FILTERS[name].compute(
                    channels[..., intensity], smoothed[intensity], sigma
                )
            for output in outputs:
                stack[..., index] = output
                index += 1
        if self.cnn is None:
            return stack
        from imagelearn.segment.cnn_features import cnn_pixel_features

        return np.concatenate([stack, cnn_pixel_features(np.asarray(image), self.cnn)], axis=2)
