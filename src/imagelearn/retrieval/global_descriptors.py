"""Global image descriptors for retrieval: GeM pooling over a CNN's last feature map.

GeM (generalized mean, Radenovic et al. 2018): ``(mean_xy x^p)^(1/p)`` per channel, between
average (p = 1) and max pooling (p -> inf); L2-normalized, then optionally PCA-whitened
(learned on the collection by :class:`~imagelearn.retrieval.whitening.PCAWhitening`, applied
by :class:`Whitening`) and L2-normalized again. The FAISS index that holds them is chosen by
collection size: exact inner product (``IndexFlatIP``) when small, ``IndexIVFPQ`` (tens of
bytes per image) when large.

Nothing here imports PyTorch or scikit-learn until a network is built: a search describes its
query with :meth:`GeMDescriptor.describe`, on ONNX Runtime straight from the network's cached
export when there is one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagelearn.classify.sessions import export_folder, onnx_available, onnx_session
from imagelearn.core.bundle import atomic_write_json
from imagelearn.core.images import load_image

#: Collections up to this size use an exact FAISS index; larger ones IVF-PQ.
EXACT_INDEX_LIMIT = 50_000
#: Bytes per PQ code of the IVF-PQ index (one byte per sub-quantiser).
PQ_BYTES = 32
#: Inverted lists probed per IVF-PQ query.
IVF_PROBES = 16
#: Prefix of the whitening's arrays inside a retrieval index.
WHITENING_PREFIX = "whitening."


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero); float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class ExportRecord(BaseModel):
    """Which cached ONNX export runs a GeM descriptor's network, and its input normalization:
    ``<export folder>/<backbone>-imagenet-gem<p>.json``, written once the export exists."""

    model_config = ConfigDict(extra="forbid")

    export: str = Field(pattern=r"^[0-9a-f]{24}$")
    #: The descriptor's values: the first outputs (the ImageNet class scores may follow).
    dimension: int = Field(gt=0)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class GeMDescriptor:
    """GeM-pooled, L2-normalized CNN descriptors of whole images, batched and cached.

    Images run sorted by their size after the resize, so that a network batch holds images of
    one shape (no padding, which would change the descriptors); on the CPU the network runs on
    ONNX Runtime when it is installed (see :func:`imagelearn.classify.embeddings.embed_images`).
    Once the network's ONNX export is cached, :meth:`describe` runs it for one image without
    PyTorch.

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
        mean, std = network.preprocessing.mean, network.preprocessing.std

        def prepare(image: str | os.PathLike | np.ndarray) -> torch.Tensor:
            return torch.from_numpy(self._network_input(image, mean, std))

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
        self._record_export(mean, std, self._pooled_network(classes))
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

    def describe(self, image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """The descriptor of one image file or uint8 RGB array: (1, d) float32, unit norm.

        On ONNX Runtime straight from the network's cached export when there is one (PyTorch is
        not imported), else through :meth:`transform`; the same descriptor either way.

        Raises
        ------
        ImageReadError
            An unreadable file.
        """
        exported = self._exported_network()
        if exported is None:
            return self.transform([image])
        session, record = exported
        pixels = self._network_input(image, record.mean, record.std)
        outputs = session.run(None, {"images": pixels[None]})[0]
        return l2_normalize(outputs[:, : record.dimension])

    def _network_input(
        self,
        image: str | os.PathLike | np.ndarray,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> np.ndarray:
        """The network's input for one image: resized so that its longer side is ``max_side``,
        ``(pixels / 255 - mean) / std``, (3, h, w) float32."""
        pixels = (
            _as_rgb(image)
            if isinstance(image, np.ndarray)
            else load_image(image, "RGB", max_side=self.max_side)
        )
        resized = _resize_longer_side(pixels.astype(np.float32) / 255, self.max_side)
        mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        return (resized - mean) / std

    def _record_path(self) -> Path | None:
        """Where the :class:`ExportRecord` of this descriptor's network lives; None for a backbone
        name that is no plain file name (the network then runs through :meth:`transform`)."""
        name = f"{self.backbone}-imagenet-gem{float(self.p):g}.json"
        return export_folder() / name if re.fullmatch(r"[A-Za-z0-9_.-]+", name) else None

    def _read_record(self) -> ExportRecord | None:
        """The record of this descriptor's export when it is valid and the export is on disk."""
        path = self._record_path()
        if path is None:
            return None
        try:
            record = ExportRecord.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            return None
        return record if (export_folder() / f"{record.export}.onnx").is_file() else None

    def _record_export(self, mean: Sequence[float], std: Sequence[float], pooled: Any) -> None:
        """Record which export runs this descriptor's network (``pooled``: with or without the
        ImageNet classifier, whose outputs begin with the descriptor), once ONNX Runtime exported
        it; rewritten when the record names neither network of these weights."""
        from imagelearn.classify.runtime import export_key

        if self._record_path() is None:
            return
        keys = self.__dict__.setdefault("_export_keys", {})
        if id(pooled) not in keys:
            keys[id(pooled)] = export_key(pooled)  # the kept network's weights stay
        record = self._read_record()
        if record is not None and record.export in keys.values():
            return
        if (export_folder() / f"{keys[id(pooled)]}.onnx").is_file():
            payload = {
                "export": keys[id(pooled)],
                "dimension": self._network().num_features,
                "mean": list(mean),
                "std": list(std),
            }
            try:
                atomic_write_json(self._record_path(), payload)
            except OSError:  # a read-only cache: queries run through transform
                pass

    def _exported_network(self) -> tuple[Any, ExportRecord] | None:
        """(ONNX Runtime session, its record) of the cached export, opened once; None where
        the network runs through :meth:`transform` (PyTorch asked for, a device, no ONNX
        Runtime, or no export recorded yet)."""
        if getattr(self, "_exported", None) is None:
            if self.backend == "torch" or self.device not in (None, "cpu") or not onnx_available():
                return None
            record = self._read_record()
            if record is None:
                return None
            model = str(export_folder() / f"{record.export}.onnx")
            self._exported = (onnx_session(model, spinning=False), record)
        return self._exported

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


def _resize_longer_side(pixels: np.ndarray, side: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of float (H, W, 3) pixels so that
    max(H, W) == side: (3, h, w) float32.

    Pillow resamples float images in double precision (the filter PyTorch's antialiased
    ``interpolate`` was ported from: they agree to 1e-5).
    """
    height, width = _resized_size(*pixels.shape[:2], side)
    return np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(pixels[..., channel]), mode="F").resize(
                    (width, height), Image.Resampling.BILINEAR
                )
            )
            for channel in range(3)
        ]
    )


@dataclass(frozen=True)
class Whitening:
    """Fitted PCA whitening as a search applies it: ``x -> W (x - mean)``, then L2.

    Learned by :class:`~imagelearn.retrieval.whitening.PCAWhitening`; kept inside a retrieval
    index as its ``whitening.*`` arrays.

    Attributes
    ----------
    mean : ndarray of float32, shape (d,)
    projection : ndarray of float32, shape (n_kept, d)
    """

    mean: np.ndarray
    projection: np.ndarray

    def transform(self, descriptors: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, n_kept) float32, unit L2 norm."""
        return l2_normalize((np.asarray(descriptors, np.float32) - self.mean) @ self.projection.T)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays named ``whitening.*``, to store inside a retrieval index."""
        return {
            f"{WHITENING_PREFIX}mean": self.mean,
            f"{WHITENING_PREFIX}projection": self.projection,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Whitening | None:
        """The whitening held by the ``whitening.*`` arrays of ``arrays``; None without them.

        Raises
        ------
        KeyError
            A whitening array is missing.
        ValueError
            The arrays' shapes do not fit each other.
        """
        if not any(name.startswith(WHITENING_PREFIX) for name in arrays):
            return None
        mean = np.asarray(arrays[f"{WHITENING_PREFIX}mean"], dtype=np.float32)
        projection = np.asarray(arrays[f"{WHITENING_PREFIX}projection"], dtype=np.float32)
        if mean.ndim != 1 or projection.ndim != 2 or projection.shape[1] != len(mean):
            raise ValueError(
                f"whitening shapes {mean.shape} and {projection.shape} do not fit each other"
            )
        return cls(mean, projection)


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
