"""Reading IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or not."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from imagelearn.data.dataset import DatasetError

#: IDX type codes -> NumPy big-endian dtypes.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file as an array: ``(n,)`` labels or ``(n, rows, columns)`` images.

    Raises
    ------
    DatasetError
        Not an IDX file, or shorter than its header says (the message names the file).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    dtype = np.dtype(_IDX_TYPES[data[2]])
    n_dimensions = data[3]
    header = 4 + 4 * n_dimensions
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", n_dimensions, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header < expected:
        raise DatasetError(
            f"{path}: truncated ({len(data) - header} data bytes, header says {expected})"
        )
    return (
        np.frombuffer(data, dtype, int(np.prod(shape)), offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def load_fashion_mnist(
    root: str | os.PathLike, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images ``(n, 28, 28)`` uint8 and labels ``(n,)`` int64 of ``split`` ("train" or "test")."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if len(images) != len(labels):
        raise DatasetError(f"{root}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels
