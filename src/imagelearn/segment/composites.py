"""Real photos pasted onto real backgrounds: segmentation cases whose labels are certain.

Each composite is a crop of a real background photo with real object photos pasted on it,
each cut out as a rotated ellipse; the label mask is the union of the pasted ellipses, so it
is exact by construction (no human annotation). Everything is seeded.

Labels: 1 = background, ``2..K`` = the object classes in the order given (0 unused).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from imagelearn.core.bundle import atomic_write_bytes
from imagelearn.core.images import load_image

#: Object classes of the default composites (flowers5 folders) and their background name.
FLOWER_CLASSES = ("daisy", "sunflower", "tulip")
BACKGROUND = "background"


@dataclass
class Composite:
    """One composite image and its exact labels.

    Attributes
    ----------
    image : uint8 ndarray, shape (H, W, 3)
    mask : int32 ndarray, shape (H, W); 1 = background, 2.. = object classes
    """

    image: np.ndarray
    mask: np.ndarray


def _crop(background: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random ``size`` (H, W) window, after upscaling a background smaller than that."""
    height, width = size
    scale = max(height / background.shape[0], width / background.shape[1], 1.0)
    if scale > 1.0:
        background = cv2.resize(
            background,
            (int(np.ceil(background.shape[1] * scale)), int(np.ceil(background.shape[0] * scale))),
            interpolation=cv2.INTER_LINEAR,
        )
    top = rng.integers(0, background.shape[0] - height + 1)
    left = rng.integers(0, background.shape[1] - width + 1)
    return background[top : top + height, left : left + width].copy()


def _paste(
    canvas: np.ndarray,
    mask: np.ndarray,
    photo: np.ndarray,
    label: int,
    scale: float,
    rng: np.random.Generator,
) -> None:
    """Paste an ellipse cut from ``photo`` (resized by ``scale``) at a random place, in place."""
    photo = cv2.resize(
        photo,
        (max(8, round(photo.shape[1] * scale)), max(8, round(photo.shape[0] * scale))),
        interpolation=cv2.INTER_AREA,
    )
    height, width = photo.shape[:2]
    if height > canvas.shape[0] or width > canvas.shape[1]:
        photo = photo[: canvas.shape[0], : canvas.shape[1]]
        height, width = photo.shape[:2]
    inside = np.zeros((height, width), dtype=np.uint8)
    axes = (
        max(2, round(width / 2 * rng.uniform(0.75, 0.98))),
        max(2, round(height / 2 * rng.uniform(0.75, 0.98))),
    )
    cv2.ellipse(inside, (width // 2, height // 2), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    # cv2.ellipse clips a rotated ellipse to the photo, so the mask never leaves it
    top = rng.integers(0, canvas.shape[0] - height + 1)
    left = rng.integers(0, canvas.shape[1] - width + 1)
    region = (slice(top, top + height), slice(left, left + width))
    chosen = inside.astype(bool)
    canvas[region][chosen] = photo[chosen]
    mask[region][chosen] = label


def make_composites(
    objects: Mapping[str, Sequence[str | os.PathLike]],
    backgrounds: Sequence[str | os.PathLike],
    n_images: int,
    size: tuple[int, int] = (256, 256),
    objects_per_image: tuple[int, int] = (1, 3),
    scale: tuple[float, float] = (0.6, 1.0),
    background_side: int = 512,
    random_state: int = 0,
) -> tuple[list[Composite], list[str]]:
    """Composites of real object photos on real background photos, with exact masks.

    Parameters
    ----------
    objects : mapping of class name to object photo paths
        Class ``i`` (in mapping order) gets label ``i + 2``.
    backgrounds : list of paths
        Background photos; each is read at ``background_side`` and cropped at random.
    n_images : int
    size : (H, W)
        Size of every composite.
    objects_per_image : (low, high)
        Objects pasted per composite, inclusive; classes and photos drawn at random.
    scale : (low, high)
        Range of the resize factor applied to object photos.
    background_side : int
    random_state : int
        Seeds the crops, the objects drawn, their scales and places.

    Returns
    -------
    composites : list of Composite
    class_names : list of str, ``["background", *objects]``
    """
    if not objects or any(len(paths) == 0 for paths in objects.values()):
        raise ValueError("every object class needs at least one photo")
    if not backgrounds:
        raise ValueError("need at least one background photo")
    rng = np.random.default_rng(random_state)
    names = list(objects)
    loaded: dict[str, np.ndarray] = {}

    def read(path: str | os.PathLike, side: int | None) -> np.ndarray:
        key = str(path)
        if key not in loaded:
            loaded[key] = load_image(path, "RGB", max_side=side)
        return loaded[key]

    composites = []
    for _ in range(n_images):
        background = read(backgrounds[rng.integers(len(backgrounds))], background_side)
        canvas = _crop(background, size, rng)
        mask = np.ones(size, dtype=np.int32)
        for _ in range(rng.integers(objects_per_image[0], objects_per_image[1] + 1)):
            index = rng.integers(len(names))
            paths = objects[names[index]]
            photo = read(paths[rng.integers(len(paths))], None)
            _paste(canvas, mask, photo, index + 2, rng.uniform(*scale), rng)
        composites.append(Composite(canvas, mask))
    return composites, [BACKGROUND, *names]


def flower_composites(
    data_root: str | os.PathLike,
    n_train: int,
    n_test: int,
    classes: Sequence[str] = FLOWER_CLASSES,
    size: tuple[int, int] = (256, 256),
    random_state: int = 0,
) -> tuple[list[Composite], list[Composite], list[str]]:
    """flowers5 photos on Dubai aerial backgrounds, train and test from disjoint photos.

    Every other flower photo (sorted by name) and every other Dubai tile feed the training
    composites, the rest the test composites, so no test pixel comes from a training photo.

    Parameters
    ----------
    data_root : path-like
        The shared data folder holding ``flowers5/`` and ``dubai_landcover/``.
    random_state : int
        Seeds the training composites; the test ones use ``random_state + 1``.

    Returns
    -------
    train, test : lists of Composite
    class_names : list of str, ``["background", *classes]``
    """
    root = Path(data_root)
    photos = {name: sorted((root / "flowers5" / name).glob("*.jpg")) for name in classes}
    tiles = sorted((root / "dubai_landcover").glob("tile*/images/*.jpg"))
    missing = [name for name, paths in photos.items() if not paths]
    if missing or not tiles:
        raise FileNotFoundError(
            f"{root}: no photos for {missing or 'the Dubai backgrounds'} "
            "(expected flowers5/<class>/*.jpg and dubai_landcover/tile*/images/*.jpg)"
        )
    splits = []
    for part, count in ((0, n_train), (1, n_test)):
        composites, names = make_composites(
            {name: paths[part::2] for name, paths in photos.items()},
            tiles[part::2],
            count,
            size=size,
            random_state=random_state + part,
        )
        splits.append(composites)
    return splits[0], splits[1], names


def write_composites(directory: str | os.PathLike, composites: Sequence[Composite]) -> list[Path]:
    """Write ``images/NNNN.png`` and ``masks/NNNN.png`` (grey labels) for the CLI.

    Returns
    -------
    list of the image paths.
    """
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    (directory / "masks").mkdir(parents=True, exist_ok=True)
    paths = []
    for number, composite in enumerate(composites):
        for folder, array in (
            ("images", composite.image),
            ("masks", composite.mask.astype(np.uint8)),
        ):
            path = directory / folder / f"{number:04d}.png"
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="PNG")
            atomic_write_bytes(path, buffer.getvalue())
        paths.append(directory / "images" / f"{number:04d}.png")
    return paths
