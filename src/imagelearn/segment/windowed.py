"""Reading windows of a raster too large to decode whole, and a GeoTIFF's pixel size.

:func:`open_windowed` gives a :class:`WindowedRaster` whose :meth:`~WindowedRaster.read`
returns one window ``(h, w, C)``: an uncompressed contiguous TIFF is read row by row with
``os.pread`` (nothing is mapped, so reading the whole file in strips leaves no trace in the
process's memory), a tiled or striped TIFF (uncompressed, deflate, LZMA: what tifffile
decodes without imagecodecs) decodes only the tiles or strips the window touches. Other
formats are decoded whole by :func:`~imagelearn.segment.raster.read_raster`, under the pixel
limit.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from imagelearn.core.images import DEFAULT_MAX_PIXELS, ImageReadError
from imagelearn.segment.raster import MAX_BANDS, TIFF_SUFFIXES, read_raster, tiff_read_errors

__all__ = [
    "ArrayRaster",
    "WindowedRaster",
    "geotiff_pixel_size",
    "open_windowed",
    "readable_by_windows",
]

#: Decoded TIFF tiles or strips kept for neighbouring windows.
SEGMENT_CACHE = 64
#: GeoTIFF keys: the model type (2 geographic: degrees) and the projected linear unit.
_MODEL_TYPE_KEY, _LINEAR_UNITS_KEY = 1024, 3076
#: EPSG linear units in metres: metre, foot, US survey foot.
_METRES_PER_UNIT = {9001: 1.0, 9002: 0.3048, 9003: 1200 / 3937}


class WindowedRaster:
    """A raster ``(H, W, C)`` read one window at a time.

    Attributes
    ----------
    shape : (H, W, C)
    dtype : numpy.dtype
    whole : bool
        True when the raster was decoded whole into memory (not a windowed TIFF).
    """

    whole = False

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype) -> None:
        self.path = path
        self.shape = shape
        self.dtype = np.dtype(dtype)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    def read(self, rows: slice, columns: slice) -> np.ndarray:
        """The pixels of ``[rows, columns]`` (slices with step 1 inside the image), ``(h, w, C)``."""
        top, bottom = rows.start or 0, self.height if rows.stop is None else rows.stop
        left, right = columns.start or 0, self.width if columns.stop is None else columns.stop
        if not (0 <= top < bottom <= self.height and 0 <= left < right <= self.width):
            raise ValueError(
                f"window rows {top}:{bottom}, columns {left}:{right} outside "
                f"{self.width}x{self.height}"
            )
        try:
            return self._read(top, bottom, left, right)
        except (OSError, ValueError, RuntimeError) as error:
            raise ImageReadError(self.path, f"unreadable window ({error})") from error

    def _read(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file (the raster cannot be read afterwards)."""


