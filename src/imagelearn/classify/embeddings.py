"""Global CNN embeddings of images, batched through the execution layer and cached on disk.

The cache key of one embedding is the image content (SHA-256 of the file bytes), the backbone,
its weights, the preprocessing and the pooling, so a second pass over the same images costs a
file read per image, and changing any of those computes afresh. Each embedding is one small
raw float32 file: ``<cache_dir>/<model key>/<content hash>.f32``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from imagelearn.classify.backbones import DEFAULT_BACKBONE, Backbone
from imagelearn.classify.preprocess import ImageSource, Preprocessing, content_key
from imagelearn.core.bundle import atomic_write_bytes
from imagelearn.core.cache import CacheBudget, cache_root, mark_used
from imagelearn.core.execution import Failed, MatrixResult, map_images
from imagelearn.core.images import ImageReadError

Pooling = Literal["avg", "gem"]


def default_cache_dir() -> Path:
    """``$IMAGELEARN_CACHE/embeddings``, else ``~/.cache/imagelearn/embeddings``."""
    return cache_root("embeddings")


def gem_pool(feature_map: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling (Radenovic et al. 2018): ``(n, c, h, w)`` -> ``(n, c)``,
    ``(mean_xy x^p)^(1/p)`` per channel; p=1 is average pooling, p -> inf max pooling."""
    return feature_map.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


@dataclass
class EmbeddingResult(MatrixResult):
    """A :class:`~imagelearn.core.execution.MatrixResult` of embeddings.

    Attributes
    ----------
    values : ndarray of float32, shape (n_kept, d)
        One embedding per kept image (also :attr:`vectors`).
    kept, failures, failed, n_computed
        As in :class:`~imagelearn.core.execution.BatchResult`.
    """


@dataclass(frozen=True)
class EmbeddingCache:
    """One raw float32 file per embedding: ``<folder>/<content hash>.f32``.

    Reading an entry marks it used; writes are reported to ``budget`` (None: the size cap of
    ``folder``'s cache home, if it lies in one, see :class:`~imagelearn.core.cache.CacheBudget`).
    """

    folder: Path
    budget: CacheBudget | None = None

    def __post_init__(self) -> None:
        if self.budget is None:
            object.__setattr__(self, "budget", CacheBudget.of(self.folder))

    def key(self, source: ImageSource) -> str:
        return content_key(source)

    def get(self, key: str) -> np.ndarray | None:
        path = self.folder / f"{key}.f32"
        try:
            vector = np.fromfile(path, dtype=np.float32)
        except OSError:  # absent, or evicted meanwhile
            return None
        mark_used(path)
        return vector

    def put(self, key: str, vector: np.ndarray) -> None:
        data = vector.astype(np.float32).tobytes()
        atomic_write_bytes(self.folder / f"{key}.f32", data)
        if self.budget is not None:
            self.budget.record(len(data))


@dataclass(frozen=True)
class NetworkBatch:
    """A batch function for :func:`~imagelearn.core.execution.map_images`: prepares each image
    (an unreadable one becomes :class:`~imagelearn.core.execution.Failed`), then runs the
    network once per tensor shape; one output row per image."""

    prepare: Callable[[ImageSource], torch.Tensor]
    forward: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device

    def __call__(self, sources: list[ImageSource]) -> list[np.ndarray | Failed]:
        outcomes: list[np.ndarray | Failed | None] = [None] * len(sources)
        by_shape: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
        for position, source in enumerate(sources):
            try:
                tensor = self.prepare(source)
            except ImageReadError as error:
                outcomes[position] = Failed(error.reason)
                continue
            by_shape.setdefault(tuple(tensor.shape), []).append((position, tensor))
        with torch.inference_mode():
            for members in by_shape.values():
                batch = torch.stack([tensor for _, tensor in members]).to(self.device)
                rows = self.forward(batch).float().cpu().numpy()
                for (position, _), row in zip(members, rows, strict=True):
                    outcomes[position] = row
        return outcomes


def embed_images(
    network: torch.nn.Module,
    prepare: Callable[[ImageSource], torch.Tensor],
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: Sequence[ImageSource],
    dimension: int,
    cache_folder: Path | None,
    batch_size: int = 32,
    strict: bool = False,
    description: str = "embedding",
) -> EmbeddingResult:
    """Embeddings of ``images`` in batches through the execution layer and the cache.

    Parameters
    ----------
    network : torch.nn.Module
        Put in eval mode meanwhile (its mode is restored after); its device is used.
    prepare : callable
        Image source -> float32 tensor ``(3, h, w)``; raises :class:`ImageReadError`.
    forward : callable
        ``(n, 3, h, w)`` -> ``(n, dimension)``; images of one shape are run together.
    cache_folder : Path or None
        The :class:`EmbeddingCache` folder of this network and preprocessing; None: no cache.
    """
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    try:
        result = map_images(
            NetworkBatch(prepare, forward, device),
            images,
            batched=True,
            batch_size=batch_size,
            workers="inline",
            cache=EmbeddingCache(cache_folder) if cache_folder is not None else None,
            strict=strict,
            description=description,
        )
    finally:
        network.train(was_training)
    return EmbeddingResult.stack(result, dimension)


def model_key(backbone: Backbone, preprocessing: Preprocessing, pooling: Pooling) -> str:
    """Folder name in the cache for one backbone, weights, preprocessing and pooling."""
    return f"{backbone.name or type(backbone).__name__}-{backbone.weights_id}-{preprocessing.fingerprint()}-{pooling}"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path | None:
    """``cache_dir`` as a folder: None -> :func:`default_cache_dir`; ``""`` -> None (no cache)."""
    if cache_dir is None:
        return default_cache_dir()
    return Path(cache_dir) if str(cache_dir) else None


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
    pooling : {"avg", "gem"}
        The backbone's own pooling, or :func:`gem_pool` (p=3) over its last feature map.
    cache_dir : path-like, optional
        Default :func:`default_cache_dir`; ``""`` disables the cache.
    strict : bool
        Raise :class:`ImageReadError` on the first unreadable image instead of skipping it
        with a warning.
    """
    preprocessing = preprocessing or backbone.preprocessing
    base = resolve_cache_dir(cache_dir)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return backbone(batch) if pooling == "avg" else gem_pool(backbone.forward_features(batch))

    return embed_images(
        backbone,
        lambda source: preprocessing.evaluate(preprocessing.load(source)),
        forward,
        images,
        backbone.num_features,
        base / model_key(backbone, preprocessing, pooling) if base is not None else None,
        batch_size,
        strict,
    )


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
