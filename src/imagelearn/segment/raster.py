"""Opening the one large image a user wants classified, lazily where the format allows.

TIFF files (including multi-band and 16-bit ones) are memory-mapped with :mod:`tifffile`
when they are uncompressed, so an image larger than memory streams through tiled
prediction. JPEG, PNG and other formats are decoded whole by :func:`core.images.load_image`
(one byte per pixel and band must fit in memory); convert such an image to an uncompressed
TIFF to go beyond that.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from imagelearn.core.images import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    ImageTooLargeError,  # re-exported: its old home, kept for existing imports
    check_pixel_limit,
    load_image,
    open_image,
)

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
#: A leading axis at most this long, before a longer last axis, is read as bands-first.
_MAX_BANDS_FIRST = 16
#: The most bands of a TIFF read (hyperspectral images have a few hundred).
MAX_BANDS = 1024

__all__ = ["TIFF_SUFFIXES", "ImageTooLargeError", "read_raster"]


@contextmanager
def tiff_read_errors(path: Path) -> Iterator[None]:
    """What reading ``path`` with tifffile raises, as one :class:`ImageReadError` naming the
    file and the problem (an :class:`ImageReadError` raised inside passes unchanged)."""
    try:
        yield
    except ImageReadError:
        raise
    except FileNotFoundError as error:
        raise ImageReadError(path, "file not found") from error
    except IsADirectoryError as error:
        raise ImageReadError(path, "is a directory, not an image; give image files") from error
    except Exception as error:  # tifffile parses in Python and documents no error types
        raise ImageReadError(path, f"unreadable TIFF ({type(error).__name__}: {error})") from error


def _bands_axis_first(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[0] <= _MAX_BANDS_FIRST < shape[2]


def _bands_last(array: np.ndarray) -> np.ndarray:
    """``(H, W)`` -> ``(H, W, 1)``; ``(C, H, W)`` with few bands -> ``(H, W, C)`` (a view)."""
    if array.ndim == 2:
        return array[..., None]
    if _bands_axis_first(array.shape):
        return np.moveaxis(array, 0, -1)
    if array.ndim == 3:
        return array
    raise ValueError(f"expected a 2-D or 3-D raster, got shape {array.shape}")


def _read_tiff(path: Path, max_pixels: int | None) -> np.ndarray:
    import tifffile

    with tiff_read_errors(path):
        with tifffile.TiffFile(path) as tiff:
            shape = tuple(tiff.series[0].shape)
        if len(shape) not in (2, 3):
            raise ImageReadError(path, f"expected a 2-D or 3-D (bands) TIFF, found shape {shape}")
        height, width = shape[1:3] if _bands_axis_first(shape) else shape[:2]
        check_pixel_limit(path, width, height, max_pixels)
        bands = 1 if len(shape) == 2 else shape[0] if _bands_axis_first(shape) else shape[2]
        if bands > MAX_BANDS:
            raise ImageReadError(path, f"{bands} bands; at most {MAX_BANDS} are read")
        try:
            array = tifffile.memmap(path, mode="r")
        except ValueError:  # compressed or not contiguous: decode it whole
            array = tifffile.imread(path)
        if array.ndim != len(shape):
            raise ImageReadError(path, f"pages of shape {shape} but data of shape {array.shape}")
    return _bands_last(array)


def read_raster(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
) -> np.ndarray:
    """Open an image for pixel classification as an ``(H, W, C)`` array.

    Parameters
    ----------
    path : path-like
        TIFF (any band count and dtype, memory-mapped when uncompressed) or any format
        :func:`~imagelearn.core.images.load_image` reads.
    max_pixels : int or None
        Refuse images with more pixels (decompression bombs); None lifts the limit.
    max_side : int or None
        Downscale (area interpolation) so the longer side is at most this; decodes the whole
        image.

    Returns
    -------
    ndarray ``(H, W, C)``: uint8 with C = 1 (grayscale) or 3 (RGB) for ordinary images;
    a read-only memory map of the file's dtype for uncompressed TIFFs.

    Raises
    ------
    ImageReadError
        Missing or corrupt file, naming it.
    ImageTooLargeError
        More pixels than ``max_pixels``.
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return _read_ordinary(path, max_pixels, max_side)
    raster = _read_tiff(path, max_pixels)
    if max_side is None or max(raster.shape[:2]) <= max_side:
        return raster
    scale = max_side / max(raster.shape[:2])
    size = (max(1, round(raster.shape[1] * scale)), max(1, round(raster.shape[0] * scale)))
    bands = [
        cv2.resize(np.asarray(raster[..., band]), size, interpolation=cv2.INTER_AREA)
        for band in range(raster.shape[2])
    ]
    return np.stack(bands, axis=2)


def _read_ordinary(path: Path, max_pixels: int | None, max_side: int | None) -> np.ndarray:
    with open_image(path, max_pixels=max_pixels) as image:
        try:
            gray = image.mode in _GRAY_MODES or (image.mode == "P" and _palette_is_gray(image))
        except (OSError, ValueError, SyntaxError, EOFError) as error:  # the palette is decoded
            raise ImageReadError(path, f"corrupt or truncated image ({error})") from error
    array = load_image(path, "L" if gray else "RGB", max_pixels=max_pixels, max_side=max_side)
    return _bands_last(array)


def _palette_is_gray(image: Image.Image) -> bool:
    palette = np.asarray(image.getpalette() or [], dtype=np.int32).reshape(-1, 3)
    return bool(palette.size) and bool(np.all(palette == palette[:, :1]))
