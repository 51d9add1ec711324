"""The studio's label images of any size: painted samples kept as the blocks that hold any, and
class maps predicted block by block into files, shown as overlay tiles.

:class:`SparseLabels` holds samples (0 unlabelled, 1..K): only its ``CHUNK`` x ``CHUNK``
blocks with a label are in memory, so strokes on a 20,000 x 20,000 image cost kilobytes.
:class:`LabelMap` is a class map and its uncertainty, memory-mapped in a temporary folder
(one byte a pixel each on disk), filled block by block by a background prediction; it
counts each class as blocks arrive and renders RGBA overlay tiles of the pyramid's levels
(:mod:`imagelearn.web.pyramid`), transparent where nothing is predicted yet.
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from imagelearn.web.pyramid import tile_window

Color = tuple[int, int, int]
#: Side of a block of samples (aligned; the page sends its strokes by the same blocks).
CHUNK = 512
#: Side of a block of the class map predicted at once (with the features' halo around it).
PREDICT_BLOCK = 512


class SparseLabels:
    """Labels ``(H, W)`` uint8 kept as the ``CHUNK``-aligned blocks that hold any label."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self._chunks: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def from_dense(cls, labels: np.ndarray) -> SparseLabels:
        sparse = cls(labels.shape)
        sparse.write(0, 0, labels)
        return sparse

    def _spans(self, top: int, left: int, height: int, width: int) -> Iterator[tuple]:
        """Each chunk a window meets: its key, the window's and the chunk's slices of it."""
        for row in range(top // CHUNK, (top + height - 1) // CHUNK + 1):
            for column in range(left // CHUNK, (left + width - 1) // CHUNK + 1):
                y0, x0 = row * CHUNK, column * CHUNK
                ys = slice(max(top, y0), min(top + height, y0 + CHUNK))
                xs = slice(max(left, x0), min(left + width, x0 + CHUNK))
                window = (
                    slice(ys.start - top, ys.stop - top),
                    slice(xs.start - left, xs.stop - left),
                )
                chunk = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
                yield (row, column), window, chunk

    def _chunk_shape(self, key: tuple[int, int]) -> tuple[int, int]:
        return (
            min(CHUNK, self.shape[0] - key[0] * CHUNK),
            min(CHUNK, self.shape[1] - key[1] * CHUNK),
        )

    def write(self, top: int, left: int, labels: np.ndarray) -> None:
        """Replace the window at ``(top, left)`` by ``labels`` ``(h, w)`` (0 erases)."""
        height, width = labels.shape
        if top < 0 or left < 0 or top + height > self.shape[0] or left + width > self.shape[1]:
            raise ValueError(
                f"a {width}x{height} window at ({left}, {top}) runs outside the "
                f"{self.shape[1]}x{self.shape[0]} image"
            )
        for key, window, inside in self._spans(top, left, height, width):
            part = labels[window]
            chunk = self._chunks.get(key)
            if chunk is None:
                if not part.any():
                    continue
                chunk = self._chunks[key] = np.zeros(self._chunk_shape(key), np.uint8)
            chunk[inside] = part
            if not chunk.any():
                del self._chunks[key]

    def read(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """The labels of a window, uint8 ``(height, width)``."""
        out = np.zeros((height, width), np.uint8)
        for key, window, inside in self._spans(top, left, height, width):
            chunk = self._chunks.get(key)
            if chunk is not None:
                out[window] = chunk[inside]
        return out

    def blocks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(top, left, labels)`` of every block that holds a label, in row order."""
        for row, column in sorted(self._chunks):
            yield row * CHUNK, column * CHUNK, self._chunks[row, column]

    def any(self) -> bool:
        return bool(self._chunks)

    def counts(self, n_classes: int) -> np.ndarray:
        """Pixels of each label ``0..n_classes`` in the blocks held (int64 ``(n_classes + 1,)``)."""
        total = np.zeros(n_classes + 1, np.int64)
        for chunk in self._chunks.values():
            total += np.bincount(chunk.ravel(), minlength=n_classes + 1)[: n_classes + 1]
        return total

    def drop_above(self, label: int) -> None:
        """Unlabel the pixels of labels above ``label`` (classes removed)."""
        for key in list(self._chunks):
            chunk = self._chunks[key]
            chunk[chunk > label] = 0
            if not chunk.any():
                del self._chunks[key]

    def dense(self) -> np.ndarray:
        """The whole label image ``(H, W)`` (for images that fit in memory)."""
        return self.read(0, 0, *self.shape)


def overlay_palette(colors: Sequence[Color]) -> np.ndarray:
    """RGBA of label ``0..K``: transparent for 0, the class colours opaque."""
    return np.array([(0, 0, 0, 0), *((*color, 255) for color in colors)], np.uint8)


def uncertainty_rgba(uncertainty: np.ndarray) -> np.ndarray:
    """Magenta with alpha ``2 x`` the uncertainty (uint8 ``(h, w)`` -> ``(h, w, 4)``)."""
    rgba = np.zeros((*uncertainty.shape, 4), np.uint8)
    rgba[..., 0], rgba[..., 2] = 255, 255
    rgba[..., 3] = np.minimum(255, 2 * uncertainty.astype(np.int32)).astype(np.uint8)
    return rgba


class LabelMap:
    """A class map ``(H, W)`` and its uncertainty, memory-mapped files filled block by block.

    Attributes
    ----------
    labels : uint8 memmap ``(H, W)``: 0 where not predicted yet, else 1..K
    uncertainty : uint8 memmap ``(H, W)``: 255 (1 - highest probability)
    counts : int64 ``(K + 1,)``: pixels of each label over the blocks done
    grid : (rows, columns) of blocks of side ``PREDICT_BLOCK``
    """

    def __init__(self, shape: tuple[int, int], n_classes: int) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self._folder = tempfile.TemporaryDirectory(prefix="imagelearn-studio-map-")
        folder = Path(self._folder.name)
        self.labels = np.memmap(folder / "labels.u8", np.uint8, "w+", shape=self.shape)
        self.uncertainty = np.memmap(folder / "uncertainty.u8", np.uint8, "w+", shape=self.shape)
        self.counts = np.zeros(n_classes + 1, np.int64)
        self.grid = tuple(math.ceil(side / PREDICT_BLOCK) for side in self.shape)
        self.done = np.zeros(self.grid, bool)
        self.focus = (self.shape[0] / 2, self.shape[1] / 2)
        self._lock = threading.Lock()

    @property
    def n_done(self) -> int:
        return int(self.done.sum())

    @property
    def n_blocks(self) -> int:
        return int(self.done.size)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def block_window(self, row: int, column: int) -> tuple[slice, slice]:
        top, left = row * PREDICT_BLOCK, column * PREDICT_BLOCK
        return (
            slice(top, min(self.shape[0], top + PREDICT_BLOCK)),
            slice(left, min(self.shape[1], left + PREDICT_BLOCK)),
        )

    def next_block(self) -> tuple[int, int] | None:
        """The block to predict next: the one not done nearest to the last overlay asked for
        (what the page looks at fills in first); None when all are done."""
        with self._lock:
            rows, columns = np.nonzero(~self.done)
            if not rows.size:
                return None
            centre_y, centre_x = self.focus
            distance = np.hypot(
                (rows + 0.5) * PREDICT_BLOCK - centre_y, (columns + 0.5) * PREDICT_BLOCK - centre_x
            )
            best = int(np.argmin(distance))
            return int(rows[best]), int(columns[best])

    def put(self, row: int, column: int, labels: np.ndarray, uncertainty: np.ndarray) -> None:
        """Store the predicted block ``(row, column)``."""
        window = self.block_window(row, column)
        self.labels[window] = labels
        self.uncertainty[window] = uncertainty
        with self._lock:
            self.counts += np.bincount(labels.ravel(), minlength=self.counts.size)[
                : self.counts.size
            ]
            self.done[row, column] = True

    def overlay_tile(
        self, kind: str, level: int, column: int, row: int, colors: Sequence[Color]
    ) -> np.ndarray:
        """RGBA ``(h, w, 4)`` of one overlay tile (nearest pixel of each ``2**level`` block);
        also makes its middle the focus of the prediction. ``LookupError`` outside."""
        rows, columns = tile_window(self.shape, level, column, row)
        step = 1 << level
        self.focus = ((rows.start + rows.stop) / 2, (columns.start + columns.stop) / 2)
        source = self.labels if kind == "classes" else self.uncertainty
        pixels = np.asarray(
            source[rows.start : rows.stop : step, columns.start : columns.stop : step]
        )
        if kind == "classes":
            return overlay_palette(colors)[np.minimum(pixels, len(colors))]
        return uncertainty_rgba(pixels)

    def close(self) -> None:
        """Remove the files (the open memory maps stay readable until dropped)."""
        self._folder.cleanup()


__all__ = [
    "CHUNK",
    "PREDICT_BLOCK",
    "LabelMap",
    "SparseLabels",
    "overlay_palette",
    "uncertainty_rgba",
]
