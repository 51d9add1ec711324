"""Global CNN embeddings of images, batched through the execution layer and cached on disk.

One path serves every global CNN vector: classification features, cluster descriptors and GeM
retrieval descriptors (:func:`embed_images`). The cache key of one embedding is the image
content (SHA-256 of the file bytes), the backbone, its weights, the layer, the pooling and the
input size (:func:`embedding_key`), so ``cluster`` after ``classify train`` on the same images
reads the embeddings back, and changing any of those computes afresh. Each embedding is one
small raw float32 file: ``<cache_dir>/<embedding key>/<content hash>.f32``. The network runs on
ONNX Runtime on the CPU when it is installed, else on PyTorch
(:func:`~imagelearn.classify.runtime.inference_engine`).
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
from imagelearn.classify.runtime import InferenceBackend, network_runner
from imagelearn.classify.sessions import export_folder
from imagelearn.core.bundle import atomic_write_bytes
from imagelearn.core.cache import CacheBudget, cache_root, mark_used
from imagelearn.core.execution import BatchResult, Failed, MatrixResult, map_images
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
    #: The PyTorch network behind ``forward`` (None: an ONNX file, which runs on the CPU only).
    network: torch.nn.Module | None = None

    def on_device(self, device: str) -> NetworkBatch:
        """These batches with the PyTorch network on ``device`` (``"cuda"``: what a Ray worker
        holding a GPU runs); itself when there is no PyTorch network or it is there already."""
        target = torch.device(device)
        if self.network is None or target == self.device:
            return self
        network = self.network.to(target)
        return NetworkBatch(self.prepare, network, target, network)

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


class PooledBackbone(torch.nn.Module):
    """A backbone with its pooling: ``(n, 3, h, w)`` normalised images -> ``(n, d)``.

    Parameters
    ----------
    backbone : Backbone
    pooling : {"avg", "gem"}
        The backbone's own pooling, or :func:`gem_pool` with exponent ``p`` over its last
        feature map.
    classifier : torch.nn.Linear, optional
        The classifier of the backbone's own weights
        (:func:`~imagelearn.classify.weights.imagenet_classifier`): its class probabilities
        (softmax over the average-pooled feature map, as the network was trained) follow the
        pooled vector in each row, from the same pass: ``(n, d + n_classes)``. The cache key
        names it by its class count alone.
    """

    def __init__(
        self,
        backbone: Backbone,
        pooling: Pooling = "avg",
        p: float = 3.0,
        classifier: torch.nn.Linear | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.p = p
        self.classifier = classifier

    @property
    def name(self) -> str:
        """The pooling as the cache key names it: ``avg`` or ``gem<p>``, then
        ``+classes<n>`` with a classifier."""
        pooled = "avg" if self.pooling == "avg" else f"gem{self.p:g}"
        if self.classifier is None:
            return pooled
        return f"{pooled}+classes{self.classifier.out_features}"

    @property
    def n_outputs(self) -> int:
        """Values per image: the pooled vector's, plus one per class with a classifier."""
        extra = 0 if self.classifier is None else self.classifier.out_features
        return self.backbone.num_features + extra

    def extra_repr(self) -> str:
        return f"pooling={self.name}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.pooling == "avg" and self.classifier is None:
            return self.backbone(images)
        feature_map = self.backbone.forward_features(images)
        pooled = (
            self.backbone.pool(feature_map)
            if self.pooling == "avg"
            else gem_pool(feature_map, self.p)
        )
        if self.classifier is None:
            return pooled
        probabilities = torch.softmax(self.classifier(feature_map.mean(dim=(2, 3))), dim=1)
        return torch.cat([pooled, probabilities], dim=1)


