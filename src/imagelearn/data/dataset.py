"""An image collection in memory: paths, integer labels and class names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imagelearn.core.errors import ImagelearnError


class DatasetError(ImagelearnError, ValueError):
    """A collection that cannot be used: empty, missing, or with too few classes."""


@dataclass(frozen=True)
class ImageDataset:
    """A list of image files with optional integer labels.

    Attributes
    ----------
    paths : list of Path, length n_images
    labels : ndarray of int64, shape (n_images,), or None when unlabelled
    class_names : list of str; ``labels`` index into it
    """

    paths: list[Path]
    labels: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.paths):
            raise DatasetError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def is_labeled(self) -> bool:
        return self.labels is not None

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        """The images at ``indices``, keeping the class names."""
        indices = np.asarray(indices, dtype=np.int64)
        labels = None if self.labels is None else self.labels[indices]
        return ImageDataset([self.paths[i] for i in indices], labels, list(self.class_names))

    def label_names(self) -> list[str]:
        """The class name of every image (empty strings when unlabelled)."""
        if self.labels is None:
            return [""] * len(self.paths)
        return [self.class_names[i] for i in self.labels]

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name."""
        if self.labels is None:
            return {}
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(count) for name, count in zip(self.class_names, counts, strict=True)}

    def require_classes(self, minimum: int = 2, source: str | os.PathLike = "") -> None:
        """Raise :class:`DatasetError` unless labelled with at least ``minimum`` non-empty classes."""
        where = f"{source}: " if source else ""
        if len(self.paths) == 0:
            raise DatasetError(f"{where}no images found")
        if self.labels is None:
            raise DatasetError(
                f"{where}images are unlabelled; put them in one sub-folder per class or give a CSV"
            )
        present = [name for name, count in self.class_counts().items() if count > 0]
        if len(present) < minimum:
            raise DatasetError(
                f"{where}found {len(present)} class(es) ({', '.join(present) or 'none'}); training needs at least {minimum}"
            )
