"""Turning decoded images into network inputs, the same way for training, prediction and export.

An image goes through two steps:

1. :meth:`Preprocessing.prepare`: uint8 ``(H, W, 3)`` -> uint8 tensor ``(3, h, w)`` whose shorter
   side is ``resize_size`` (antialiased bilinear). Training keeps these in memory.
2. :meth:`Preprocessing.evaluate` (centre crop) or :meth:`Preprocessing.augment` (random
   resized crop + horizontal flip), both ending in :meth:`Preprocessing.normalize`:
   float32 ``(3, crop_size, crop_size)``, ``(x / 255 - mean) / std``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from imagelearn.core.images import load_image

#: An image to classify: a file, or a decoded uint8 array ``(H, W)`` / ``(H, W, 3)``.
ImageSource = str | os.PathLike | np.ndarray

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Resize, crop and normalisation of one network; stored in every saved model.

    Attributes
    ----------
    crop_size : int
        Side of the square network input, pixels.
    resize_size : int
        Shorter image side before the centre crop, pixels.
    mean, std : (float, float, float)
        Per-channel normalisation of ``x / 255``.
    """

    crop_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocessing:
        return cls(
            crop_size=int(values["crop_size"]),
            resize_size=int(values["resize_size"]),
            mean=tuple(float(v) for v in values["mean"]),
            std=tuple(float(v) for v in values["std"]),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }

    def fingerprint(self) -> str:
        """A short hash of the settings (part of the embedding cache key)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def with_crop_size(self, crop_size: int | None) -> Preprocessing:
        """The same preprocessing for another input size, keeping the resize/crop ratio."""
        if crop_size is None or crop_size == self.crop_size:
            return self
        if crop_size < 8:
            raise ValueError(f"image size must be at least 8 pixels, got {crop_size}")
        return replace(
            self,
            crop_size=crop_size,
            resize_size=round(crop_size * self.resize_size / self.crop_size),
        )

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """uint8 ``(H, W, 3)`` -> uint8 ``(3, h, w)`` with the shorter side ``resize_size``."""
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return F.resize(tensor, [self.resize_size], antialias=True)

    def normalize(self, tensor: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., 3, h, w)`` -> float32 normalised."""
        return F.normalize(tensor.float().div_(255.0), list(self.mean), list(self.std))

    def evaluate(self, prepared: torch.Tensor) -> torch.Tensor:
        """Centre crop and normalise a prepared image: float32 ``(3, crop_size, crop_size)``."""
        return self.normalize(F.center_crop(prepared, [self.crop_size]))

    def augment(self, prepared: torch.Tensor) -> torch.Tensor:
        """Random resized crop (35-100% of the area) and horizontal flip, then normalise."""
        crop = v2.RandomResizedCrop(self.crop_size, scale=(0.35, 1.0), antialias=True)(prepared)
        if torch.rand(()) < 0.5:
            crop = F.horizontal_flip(crop)
        return self.normalize(crop)

    def load(self, source: ImageSource) -> torch.Tensor:
        """Decode and prepare one image (see :func:`decode`)."""
        return self.prepare(decode(source, max_side=4 * self.resize_size))


def decode(source: ImageSource, max_side: int | None = None) -> np.ndarray:
    """An image file or array as uint8 ``(H, W, 3)``.

    Raises
    ------
    imagelearn.core.images.ImageReadError
        The file cannot be read; the message names it.
    """
    if isinstance(source, np.ndarray):
        array = np.asarray(source, dtype=np.uint8)
        return np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array
    return load_image(Path(source), "RGB", max_side=max_side)


def content_key(source: ImageSource) -> str:
    """SHA-256 of a file's bytes or an array's shape and bytes."""
    digest = hashlib.sha256()
    if isinstance(source, np.ndarray):
        digest.update(str(source.shape).encode())
        digest.update(np.ascontiguousarray(source, dtype=np.uint8).tobytes())
    else:
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()
