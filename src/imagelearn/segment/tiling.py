"""Processing an image tile by tile with a halo, so the result equals whole-image processing.

A tile is read with ``margin`` extra pixels on each side (fewer at the image border, where
the filters reflect exactly as they do for the whole image), processed, and cropped back.
Only one tile's features are in memory at a time; the output can be a memory-mapped
``.npy`` file, so an image larger than memory streams through when its reader is lazy
(see :func:`imagelearn.segment.raster.read_raster`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from imagelearn.core.progress import progress


@dataclass(frozen=True)
class Tile:
    """One tile: ``core`` is where its output goes; ``read`` the larger region it reads.

    Both are ``(rows, columns)`` slices of the image; ``crop`` are the slices of the read
    region that hold the core.
    """

    core: tuple[slice, slice]
    read: tuple[slice, slice]

    @property
    def crop(self) -> tuple[slice, slice]:
        return tuple(
            slice(core.start - read.start, core.stop - read.start)
            for core, read in zip(self.core, self.read, strict=True)
        )


def iter_tiles(shape: tuple[int, int], tile_size: int | None, margin: int) -> list[Tile]:
    """Tiles covering an image of ``shape`` ``(H, W)``; ``tile_size`` None: one tile."""
    height, width = shape
    if tile_size is not None and tile_size < 1:
        raise ValueError(f"tile size must be at least 1 pixel, got {tile_size}")
    step_rows = tile_size or height
    step_columns = tile_size or width
    tiles = []
    for top in range(0, height, step_rows):
        for left in range(0, width, step_columns):
            bottom, right = min(height, top + step_rows), min(width, left + step_columns)
            tiles.append(
                Tile(
                    core=(slice(top, bottom), slice(left, right)),
                    read=(
                        slice(max(0, top - margin), min(height, bottom + margin)),
                        slice(max(0, left - margin), min(width, right + margin)),
                    ),
                )
            )
    return tiles


def iter_tile_blocks(
    raster: np.ndarray, margin: int, tile_size: int | None, description: str = "tiles"
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Yield each tile and its pixels with the halo, reading the raster lazily, with progress."""
    tiles = iter_tiles(raster.shape[:2], tile_size, margin)
    for tile in progress(tiles, description, total=len(tiles), unit="tile"):
        yield tile, np.asarray(raster[tile.read])


def map_tiles(
    function: Callable[[np.ndarray], np.ndarray],
    raster: np.ndarray,
    margin: int,
    tile_size: int | None,
    out: str | os.PathLike | None = None,
    description: str = "tiles",
) -> np.ndarray:
    """Apply a neighbourhood ``function`` to a whole image through halo tiles.

    Parameters
    ----------
    function : callable
        ``(h, w, C) -> (h, w, ...)``; each output pixel may depend on input pixels up to
        ``margin`` away.
    raster : array-like ``(H, W, C)``
        Sliceable (an ndarray or memory map).
    margin : int
        Halo in pixels.
    tile_size : int or None
        Side of the square tiles (None: the whole image at once).
    out : path-like, optional
        Write the result into this memory-mapped ``.npy`` file instead of memory.

    Returns
    -------
    ndarray ``(H, W, ...)`` (a memory map when ``out`` is given).
    """
    result = None
    for tile, block in iter_tile_blocks(raster, margin, tile_size, description):
        output = function(block)[tile.crop]
        if result is None:
            shape = (*raster.shape[:2], *output.shape[2:])
            result = (
                np.lib.format.open_memmap(
                    os.fspath(out), mode="w+", dtype=output.dtype, shape=shape
                )
                if out is not None
                else np.empty(shape, dtype=output.dtype)
            )
        result[tile.core] = output
    if isinstance(result, np.memmap):
        result.flush()
    return result
