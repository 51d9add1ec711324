"""One vector per image for grouping: CNN embeddings, BoF histograms, or colour/texture statistics."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial

import cv2
import numpy as np
from skimage.feature import local_binary_pattern

from imagelearn.core.images import ImageReadError, load_image
from imagelearn.core.parallel import parallel_map

ImageList = Sequence[str | os.PathLike]

#: Lab histogram bins (L, a, b) and the LBP radii of the "color" descriptor.
LAB_BINS = (4, 8, 8)
LBP_RADII = (1, 3)


def _color_texture_vector(path: str | os.PathLike, max_side: int) -> np.ndarray | str:
    """Lab colour histogram (256 bins) + uniform LBP histograms (2 radii x 10 bins), or the error text."""
    try:
        image = load_image(path, "RGB", max_side=max_side)
    except ImageReadError as error:
        return error.reason
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    colour = cv2.calcHist([lab], [0, 1, 2], None, list(LAB_BINS), [0, 256, 0, 256, 0, 256]).ravel()
    colour /= max(colour.sum(), 1.0)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    textures = []
    for radius in LBP_RADII:
        codes = local_binary_pattern(gray, 8, radius, method="uniform")
        histogram = np.bincount(codes.astype(np.int64).ravel(), minlength=10)[:10].astype(
            np.float32
        )
        textures.append(histogram / max(histogram.sum(), 1.0))
    return np.sqrt(np.concatenate([colour, *textures])).astype(np.float32)


def color_descriptors(
    paths: ImageList, n_jobs: int = -1, max_side: int = 256
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Colour/texture vectors (n_readable, 276) and the unreadable files."""
    results = list(
        parallel_map(
            partial(_color_texture_vector, max_side=max_side), list(paths), n_jobs, "colour/texture"
        )
    )
    return _collect(paths, results)


def _collect(
    paths: ImageList, results: Sequence[np.ndarray | str]
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    skipped = [
        (str(path), result)
        for path, result in zip(paths, results, strict=True)
        if isinstance(result, str)
    ]
    vectors = [result for result in results if not isinstance(result, str)]
    return (np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)), skipped


def bof_descriptors(
    paths: ImageList, n_jobs: int = -1, n_words: int = 500
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Bag-of-Features histograms (dense RootSIFT words + Lab colour words, Hellinger-normalised)."""
    from imagelearn.bof import BagOfFeatures
    from imagelearn.features import extract_features, make_detector

    blocks = []
    readable = np.ones(len(paths), dtype=bool)
    skipped: dict[str, str] = {}
    for detector_name, words in (("dense_rootsift", n_words), ("dense_lab", 64)):
        features, channel_skipped = extract_features(
            list(paths), make_detector(detector_name), n_jobs=n_jobs
        )
        skipped.update(channel_skipped)
        readable &= np.array([f is not None for f in features])
        present = [f for f in features if f is not None]
        bof = BagOfFeatures(
            detector=detector_name,
            n_words=words,
            pyramid=(1,),
            normalization="power",
            n_jobs=n_jobs,
        )
        histograms = np.zeros((len(paths), words), np.float32)
        histograms[[i for i, f in enumerate(features) if f is not None]] = bof.fit_features(
            present
        ).transform_features(present)
        blocks.append(histograms)
    return np.hstack(blocks)[readable], list(skipped.items())


def cnn_descriptors(
    paths: ImageList, n_jobs: int = -1, backbone: str = "mobilenet_v2"
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """ImageNet CNN embeddings (global average pooling; cached on disk by imagelearn.classify)."""
    from imagelearn.classify import build_backbone
    from imagelearn.classify.embeddings import compute_embeddings

    result = compute_embeddings(build_backbone(backbone, "imagenet"), list(paths))
    return result.vectors, result.failures


DESCRIPTORS: dict[str, Callable[..., tuple[np.ndarray, list[tuple[str, str]]]]] = {
    "cnn": cnn_descriptors,
    "bof": bof_descriptors,
    "color": color_descriptors,
}


def describe_images(
    paths: ImageList, kind: str = "cnn", n_jobs: int = -1
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """One vector per readable image.

    Returns
    -------
    vectors : ndarray (n_readable, d) float32, in the order of the readable paths
    skipped : list of (path, reason) for unreadable files
    """
    if kind not in DESCRIPTORS:
        raise ValueError(f"unknown descriptor {kind!r}; choose from {sorted(DESCRIPTORS)}")
    return DESCRIPTORS[kind](paths, n_jobs=n_jobs)
