"""One vector per image for grouping: CNN embeddings, BoF histograms, or colour/texture statistics."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial

import cv2
import numpy as np
from skimage.feature import local_binary_pattern

from imagelearn.core.errors import ParameterError
from imagelearn.core.execution import MatrixResult, map_images
from imagelearn.core.images import load_image

ImageList = Sequence[str | os.PathLike]

#: Lab histogram bins (L, a, b) and the LBP radii of the "color" descriptor.
LAB_BINS = (4, 8, 8)
LBP_RADII = (1, 3)
#: Length of the "color" descriptor: the Lab histogram, then 10 LBP bins per radius.
COLOR_DIMENSION = int(np.prod(LAB_BINS)) + 10 * len(LBP_RADII)


def _color_texture_vector(path: str | os.PathLike, max_side: int) -> np.ndarray:
    """Lab colour histogram (256 bins) + uniform LBP histograms (2 radii x 10 bins), (276,).

    Raises
    ------
    ImageReadError
        The file cannot be read.
    """
    image = load_image(path, "RGB", max_side=max_side)
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
    paths: ImageList, n_jobs: int | None = -1, max_side: int = 256
) -> MatrixResult:
    """Colour/texture vectors (n_readable, 276) of the readable files, and the unreadable ones."""
    result = map_images(
        partial(_color_texture_vector, max_side=max_side),
        list(paths),
        n_jobs=n_jobs,
        description="colour/texture",
    )
    return MatrixResult.stack(result, COLOR_DIMENSION)


def bof_descriptors(paths: ImageList, n_jobs: int | None = -1, n_words: int = 500) -> MatrixResult:
    """Bag-of-Features histograms (dense RootSIFT words + Lab colour words, Hellinger-normalised)
    of the images readable by both detectors."""
    from imagelearn.bof import BagOfFeatures
    from imagelearn.features import make_detector
    from imagelearn.features.extract import map_features

    blocks = []
    failures: dict[int, tuple[str, str]] = {}
    for detector_name, words in (("dense_rootsift", n_words), ("dense_lab", 64)):
        result = map_features(list(paths), make_detector(detector_name), n_jobs=n_jobs)
        failures.update(zip(result.failed.tolist(), result.failures, strict=True))
        bof = BagOfFeatures(
            detector=detector_name,
            n_words=words,
            pyramid=(1,),
            normalization="power",
            n_jobs=n_jobs,
        )
        histograms = np.zeros((len(paths), words), np.float32)
        histograms[result.kept] = bof.fit_features(result.values).transform_features(result.values)
        blocks.append(histograms)
    failed = np.asarray(sorted(failures), dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(paths)), failed)
    return MatrixResult(
        np.hstack(blocks)[kept], kept, [failures[index] for index in failed.tolist()], failed
    )


def cnn_descriptors(
    paths: ImageList,
    n_jobs: int = -1,
    backbone: str = "mobilenet_v2",
    cache_dir: str | os.PathLike | None = None,
) -> MatrixResult:
    """ImageNet CNN embeddings (global average pooling) through classify's embedding path: the
    same cache entries as the frozen features of ``classify train`` with that backbone.

    ``n_jobs`` is unused (the network parallelises inside its engine); ``cache_dir`` as in
    :func:`imagelearn.classify.embeddings.compute_embeddings` (None: the default cache).
    """
    from imagelearn.classify import build_backbone
    from imagelearn.classify.embeddings import compute_embeddings
    from imagelearn.classify.runtime import configure_torch

    network = build_backbone(backbone, "imagenet").to(configure_torch())
    return compute_embeddings(network, list(paths), cache_dir=cache_dir)


#: One :class:`~imagelearn.core.execution.MatrixResult` per kind: the vectors of the readable
#: images, their indices (``kept``) and the unreadable files with reasons (``failures``).
DESCRIPTORS: dict[str, Callable[..., MatrixResult]] = {
    "cnn": cnn_descriptors,
    "bof": bof_descriptors,
    "color": color_descriptors,
}


def map_descriptors(
    paths: ImageList,
    kind: str = "cnn",
    n_jobs: int = -1,
    cache_dir: str | os.PathLike | None = None,
) -> MatrixResult:
    """One vector per readable image, as a :class:`~imagelearn.core.execution.MatrixResult`.

    ``cache_dir`` is the embedding cache of the ``cnn`` kind (None: the default cache,
    ``""``: none); the other kinds are not cached.

    Returns
    -------
    MatrixResult
        ``values`` (n_readable, d) float32, in the order of the readable paths; ``kept`` their
        indices into ``paths``; ``failures`` (path, reason) of the unreadable files.

    Raises
    ------
    ParameterError
        An unknown ``kind``.
    """
    if kind not in DESCRIPTORS:
        raise ParameterError(
            "kind", f"unknown descriptor {kind!r}; choose from {sorted(DESCRIPTORS)}"
        )
    if kind == "cnn":
        return cnn_descriptors(paths, n_jobs=n_jobs, cache_dir=cache_dir)
    return DESCRIPTORS[kind](paths, n_jobs=n_jobs)


def describe_images(
    paths: ImageList, kind: str = "cnn", n_jobs: int = -1
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """:func:`map_descriptors` as ``(vectors (n_readable, d) float32, [(path, reason)] of the
    unreadable files)``."""
    result = map_descriptors(paths, kind, n_jobs)
    return result.vectors, result.failures
