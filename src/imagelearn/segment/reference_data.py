"""Readers for the two real pixel-classification sets the tests and benchmark use.

- ISBI 2012 EM membranes: ``image/N.png`` with ``label/N.png`` (255 = interior, 0 = membrane).
- Dubai aerial land cover (Humans in the Loop / MBRSC): ``tileN/images/*.jpg`` with
  colour-coded ``tileN/masks/*.png``. The colours below were checked on the masks; the
  set's own ``classes.json`` lists other, wrong, colours.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from imagelearn.core.images import load_image
from imagelearn.segment.raster import read_raster
from imagelearn.segment.samples import labels_from_colors, parse_color

EM_CLASSES = ["membrane", "interior"]

#: Dubai land-cover classes and mask colours; unlabelled (#9B9B9B) and black pixels map to 0.
DUBAI_CLASSES = {
    "building": "#3C1098",
    "land": "#8429F6",
    "road": "#6EC1E4",
    "vegetation": "#FEDD3A",
    "water": "#E2A929",
}


def load_em_slice(root: str | os.PathLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One EM slice: image ``(512, 512, 1)`` uint8 and labels (1 membrane, 2 interior)."""
    root = Path(root)
    image = read_raster(root / "image" / name)
    truth = np.where(load_image(root / "label" / name, "L") > 127, 2, 1).astype(np.int32)
    return image, truth


def dubai_tiles(root: str | os.PathLike) -> list[Path]:
    """The image files of the Dubai set, sorted by tile then part."""
    return sorted(Path(root).glob("tile*/images/*.jpg"))


def load_dubai_tile(
    image_path: str | os.PathLike, max_side: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One Dubai tile: RGB image ``(H, W, 3)`` and labels ``(H, W)`` (0 unlabelled, 1..5 as
    :data:`DUBAI_CLASSES`), both downscaled to ``max_side`` (labels by nearest neighbour)."""
    image_path = Path(image_path)
    image = read_raster(image_path, max_side=max_side)
    mask_path = image_path.parent.parent / "masks" / f"{image_path.stem}.png"
    with Image.open(mask_path) as mask:
        mask = mask.convert("RGB").resize(
            (image.shape[1], image.shape[0]), Image.Resampling.NEAREST
        )
        colors = np.asarray(mask)
    return image, labels_from_colors(
        colors, [parse_color(color) for color in DUBAI_CLASSES.values()]
    )