class ArrayRaster(WindowedRaster):
    """A raster decoded whole (ordinary formats, TIFFs of several pages)."""

    whole = True

    def __init__(self, path: Path, array: np.ndarray) -> None:
        super().__init__(path, tuple(array.shape), array.dtype)
        self.array = array

    def _read(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        return np.asarray(self.array[top:bottom, left:right])


class _TiffRaster(WindowedRaster):
    """Common part of the two TIFF readers: the file descriptor, the layout of the samples."""

    def __init__(self, path: Path, page) -> None:
        height, width = int(page.imagelength), int(page.imagewidth)
        super().__init__(path, (height, width, int(page.samplesperpixel)), page.dtype)
        self.separate = int(page.planarconfig) == 2 and self.shape[2] > 1
        self.stored = self.dtype.newbyteorder(page.parent.byteorder)
        self._fd = os.open(path, os.O_RDONLY)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()

    def _pread(self, size: int, offset: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise OSError(f"truncated: {len(data)} of {size} bytes at offset {offset}")
        return data


class _ContiguousTiff(_TiffRaster):
    """An uncompressed TIFF whose samples lie in one run: each window row is one ``pread``."""

    def __init__(self, path: Path, page, offset: int) -> None:
        super().__init__(path, page)
        self.offset = offset

    def _read(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        height, width, bands = self.shape
        size = self.stored.itemsize
        out = np.empty((bottom - top, right - left, bands), self.dtype)
        planes = range(bands) if self.separate else [None]
        for plane in planes:
            plane_offset = self.offset + (plane or 0) * height * width * size
            per_pixel = 1 if self.separate else bands
            target = out[..., plane] if self.separate else out
            if left == 0 and right == width:  # whole rows: one read
                start = plane_offset + top * width * per_pixel * size
                data = self._pread((bottom - top) * width * per_pixel * size, start)
                target[...] = np.frombuffer(data, self.stored).reshape(target.shape)
                continue
            count = (right - left) * per_pixel
            for row in range(top, bottom):
                start = plane_offset + (row * width + left) * per_pixel * size
                values = np.frombuffer(self._pread(count * size, start), self.stored)
                target[row - top] = values.reshape(target.shape[1:])
        return out


class _SegmentedTiff(_TiffRaster):
    """A tiled or striped TIFF: the tiles or strips a window touches are decoded (and cached)."""

    def __init__(self, path: Path, page) -> None:
        super().__init__(path, page)
        self.decode = page.decode
        self.jpegtables = page.jpegtables
        self.offsets = tuple(int(offset) for offset in page.dataoffsets)
        self.counts = tuple(int(count) for count in page.databytecounts)
        if page.is_tiled:
            self.segment_shape = (int(page.tilelength), int(page.tilewidth))
        else:
            self.segment_shape = (min(int(page.rowsperstrip), self.height), self.width)
        self.grid = tuple(
            math.ceil(side / segment)
            for side, segment in zip(self.shape[:2], self.segment_shape, strict=True)
        )
        planes = self.shape[2] if self.separate else 1
        if len(self.offsets) != planes * self.grid[0] * self.grid[1]:
            raise ValueError(f"{len(self.offsets)} segments for a grid of {self.grid}")
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        try:  # a codec tifffile lacks (JPEG, LZW without imagecodecs) fails here, not per tile
            self._segment(0)
        except Exception as error:
            self.close()
            compression = getattr(page.compression, "name", page.compression)
            raise ValueError(f"cannot decode its {compression} compression ({error})") from error

    def _segment(self, index: int) -> np.ndarray:
        """Segment ``index`` as ``(rows, columns, samples)`` (padded to the segment's shape)."""
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
        data = self._pread(self.counts[index], self.offsets[index]) if self.counts[index] else None
        segment, _, _ = self.decode(data, index, jpegtables=self.jpegtables)
        if segment is None:  # a missing segment (byte count 0) reads as zeros
            segment = np.zeros((1, *self.segment_shape, 1), self.dtype)
        segment = np.asarray(segment).reshape(segment.shape[-3:])
        with self._lock:
            self._cache[index] = segment
            while len(self._cache) > SEGMENT_CACHE:
                self._cache.popitem(last=False)
        return segment

    def _read(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        out = np.empty((bottom - top, right - left, self.shape[2]), self.dtype)
        rows, columns = self.segment_shape
        per_plane = self.grid[0] * self.grid[1]
        for grid_row in range(top // rows, (bottom - 1) // rows + 1):
            for grid_column in range(left // columns, (right - 1) // columns + 1):
                y0, x0 = grid_row * rows, grid_column * columns
                ys = slice(max(top, y0), min(bottom, y0 + rows))
                xs = slice(max(left, x0), min(right, x0 + columns))
                inside = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
                placed = (
                    slice(ys.start - top, ys.stop - top),
                    slice(xs.start - left, xs.stop - left),
                )
                index = grid_row * self.grid[1] + grid_column
                if self.separate:
                    for plane in range(self.shape[2]):
                        block = self._segment(plane * per_plane + index)
                        out[(*placed, plane)] = block[(*inside, 0)]
                else:
                    out[placed] = self._segment(index)[inside]
        return out


def open_windowed(
    path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> WindowedRaster:
    """Open an image for reading by windows.

    Parameters
    ----------
    path : path-like
    max_pixels : int or None
        Limit for images that must be decoded whole (not single-page TIFFs); a windowed TIFF
        has no pixel limit: nothing of its size is held in memory.

    Returns
    -------
    WindowedRaster

    Raises
    ------
    ImageReadError
        Missing, corrupt or unsupported file, naming it; ``ImageTooLargeError`` for a whole
        decode over ``max_pixels``.
    """
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        opened = _open_tiff(path)
        if opened is not None:
            return opened
    array = read_raster(path, max_pixels=max_pixels)
    return ArrayRaster(path, array)


def _open_tiff(path: Path) -> WindowedRaster | None:
    """A windowed reader of the TIFF's first page, or None when it is not one plain image."""
    import tifffile

    with tiff_read_errors(path), tifffile.TiffFile(path) as tiff:
        page = tiff.pages.first
        series = tiff.series[0]
        plain = len(series.pages) == 1 and page.imagedepth == 1 and page.bitspersample % 8 == 0
        if not plain or page.samplesperpixel > MAX_BANDS:
            return None
        if page.is_contiguous and page.compression == 1:
            return _ContiguousTiff(path, page, int(page.dataoffsets[0]))
        return _SegmentedTiff(path, page)


def geotiff_pixel_size(path: str | os.PathLike) -> tuple[float, float] | None:
    """The ground size of a pixel ``(x, y)`` in metres from a GeoTIFF's tags, or None.

    Read from ModelPixelScaleTag (33550), else from ModelTransformationTag (34264: the
    lengths of the matrix's column vectors), in the projected linear unit of the
    GeoKeyDirectory (metres, feet or US survey feet; metres when not stated). None for a
    file without these tags, or one in geographic (degree) coordinates.
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return None
    try:
        with tifffile.TiffFile(path) as tiff:
            tags = tiff.pages.first.tags
            scale = tags.get(33550)
            matrix = tags.get(34264)
            keys = tags.get(34735)
            keys = tuple(keys.value) if keys is not None else ()
            scale = tuple(scale.value) if scale is not None else None
            matrix = tuple(matrix.value) if matrix is not None else None
    except Exception as error:  # tifffile documents no error types
        raise ImageReadError(path, f"unreadable TIFF ({type(error).__name__}: {error})") from error
    geokeys = {keys[i]: keys[i + 3] for i in range(4, len(keys) - 3, 4) if keys[i + 1] == 0}
    if geokeys.get(_MODEL_TYPE_KEY) == 2:  # geographic: degrees, not a length
        return None
    unit = _METRES_PER_UNIT.get(geokeys.get(_LINEAR_UNITS_KEY, 9001))
    if unit is None:
        return None
    if scale is not None and len(scale) >= 2:
        size = (float(scale[0]), float(scale[1]))
    elif matrix is not None and len(matrix) == 16:
        size = (math.hypot(matrix[0], matrix[4]), math.hypot(matrix[1], matrix[5]))
    else:
        return None
    if not all(math.isfinite(side) and side > 0 for side in size):
        return None
    return size[0] * unit, size[1] * unit


def readable_by_windows(path: str | os.PathLike) -> bool:
    """True when :func:`open_windowed` reads ``path`` by windows (a single-page TIFF), so
    its size needs no pixel limit; False for anything decoded whole, or unreadable."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return False
    try:
        opened = _open_tiff(path)
    except ImageReadError:
        return False
    if opened is None:
        return False
    opened.close()
    return True