def embed_images(
    network: PooledBackbone,
    prepare: Callable[[ImageSource], torch.Tensor],
    images: Sequence[ImageSource],
    cache_dir: Path | None,
    image_size: str,
    batch_size: int = 32,
    strict: bool = False,
    description: str = "embedding",
    backend: InferenceBackend = "auto",
    shape_of: Callable[[ImageSource], tuple[int, ...]] | None = None,
) -> EmbeddingResult:
    """Embeddings of ``images`` in batches through the execution layer and the cache.

    Parameters
    ----------
    network : PooledBackbone
        Put in eval mode meanwhile (its mode is restored after); its device is used.
    prepare : callable
        Image source -> float32 tensor ``(3, h, w)``; raises :class:`ImageReadError`.
    cache_dir : Path or None
        The cache's base folder (entries in :func:`embedding_key`'s folder); None: no cache.
    image_size : str
        The input size as the cache key names it (see :func:`embedding_key`).
    backend : {"auto", "torch", "onnx"}
        Inference engine (:func:`~imagelearn.classify.runtime.inference_engine`); ONNX Runtime
        exports the network once (kept in :func:`default_cache_dir`'s ``networks`` folder).
    shape_of : callable, optional
        Source -> a cheap guess of its tensor shape: the sources then run sorted by it, so
        that a batch holds images of one shape (one network call); results keep input order.
    """
    device = next(network.parameters()).device
    forward = network_runner(backend, network, len(images), export_folder())
    order = None
    if shape_of is not None:
        order = np.asarray(sorted(range(len(images)), key=lambda i: shape_of(images[i])), np.int64)
        images = [images[index] for index in order]
    folder = cache_dir / embedding_key(network, image_size) if cache_dir is not None else None
    was_training = network.training  # a kept query network is in eval mode: left as it is
    if was_training:
        network.eval()
    try:
        result = map_images(
            NetworkBatch(prepare, forward, device, network),
            images,
            batched=True,
            batch_size=batch_size,
            workers="inline",
            cache=EmbeddingCache(folder) if folder is not None else None,
            strict=strict,
            description=description,
        )
    finally:
        if was_training:
            network.train()
    if order is not None:
        result = _in_input_order(result, order)
    return EmbeddingResult.stack(result, network.n_outputs)


def _in_input_order(result: BatchResult, order: np.ndarray) -> BatchResult:
    """``result`` of the sources ``order`` picked, back in the inputs' order."""
    kept, failed = order[result.kept], order[result.failed]
    by_kept, by_failed = np.argsort(kept, kind="stable"), np.argsort(failed, kind="stable")
    return BatchResult(
        [result.values[i] for i in by_kept],
        kept[by_kept],
        [result.failures[i] for i in by_failed],
        failed[by_failed],
        result.n_computed,
    )


def embedding_key(network: PooledBackbone, image_size: str) -> str:
    """Folder name in the cache of one backbone, weights, layer, pooling and input size:
    ``<backbone>-<weights>-<layer>-<pooling>-<image size>`` (the layer is the last feature map)."""
    backbone = network.backbone
    name = backbone.name or type(backbone).__name__
    return f"{name}-{backbone.weights_id}-last-{network.name}-{image_size}"


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
    backend: InferenceBackend = "auto",
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
    backend : {"auto", "torch", "onnx"}
        Inference engine (:func:`~imagelearn.classify.runtime.resolve_backend`).
    """
    preprocessing = preprocessing or backbone.preprocessing
    return embed_images(
        PooledBackbone(backbone, pooling),
        lambda source: preprocessing.evaluate(preprocessing.load(source)),
        images,
        resolve_cache_dir(cache_dir),
        f"crop{preprocessing.crop_size}-{preprocessing.fingerprint()}",
        batch_size,
        strict,
        backend=backend,
    )


def embed(
    images: Sequence[ImageSource],
    backbone: str | Backbone = DEFAULT_BACKBONE,
    weights: str | os.PathLike = "imagenet",
    batch_size: int = 32,
    image_size: int | None = None,
    pooling: Pooling = "avg",
    cache_dir: str | os.PathLike | None = None,
    backend: InferenceBackend = "auto",
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
    backend : {"auto", "torch", "onnx"}
        Inference engine (:func:`~imagelearn.classify.runtime.resolve_backend`).

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
        backbone,
        images,
        preprocessing,
        batch_size,
        pooling,
        cache_dir,
        strict=True,
        backend=backend,
    )
    return result.vectors
