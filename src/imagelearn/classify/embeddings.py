"""Global CNN embeddings of images, cached on disk.

The cache key of one embedding is the image content (SHA-256 of the file bytes), the backbone,
its weights, the preprocessing and the pooling, so a second pass over the same images costs a
file read per image, and changing any of those computes afresh. Each embedding is one small
raw float32 file: ``<cache_dir>/<model key>/<content hash>.f32``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from imagelearn.classify.backbones import DEFAULT_BACKBONE, Backbone
from imagelearn.classify.preprocess import ImageSource, Preprocessing, content_key
from imagelearn.core.bundle import atomic_write_bytes
from imagelearn.core.cache import cache_root
from imagelearn.core.images import ImageReadError
from imagelearn.core.progress import progress

log = logging.getLogger(__name__)

Pooling = Literal["avg", "gem"]


def default_cache_dir() -> Path:
    """``$IMAGELEARN_CACHE/embeddings``, else ``~/.cache/imagelearn/embeddings``."""
    return cache_root("embeddings")


def gem_pool(feature_map: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling: ``(n, c, h, w)`` -> ``(n, c)``; p=1 is average pooling."""
    return feature_map.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


@dataclass
class EmbeddingResult:
    """Embeddings of the readable images of a list.

    Attributes
    ----------
    vectors : ndarray of float32, shape (n_kept, d)
    kept : ndarray of int64, shape (n_kept,)
        Indices into the input list of the rows of ``vectors``.
    failures : list of (str, str)
        ``(path, reason)`` of every image that could not be read.
    n_computed : int
        Embeddings computed by the network (the rest came from the cache).
    """

    vectors: np.ndarray
    kept: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)
    n_computed: int = 0


def model_key(backbone: Backbone, preprocessing: Preprocessing, pooling: Pooling) -> str:
    """Folder name in the cache for one backbone, weights, preprocessing and pooling."""
    return f"{backbone.name or type(backbone).__name__}-{backbone.weights_id}-{preprocessing.fingerprint()}-{pooling}"


def _pooled(backbone: Backbone, batch: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    return backbone(batch) if pooling == "avg" else gem_pool(backbone.forward_features(batch))


def compute_embeddings(
    backbone: Backbone,
    images: Sequence[ImageSource],
    preprocessing: Preprocessing | None = None,
    batch_size: int = 32,
    pooling: Pooling = "avg",
    cache_dir: str | os.PathLike | None = None,
    strict: bool = False,
) -> EmbeddingResult:
    """Embed ``images`` with ``backbone`` (eval mode, no gradients), reading and filling the cache.

    Parameters
    ----------
    preprocessing : Preprocessing, optional
        Default: ``backbone.preprocessing``.
    cache_dir : path-like, optional
        Default :func:`default_cache_dir`; ``""`` disables the cache.
    strict : bool
        Raise :class:`ImageReadError` on the first unreadable image instead of skipping it
        with a warning.
    """
    preprocessing = preprocessing or backbone.preprocessing
    cache_base = (
        default_cache_dir() if cache_dir is None else (Path(cache_dir) if str(cache_dir) else None)
    )
    folder = cache_base / model_key(backbone, preprocessing, pooling) if cache_base else None
    vectors: dict[int, np.ndarray] = {}
    failures: list[tuple[str, str]] = []
    pending: list[tuple[int, str, torch.Tensor]] = []
    n_computed = 0
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()

    def flush() -> None:
        nonlocal n_computed
        batch = torch.stack([item[2] for item in pending]).to(device)
        with torch.inference_mode():
            output = _pooled(backbone, batch, pooling).float().cpu().numpy()
        for (index, key, _), row in zip(pending, output, strict=True):
            vectors[index] = row
            if folder is not None:
                atomic_write_bytes(folder / f"{key}.f32", row.astype(np.float32).tobytes())
        n_computed += len(pending)
        pending.clear()

    for index, source in enumerate(progress(images, "embedding", total=len(images))):
        try:
            try:
                key = content_key(source)
            except OSError as error:
                raise ImageReadError(
                    source, f"cannot read file ({error.strerror or error})"
                ) from error
            cached = folder / f"{key}.f32" if folder is not None else None
            if cached is not None and cached.is_file():
                vectors[index] = np.fromfile(cached, dtype=np.float32)
                continue
            pending.append((index, key, preprocessing.evaluate(preprocessing.load(source))))
        except ImageReadError as error:
            if strict:
                raise
            log.warning("skipping unreadable image %s", error)
            failures.append((error.path, error.reason))
            continue
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    backbone.train(was_training)
    kept = np.array(sorted(vectors), dtype=np.int64)
    dimension = backbone.num_features
    matrix = (
        np.stack([vectors[i] for i in kept]).astype(np.float32)
        if len(kept)
        else np.zeros((0, dimension), np.float32)
    )
    return EmbeddingResult(matrix, kept, failures, n_computed)


def embed(
    images: Sequence[ImageSource],
    backbone: str | Backbone = DEFAULT_BACKBONE,
    weights: str | os.PathLike = "imagenet",
    batch_size: int = 32,
    image_size: int | None = None,
    pooling: Pooling = "avg",
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """Global embeddings of images, one row per image.

    Parameters
    ----------
    images : sequence of path-like or uint8 arrays
    backbone : str or Backbone
        A registry name (built with ``weights``) or a built backbone.
    image_size : int, optional
        Network input side in pixels; default the weights' own crop size.
    pooling : {"avg", "gem"}
        Global average pooling (the class token for ViT) or GeM (p=3) over the last feature map.

    Returns
    -------
    ndarray of float32, shape (n_images, d)

    Raises
    ------
    ImageReadError
        An image cannot be read (names the file).
    """
    if isinstance(backbone, str):
        from imagelearn.classify.weights import build_backbone

        backbone = build_backbone(backbone, weights)
    preprocessing = backbone.preprocessing.with_crop_size(image_size)
    result = compute_embeddings(
        backbone, images, preprocessing, batch_size, pooling, cache_dir, strict=True
    )
    return result.vectors
