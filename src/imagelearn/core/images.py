"""Reading images from disk into predictable NumPy arrays.

Every loader in imagelearn goes through :func:`load_image` (or, to read a header or raw
label values, :func:`open_image`), so every capability treats awkward files the same way:
EXIF orientation applied, palette/CMYK/16-bit/alpha converted, one pixel limit against
decompression bombs (:class:`ImageTooLargeError`), and errors that name the file.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps

from imagelearn.core.errors import ImagelearnError, ParameterError

#: Default limit on width x height; larger files are refused as possible decompression bombs.
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own default (2**29 / 3), stated explicitly here

ColorMode = Literal["RGB", "L"]

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
    }
)


class ImageReadError(ImagelearnError, OSError):
    """An image file could not be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageTooLargeError(ImageReadError, ParameterError):
    """An image with more pixels than ``max_pixels`` allows (the guard against decompression bombs).

    Both an :class:`ImageReadError` (``path``, ``reason``) and a :class:`ParameterError` whose
    ``parameter`` is ``"max_pixels"``, the setting that lifts the limit.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, max_pixels: int) -> None:
        self.path = str(path)
        self.reason = (
            f"{width}x{height} pixels exceeds the limit of {max_pixels} (decompression bomb?)"
        )
        self.parameter = "max_pixels"
        Exception.__init__(self, f"{self.path}: {self.reason}")


def check_pixel_limit(
    path: str | os.PathLike, width: int, height: int, max_pixels: int | None
) -> None:
    """Raise :class:`ImageTooLargeError` when ``width x height`` exceeds ``max_pixels`` (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(path, width, height, max_pixels)


#: Serializes the moments when Pillow's process-wide pixel limit is lifted (see :func:`open_image`).
_PILLOW_LIMIT_LOCK = threading.Lock()


@contextmanager
def open_image(
    path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Iterator[Image.Image]:
    """Open an image file lazily with Pillow (its header only) after checking its pixel count.

    This is the one pixel limit of the package: Pillow's own check (a warning above 89
    million pixels, an error above twice that, each with its own message) is lifted while
    the header is read (under a lock; Pillow's setting is process-wide), and ``max_pixels``
    is applied instead.

    Parameters
    ----------
    path : path-like
    max_pixels : int or None
        Refuse files whose width x height exceeds this. None: no limit.

    Yields
    ------
    PIL.Image.Image, not yet decoded (call ``load()``), closed on leaving the block.

    Raises
    ------
    ImageTooLargeError
        More pixels than ``max_pixels``.
    ImageReadError
        Missing file, a directory, or not an image Pillow can identify; the message names it.
    """
    path = Path(path)
    try:
        with _PILLOW_LIMIT_LOCK:
            pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = pillow_limit
    except FileNotFoundError as error:
        raise ImageReadError(path, "file not found") from error
    except IsADirectoryError as error:
        raise ImageReadError(path, "is a directory, not an image; give image files") from error
    except Image.UnidentifiedImageError as error:
        empty = path.stat().st_size == 0
        reason = "empty file" if empty else "not an image format Pillow can identify"
        raise ImageReadError(path, reason) from error
    except OSError as error:
        if error.errno is None:  # raised by a decoder, not by the file system
            raise ImageReadError(path, f"corrupt or truncated image ({error})") from error
        raise ImageReadError(path, f"cannot be opened ({error.strerror})") from error
    except (ValueError, SyntaxError, EOFError, struct.error) as error:
        raise ImageReadError(path, f"corrupt or truncated image ({error})") from error
    with image:
        check_pixel_limit(path, *image.size, max_pixels)
        if image.format == "PNG":
            _check_png_chunks(path)
        yield image


def _check_png_chunks(path: Path) -> None:
    """Refuse a PNG whose chunk lengths run past the end of the file.

    Pillow skips the rest of the image data by reading it, so one forged length would
    allocate up to 2 GB for a file of a hundred bytes.
    """
    size = path.stat().st_size
    with open(path, "rb") as stream:
        position = 8  # after the signature
        while position + 12 <= size:
            stream.seek(position)
            length, kind = struct.unpack(">I4s", stream.read(8))
            if position + 12 + length > size:
                kind_name = kind.decode("latin-1")
                raise ImageReadError(
                    path,
                    f"corrupt or truncated image (PNG chunk {kind_name!r} of {length} bytes "
                    "runs past the end of the file)",
                )
            if kind == b"IEND":
                return
            position += 12 + length


_MAGIC_PREFIXES = (
    b"\xff\xd8\xff",
    b"\x89PNG",
    b"GIF8",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"P1",
    b"P2",
    b"P3",
    b"P4",
    b"P5",
    b"P6",
)


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the file name has an image suffix imagelearn reads (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def looks_like_image(path: str | os.PathLike) -> bool:
    """True when the file has an image suffix, or its first bytes are an image signature.

    The second test finds images whose suffix lies (a JPEG saved as ``.svg``).
    """
    if is_image_path(path):
        return True
    try:
        with open(path, "rb") as stream:
            head = stream.read(12)
    except OSError:
        return False
    return head.startswith(_MAGIC_PREFIXES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit integer/float modes into 8-bit grayscale by their value range."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = array / 257.0
    elif image.mode == "I" and array.max(initial=0) <= 65535:  # 16-bit data in a 32-bit mode
        scaled = array / 257.0 if array.max(initial=0) > 255 else array
    else:  # "F" or wide "I": stretch the observed range
        low, high = float(array.min(initial=0)), float(array.max(initial=0))
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _normalise_mode(
    image: Image.Image, mode: ColorMode, background: tuple[int, int, int]
) -> Image.Image:
    """Convert any Pillow mode to ``mode``; transparent pixels are composited on ``background``."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        image = Image.alpha_composite(canvas, rgba).convert("RGB")
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return image.convert(mode) if image.mode != mode else image


def load_image(
    path: str | os.PathLike,
    mode: ColorMode = "RGB",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Read one image file as a uint8 array.

    Parameters
    ----------
    path : path-like
        The image file. Unicode and spaces are fine.
    mode : {"RGB", "L"}
        ``"RGB"`` returns shape ``(H, W, 3)``, ``"L"`` returns ``(H, W)``.
    max_pixels : int or None
        Refuse files whose width x height exceeds this (decompression bombs). None: no limit.
    max_side : int or None
        Downscale (keeping the aspect ratio, area interpolation) so the longer side is at most
        this many pixels. Decoding uses JPEG draft mode where it can, so huge JPEGs are cheap.
    background : (r, g, b)
        Colour under transparent pixels.

    Returns
    -------
    numpy.ndarray of uint8, ``(H, W, 3)`` or ``(H, W)``.

    Raises
    ------
    ImageTooLargeError
        More pixels than ``max_pixels`` (an :class:`ImageReadError`).
    ImageReadError
        Missing, truncated, corrupt or unsupported file, or a directory; the message names it.
    """
    path = Path(path)
    with open_image(path, max_pixels=max_pixels) as image:
        try:
            return _decode(image, mode, max_side, background)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageReadError(path, f"a frame or tile with too many pixels ({error})") from error
        except MemoryError as error:  # Pillow could not allocate this image (or one of its lines)
            width, height = image.size
            raise ImageReadError(path, f"{width}x{height} pixels do not fit in memory") from error
        except (OSError, ValueError, SyntaxError, EOFError, struct.error) as error:
            raise ImageReadError(path, f"corrupt or truncated image ({error})") from error


def _decode(
    image: Image.Image, mode: ColorMode, max_side: int | None, background: tuple[int, int, int]
) -> np.ndarray:
    """The pixels of an opened image, oriented, converted to ``mode`` and downscaled."""
    if max_side is not None and max(image.size) > max_side and image.format == "JPEG":
        image.draft(image.mode, (max_side, max_side))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image.load()
    image = ImageOps.exif_transpose(image) or image
    image = _normalise_mode(image, mode, background)
    if max_side is not None and max(image.size) > max_side:
        scale = max_side / max(image.size)
        new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(new_size, Image.Resampling.BOX)
    return np.array(image, dtype=np.uint8)


# Truncated files must raise, not decode silently into grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
