"""Global image descriptors for retrieval: GeM pooling over a CNN's last feature map.

GeM (generalized mean, Radenovic et al. 2018): ``(mean_xy x^p)^(1/p)`` per channel, between
average (p = 1) and max pooling (p -> inf); L2-normalized, then optionally PCA-whitened
(learned on the collection) and L2-normalized again. The FAISS index that holds them is
chosen by collection size: exact inner product (``IndexFlatIP``) when small, ``IndexIVFPQ``
(tens of bytes per image) when large.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
from PIL import Image
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from imagelearn.core.images import load_image
from imagelearn.core.persistence import PersistentEstimator
from imagelearn.core.schema import NoState

#: Collections up to this size use an exact FAISS index; larger ones IVF-PQ.
EXACT_INDEX_LIMIT = 50_000
#: Bytes per PQ code of the IVF-PQ index (one byte per sub-quantiser).
PQ_BYTES = 32
#: Inverted lists probed per IVF-PQ query.
IVF_PROBES = 16
#: Prefix of the whitening's arrays inside a retrieval index.
_WHITENING_PREFIX = "whitening."


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero); float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class GeMDescriptor:
    """GeM-pooled, L2-normalized CNN descriptors of whole images, batched and cached.

    Images run sorted by their size after the resize, so that a network batch holds images of
    one shape (no padding, which would change the descriptors); on the CPU the network runs on
    ONNX Runtime when it is installed (see :func:`imagelearn.classify.embeddings.embed_images`).

    Parameters
    ----------
    backbone : str
        A name from :data:`imagelearn.classify.backbones.BACKBONES` (ImageNet weights).
    max_side : int
        Images are resized so that their longer side is this many pixels.
    p : float
        GeM exponent (:func:`imagelearn.classify.gem_pool`).
    batch_size : int
        Images per network batch (images of one shape run together).
    cache_dir : path-like, optional
        Embedding cache (:func:`imagelearn.classify.embeddings.default_cache_dir` by default;
        ``""`` disables it); keyed by content, backbone, weights, layer, ``p`` and ``max_side``.
    backend : {"auto", "torch", "onnx"}
        Inference engine (:func:`imagelearn.classify.runtime.resolve_backend`): ``auto`` is
        ONNX Runtime on the CPU when installed, PyTorch on a GPU.
    device : str, optional
        PyTorch device; default the GPU when there is one (the CPU with ``backend="onnx"``).
    """

    def __init__(
        self,
        backbone: str = "mobilenet_v2",
        max_side: int = 384,
        p: float = 3.0,
        batch_size: int = 16,
        cache_dir: str | os.PathLike | None = None,
        backend: str = "auto",
        device: str | None = None,
    ) -> None:
        self.backbone = backbone
        self.max_side = max_side
        self.p = p
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.backend = backend
        self.device = device

    def get_params(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "max_side": self.max_side,
            "p": self.p,
            "batch_size": self.batch_size,
            "cache_dir": self.cache_dir,
            "backend": self.backend,
            "device": self.device,
        }

    def _network(self):
        """The backbone with ImageNet weights, on its device (built once)."""
        if not hasattr(self, "_backbone"):
            from imagelearn.classify.runtime import configure_torch
            from imagelearn.classify.weights import build_backbone

            device = configure_torch("cpu" if self.backend == "onnx" else self.device)
            self._backbone = build_backbone(self.backbone, "imagenet").eval().to(device)
        return self._backbone

    def transform(
        self,
        images: Sequence[str | os.PathLike | np.ndarray],
        description: str = "global descriptors",
    ) -> np.ndarray:
        """Descriptors of image files or uint8 RGB arrays: (n, d) float32, unit norm.

        Raises
        ------
        ImageReadError
            An unreadable file.
        """
        return self._describe(images, description, classes=False)

    def transform_with_classes(
        self,
        images: Sequence[str | os.PathLike | np.ndarray],
        description: str = "global descriptors and classes",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors as :meth:`transform` and the ImageNet class probabilities of the
        backbone's own classifier (:func:`~imagelearn.classify.weights.imagenet_classifier`)
        from the same network pass: ((n, d) float32, (n, 1000) float32).

        Raises
        ------
        ImageReadError
            An unreadable file.
        ParameterError
            The backbone has no ImageNet classifier of one linear layer.
        """
        rows = self._describe(images, description, classes=True)
        dimension = self._network().num_features
        return l2_normalize(rows[:, :dimension]), np.ascontiguousarray(rows[:, dimension:])

    def _describe(
        self, images: Sequence[str | os.PathLike | np.ndarray], description: str, classes: bool
    ) -> np.ndarray:
        """Rows of the network of :meth:`transform` (normalized) or of
        :meth:`transform_with_classes` (raw: pooled vector, then probabilities)."""
        import torch

        from imagelearn.classify.embeddings import embed_images, resolve_cache_dir

        network = self._network()
        mean = torch.tensor(network.preprocessing.mean).view(3, 1, 1)
        std = torch.tensor(network.preprocessing.std).view(3, 1, 1)

        def prepare(image: str | os.PathLike | np.ndarray) -> torch.Tensor:
            pixels = (
                _as_rgb(image)
                if isinstance(image, np.ndarray)
                else load_image(image, "RGB", max_side=self.max_side)
            )
            tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float() / 255
            return (_resize_longer_side(tensor, self.max_side) - mean) / std

        result = embed_images(
            self._pooled_network(classes),
            prepare,
            images,
            resolve_cache_dir(self.cache_dir),
            f"side{self.max_side}",
            self.batch_size,
            strict=True,
            description=description,
            backend=self.backend,
            shape_of=self._resized_shape,
        )
        return result.vectors if classes else l2_normalize(result.vectors)

    def _pooled_network(self, classes: bool):
        """The GeM network, with the backbone's ImageNet classifier when ``classes``; kept
        (with its runner) until ``p`` changes."""
        from imagelearn.classify.embeddings import PooledBackbone

        kept = self.__dict__.setdefault("_pooled", {})
        if classes not in kept or kept[classes].p != self.p:
            network = self._network()
            classifier = None
            if classes:
                from imagelearn.classify.weights import imagenet_classifier

                classifier = imagenet_classifier(self.backbone)
                classifier = classifier.to(next(network.parameters()).device)
            kept[classes] = PooledBackbone(network, "gem", self.p, classifier)
        return kept[classes]

    def _resized_shape(self, image: str | os.PathLike | np.ndarray) -> tuple[int, int]:
        """The (height, width) an image will have after the resize, from its header (a guess:
        an unreadable file gives (0, 0), and an EXIF rotation is not applied)."""
        if isinstance(image, np.ndarray):
            height, width = image.shape[:2]
        else:
            try:
                with Image.open(image) as opened:
                    width, height = opened.size
            except (OSError, ValueError):  # unreadable: its reading reports why
                return (0, 0)
        return _resized_size(height, width, self.max_side)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def _resized_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) scaled so that the longer side is ``side`` (each at least 32 pixels)."""
    scale = side / max(height, width, 1)
    return max(32, round(height * scale)), max(32, round(width * scale))


def _resize_longer_side(tensor: Any, side: int) -> Any:
    """Bilinear (antialiased) resize of a (3, H, W) tensor so that max(H, W) == side."""
    from torch.nn import functional

    size = _resized_size(*tensor.shape[1:], side)
    return functional.interpolate(
        tensor[None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0]


class PCAWhitening(PersistentEstimator, TransformerMixin, BaseEstimator):
    """PCA whitening learned on a collection's descriptors (``x -> W (x - mean)``, then L2).

    Saved alone with :meth:`save` (``PCAWhitening.load(directory)``), or inside a retrieval
    index through :meth:`to_arrays` and :meth:`from_arrays`.

    Parameters
    ----------
    n_components : int
        Kept dimensions (at most ``min(n_samples - 1, d)`` are used).
    shrinkage : float
        Eigenvalues are raised to ``-shrinkage / 2`` instead of ``-1/2`` (0.5 damps the noise
        of the smallest components on small collections).

    Attributes
    ----------
    mean_ : ndarray of float32, shape (d,)
    projection_ : ndarray of float32, shape (n_kept, d)
    """

    bundle_kind = "pca-whitening"
    state_schema = NoState

    def __init__(self, n_components: int = 256, shrinkage: float = 0.5) -> None:
        self.n_components = n_components
        self.shrinkage = shrinkage

    def fit(self, descriptors: np.ndarray, y: None = None) -> PCAWhitening:
        """Learn the mean and whitening projection of ``descriptors`` (n, d)."""
        descriptors = np.asarray(descriptors, dtype=np.float64)
        self.mean_ = descriptors.mean(axis=0)
        centered = descriptors - self.mean_
        _, singular_values, components = np.linalg.svd(centered, full_matrices=False)
        keep = min(int(self.n_components), len(descriptors) - 1, descriptors.shape[1])
        variances = singular_values[:keep] ** 2 / max(1, len(descriptors) - 1)
        scale = np.maximum(variances, 1e-12) ** (-float(self.shrinkage) / 2)
        self.projection_ = (components[:keep] * scale[:, None]).astype(np.float32)
        self.mean_ = self.mean_.astype(np.float32)
        return self

    def transform(self, descriptors: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, n_kept) float32, unit L2 norm."""
        check_is_fitted(self, "projection_")
        return l2_normalize((np.asarray(descriptors, np.float32) - self.mean_) @ self.projection_.T)

    def _check_saveable(self) -> None:
        check_is_fitted(self, "projection_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"mean": self.mean_, "projection": self.projection_}

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.mean_ = np.asarray(arrays["mean"], dtype=np.float32)
        self.projection_ = np.asarray(arrays["projection"], dtype=np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The learned arrays named ``whitening.*``, to store inside a retrieval index."""
        self._check_saveable()
        return {f"{_WHITENING_PREFIX}{name}": array for name, array in self._get_state()[1].items()}

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> PCAWhitening:
        """A fitted whitening from ``get_params()`` and the ``whitening.*`` arrays of ``arrays``."""
        whitening = cls(**params)
        whitening._set_state(
            {},
            {
                name.removeprefix(_WHITENING_PREFIX): array
                for name, array in arrays.items()
                if name.startswith(_WHITENING_PREFIX)
            },
        )
        return whitening


def make_global_index(dimension: int, expected_size: int, training: np.ndarray) -> faiss.Index:
    """An empty FAISS inner-product index with ids: Flat up to EXACT_INDEX_LIMIT, else IVF-PQ.

    IVF-PQ is trained on ``training`` (rows of the collection) with about ``4 sqrt(n)`` lists.
    """
    if expected_size <= EXACT_INDEX_LIMIT:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
    n_lists = int(min(65_536, max(64, 4 * np.sqrt(expected_size))))
    n_lists = min(n_lists, max(1, len(training) // 39))
    sub_quantisers = max(d for d in range(1, PQ_BYTES + 1) if dimension % d == 0)
    index = faiss.IndexIVFPQ(
        faiss.IndexFlatIP(dimension),
        dimension,
        n_lists,
        sub_quantisers,
        8,
        faiss.METRIC_INNER_PRODUCT,
    )
    index.train(np.ascontiguousarray(training, dtype=np.float32))
    index.nprobe = IVF_PROBES
    return index
