"""Display tiles of a raster of any size, made on demand as a map server makes them.

Level ``k`` shows the image halved ``k`` times (``ceil(W / 2**k)`` pixels wide); tile
``(column, row)`` of it covers the full-size window of side ``TILE_SIDE * 2**k`` at
``(column, row) * TILE_SIDE * 2**k``. Fine levels are read window by window from the raster
(:class:`~imagelearn.segment.windowed.WindowedRaster`) and averaged down; levels at or above
the *overview level* (the first whose longer side is at most :data:`OVERVIEW_SIDE`) are cut
from the overview, made once by one pass over the raster in strips. Encoded tiles are kept
in a small least-recently-used cache.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from imagelearn.segment.windowed import WindowedRaster

#: Side of a display tile in pixels.
TILE_SIDE = 256
#: Longest side of the overview kept in memory (uint8 RGB: at most 48 MB).
OVERVIEW_SIDE = 4096
#: Encoded tiles kept (JPEGs of 10-40 kB).
TILE_CACHE = 512
#: Bytes of raster read at once while the overview is made.
STRIP_BYTES = 32 * 2**20


def level_count(shape: tuple[int, ...], tile_side: int = TILE_SIDE) -> int:
    """Levels of a pyramid over ``shape`` ``(H, W, ...)``: the last fits one tile."""
    return max(1, math.ceil(math.log2(max(shape[0], shape[1]) / tile_side)) + 1)


def tile_window(
    shape: tuple[int, ...], level: int, column: int, row: int, tile_side: int = TILE_SIDE
) -> tuple[slice, slice]:
    """The full-size ``(rows, columns)`` window of a tile; ``LookupError`` outside the image."""
    if not 0 <= level < level_count(shape, tile_side):
        raise LookupError(f"level {level} outside 0..{level_count(shape, tile_side) - 1}")
    span = tile_side << level
    top, left = row * span, column * span
    if row < 0 or column < 0 or top >= shape[0] or left >= shape[1]:
        raise LookupError(f"tile {column},{row} outside level {level}")
    return slice(top, min(shape[0], top + span)), slice(left, min(shape[1], left + span))


def shrink(pixels: np.ndarray, factor: int) -> np.ndarray:
    """``pixels`` ``(h, w, C)`` averaged over ``factor`` x ``factor`` blocks, ``ceil`` sizes."""
    import cv2

    if factor == 1:
        return pixels
    size = (max(1, -(-pixels.shape[1] // factor)), max(1, -(-pixels.shape[0] // factor)))
    shrunk = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return shrunk.reshape(size[1], size[0], -1) if pixels.ndim == 3 else shrunk


class TilePyramid:
    """The display tiles of one raster.

    Parameters
    ----------
    raster : WindowedRaster
    """

    def __init__(self, raster: WindowedRaster) -> None:
        self.raster = raster
        self.levels = level_count(raster.shape)
        longest = max(raster.shape[:2])
        self.overview_level = max(0, math.ceil(math.log2(longest / OVERVIEW_SIDE)))
        self._stretch: tuple[np.ndarray, np.ndarray] | None = None
        self._coarse: dict[int, np.ndarray] = {}
        self._tiles: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._overview_lock = threading.Lock()

    @property
    def plain(self) -> bool:
        """True when the raster is shown as it is (uint8 gray or RGB, no stretch)."""
        return self.raster.dtype == np.uint8 and self.raster.shape[2] in (1, 3)

    def _bands(self, pixels: np.ndarray) -> np.ndarray:
        """The bands shown: gray, RGB or the first three, as float32 unless plain."""
        if self.plain:
            return pixels
        return pixels[..., : min(3, pixels.shape[2])].astype(np.float32)

    def _to_rgb(self, shown: np.ndarray) -> np.ndarray:
        """uint8 RGB of shown bands (stretched by the overview's 2nd-98th percentiles)."""
        if not self.plain:
            low, high = self._stretch
            shown = np.clip((shown - low) / np.maximum(high - low, 1e-6) * 255, 0, 255)
            shown = shown.astype(np.uint8)
        return shown if shown.shape[2] == 3 else np.repeat(shown[..., :1], 3, axis=2)

    def overview(self) -> np.ndarray:
        """uint8 RGB ``(h, w, 3)`` at the overview level (made on first use, strip by strip)."""
        with self._overview_lock:
            if self.overview_level not in self._coarse:
                height, width, bands = self.raster.shape
                factor = 1 << self.overview_level
                row_bytes = width * bands * self.raster.dtype.itemsize
                rows = factor * max(1, STRIP_BYTES // (row_bytes * factor))
                strips = [
                    shrink(
                        self._bands(
                            self.raster.read(slice(top, min(height, top + rows)), slice(0, width))
                        ),
                        factor,
                    )
                    for top in range(0, height, rows)
                ]
                shown = np.concatenate(strips, axis=0)
                if not self.plain:
                    low, high = np.percentile(shown, [2, 98], axis=(0, 1))
                    self._stretch = (low.astype(np.float32), high.astype(np.float32))
                self._coarse[self.overview_level] = self._to_rgb(shown)
            return self._coarse[self.overview_level]

    def display(self, level: int, rows: slice, columns: slice) -> np.ndarray:
        """uint8 RGB of the full-size window ``[rows, columns]`` shown at ``level``."""
        if level >= self.overview_level:
            pixels = self._coarse_level(level)
            factor = 1 << level
            return pixels[
                rows.start // factor : -(-rows.stop // factor),
                columns.start // factor : -(-columns.stop // factor),
            ]
        if not self.plain and self._stretch is None:
            self.overview()
        return self._to_rgb(shrink(self._bands(self.raster.read(rows, columns)), 1 << level))

    def _coarse_level(self, level: int) -> np.ndarray:
        overview = self.overview()
        with self._lock:
            if level not in self._coarse:
                self._coarse[level] = shrink(overview, 1 << (level - self.overview_level))
            return self._coarse[level]

    def tile(self, level: int, column: int, row: int) -> bytes:
        """JPEG of one tile; ``LookupError`` outside the pyramid."""
        key = (level, column, row)
        with self._lock:
            if key in self._tiles:
                self._tiles.move_to_end(key)
                return self._tiles[key]
        rows, columns = tile_window(self.raster.shape, level, column, row)
        block = np.ascontiguousarray(self.display(level, rows, columns))
        buffer = io.BytesIO()
        Image.fromarray(block).save(buffer, format="JPEG", quality=88)
        data = buffer.getvalue()
        with self._lock:
            self._tiles[key] = data
            while len(self._tiles) > TILE_CACHE:
                self._tiles.popitem(last=False)
        return data
