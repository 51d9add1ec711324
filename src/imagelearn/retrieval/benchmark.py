"""A retrieval benchmark built from real photos: seeded, realistic variants of each original.

Each original becomes a query; ``n_variants`` altered copies of it go into the database among
distractors: a perspective warp with rotation and scale 0.25-1, a crop or an occlusion of
30-50 % of the area, brightness, contrast and gamma changes, blur, and JPEG quality 30-75.
Real viewpoint pairs (first image the query, second the positive) can be added. Everything
depends on ``random_state`` only, so anyone can rebuild the same benchmark.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from imagelearn.core.images import load_image
from imagelearn.core.progress import progress
from imagelearn.evaluation.ranking import QueryTruth
from imagelearn.retrieval.evaluation import save_ground_truth

GROUND_TRUTH_NAME = "ground_truth.json"
DATABASE_LIST_NAME = "database.txt"
JPEG_QUALITIES = (30, 50, 75)


def random_homography(
    width: int, height: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int]]:
    """A perspective warp with rotation (+-60 degrees) and scale 0.25-1, and its output size.

    Returns
    -------
    homography : ndarray of float64, shape (3, 3)
        Maps source pixels to the output image, which contains the whole warped source.
    size : (width, height) of the output, pixels
    """
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    jitter = rng.uniform(-0.12, 0.12, size=(4, 2)) * np.array([width, height])
    perspective = cv2.getPerspectiveTransform(corners, (corners + jitter).astype(np.float32))
    angle, scale = rng.uniform(-60, 60), rng.uniform(0.25, 1.0)
    rotation = np.vstack(
        (cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale), [0, 0, 1])
    )
    homography = rotation @ perspective
    warped = cv2.perspectiveTransform(corners[None].astype(np.float64), homography)[0]
    low, high = warped.min(axis=0), warped.max(axis=0)
    shift = np.array([[1, 0, -low[0]], [0, 1, -low[1]], [0, 0, 1]])
    size = tuple(int(v) for v in np.maximum(np.ceil(high - low), 16))
    return shift @ homography, (size[0], size[1])


def make_variant(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One realistic altered copy of an RGB uint8 image, and the JPEG quality to save it with.

    Returns
    -------
    variant : ndarray of uint8, shape (h, w, 3)
    jpeg_quality : int
    """
    height, width = image.shape[:2]
    homography, size = random_homography(width, height, rng)
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    variant = cv2.warpPerspective(
        image,
        homography,
        size,
        flags=cv2.INTER_AREA,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=background,
    )
    variant = _crop_or_occlude(variant, rng)
    gain, offset, gamma = rng.uniform(0.6, 1.4), rng.uniform(-30, 30), rng.uniform(0.5, 2.0)
    pixels = np.clip(variant.astype(np.float32) * gain + offset, 0, 255) / 255.0
    variant = (255.0 * pixels**gamma).astype(np.uint8)
    sigma = rng.uniform(0.0, 2.0)
    if sigma > 0.3:
        variant = cv2.GaussianBlur(variant, (0, 0), sigma)
    return variant, int(rng.choice(JPEG_QUALITIES))


def _crop_or_occlude(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Crop away, or cover with a flat noisy block, 30-50 % of the image area."""
    height, width = image.shape[:2]
    fraction = rng.uniform(0.3, 0.5)
    aspect = rng.uniform(0.6, 1.6)
    if rng.random() < 0.5:
        kept = 1.0 - fraction
        crop_width = int(np.clip(width * np.sqrt(kept * aspect), 16, width))
        crop_height = int(np.clip(width * height * kept / crop_width, 16, height))
        x = int(rng.integers(0, width - crop_width + 1))
        y = int(rng.integers(0, height - crop_height + 1))
        return np.ascontiguousarray(image[y : y + crop_height, x : x + crop_width])
    block_width = int(np.clip(width * np.sqrt(fraction * aspect), 1, width))
    block_height = int(np.clip(width * height * fraction / block_width, 1, height))
    x = int(rng.integers(0, width - block_width + 1))
    y = int(rng.integers(0, height - block_height + 1))
    occluded = image.copy()
    colour = rng.integers(0, 256, 3)
    noise = rng.normal(0, 12, (block_height, block_width, 3))
    occluded[y : y + block_height, x : x + block_width] = np.clip(colour + noise, 0, 255).astype(
        np.uint8
    )
    return occluded


def make_variant_benchmark(
    originals: Sequence[str | os.PathLike],
    directory: str | os.PathLike,
    n_variants: int = 5,
    distractors: Sequence[str | os.PathLike] = (),
    pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]] = (),
    random_state: int = 0,
    max_side: int = 640,
) -> Path:
    """Write a variant benchmark into ``directory``; returns its ground-truth JSON file.

    Parameters
    ----------
    originals : sequence of path-like
        Real photos; each is copied (downscaled to ``max_side``) to ``queries/`` and altered
        ``n_variants`` times into ``database/``.
    directory : path-like
    n_variants : int
    distractors : sequence of path-like
        Other images indexed beside the variants (referenced in place, not copied).
    pairs : sequence of (query, positive) paths
        Real viewpoint pairs: the first is a query, the second its only positive.
    random_state : int
    max_side : int
        Longer side of queries and variants' source, pixels.

    Returns
    -------
    pathlib.Path of ``ground_truth.json``; ``database.txt`` beside it lists every database
    image (one absolute path a line).
    """
    directory = Path(directory).resolve()
    (directory / "queries").mkdir(parents=True, exist_ok=True)
    (directory / "database").mkdir(exist_ok=True)
    rng = np.random.default_rng(random_state)
    truths, database = [], []
    for number, original in enumerate(progress(originals, "variants")):
        image = load_image(original, "RGB", max_side=max_side)
        query = directory / "queries" / f"{number:04d}.jpg"
        Image.fromarray(image).save(query, quality=95)
        positives = []
        for variant_number in range(n_variants):
            variant, quality = make_variant(image, rng)
            path = directory / "database" / f"{number:04d}_v{variant_number}.jpg"
            Image.fromarray(variant).save(path, quality=quality)
            positives.append(str(path))
        truths.append(QueryTruth(str(query), tuple(positives)))
        database += positives
    for query, positive in pairs:
        truths.append(QueryTruth(str(Path(query).resolve()), (str(Path(positive).resolve()),)))
        database.append(str(Path(positive).resolve()))
    database += [str(Path(p).resolve()) for p in distractors]
    (directory / DATABASE_LIST_NAME).write_text("\n".join(database) + "\n", encoding="utf-8")
    return save_ground_truth(truths, directory / GROUND_TRUTH_NAME)


def read_database_list(directory: str | os.PathLike) -> list[str]:
    """The database images of a benchmark written by :func:`make_variant_benchmark`."""
    path = Path(directory) / DATABASE_LIST_NAME
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def viewpoint_pairs(paths: Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """Pair files whose names are one prefix with consecutive numbers (``roofs1``/``roofs2``).

    Returns (first, second) path pairs; files of another kind (``box.pgm`` alone) are left out.
    """
    numbered = {}
    for path in paths:
        match = re.fullmatch(r"(.*?)(\d+)", Path(path).stem)
        if match:
            numbered[(match.group(1), int(match.group(2)))] = str(path)
    return [
        (path, numbered[(prefix, number + 1)])
        for (prefix, number), path in sorted(numbered.items())
        if (prefix, number + 1) in numbered
    ]
