"""Matrices stored by OpenCV's ``FileStorage`` as XML (the affine-covariant datasets' homographies)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree

import numpy as np

from imagelearn.data.dataset import DatasetError


def read_opencv_matrix(path: str | os.PathLike, name: str) -> np.ndarray:
    """The matrix ``name`` of an OpenCV ``FileStorage`` XML file, float64 ``(rows, cols)``.

    Read here rather than by ``cv2.FileStorage``, which fails on the layout of the graf
    dataset's ``H1to3p.xml`` in OpenCV 5.

    Raises
    ------
    DatasetError
        The file has no matrix ``name``.
    """
    node = ElementTree.parse(path).getroot().find(name)
    if node is None:
        raise DatasetError(f"{path}: no matrix {name!r}")
    rows, cols = int(node.findtext("rows")), int(node.findtext("cols"))
    return np.array(node.findtext("data").split(), dtype=np.float64).reshape(rows, cols)
