"""Semantic segmentation with Bag of Features on superpixels.

Pipeline (per image): SLIC superpixels; dense local features computed once (grey RootSIFT
words and, optionally, Lab colour words); for every superpixel the histogram of the words
whose keypoints fall inside it, and as context the summed histograms of its adjacent
superpixels (the SLIC adjacency graph); a classifier of
:data:`imagelearn.segment.models.CLASSIFIERS` on those vectors; every pixel gets its
superpixel's class. Training superpixels are labelled by the majority of their mask pixels;
mixed ones (majority share below ``purity``) are left out.

Labels follow the rest of :mod:`imagelearn.segment`: 0 = unlabelled (ignored), ``1..K`` =
class ``class_names[k - 1]``; a background class is a class like any other.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import Field
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from imagelearn.bof.encoding import normalize_histograms
from imagelearn.bof.estimator import sample_descriptors
from imagelearn.bof.vocabulary import KMeansVocabulary
from imagelearn.core.bundle import atomic_write_bytes
from imagelearn.core.cache import CacheBudget, cache_root, mark_used
from imagelearn.core.execution import map_images
from imagelearn.core.npyfiles import load_npz
from imagelearn.core.persistence import PersistentEstimator, encode_params
from imagelearn.core.schema import StateSchema
from imagelearn.evaluation.segmentation import accuracy_report
from imagelearn.features import LocalFeatures, make_detector
from imagelearn.features.detectors import Detector
from imagelearn.segment.classifier import MAX_CLASSES
from imagelearn.segment.models import Predictor, classifier_kind

#: Detector keyword arguments the Lab colour channel shares with the texture detector.
_SHARED_GRID_PARAMS = ("step", "sizes")
#: Bump when the meaning of a cached encoding changes without a parameter changing.
ENCODING_CACHE_VERSION = 1


# ---------------------------------------------------------------- superpixel helpers


def superpixels(image: np.ndarray, superpixel_size: float, compactness: float) -> np.ndarray:
    """SLIC superpixels of roughly ``superpixel_size`` x ``superpixel_size`` pixels.

    Parameters
    ----------
    image : uint8 ndarray, shape (H, W) or (H, W, 3)

    Returns
    -------
    int64 ndarray, shape (H, W): superpixel ids ``0..n-1``, every id used.
    """
    from skimage.segmentation import slic

    n_segments = max(1, round(image.shape[0] * image.shape[1] / float(superpixel_size) ** 2))
    segments = slic(
        image,
        n_segments=n_segments,
        compactness=compactness,
        start_label=0,
        channel_axis=-1 if image.ndim == 3 else None,
    )
    return np.unique(segments, return_inverse=True)[1].reshape(segments.shape).astype(np.int64)


def superpixel_adjacency(segments: np.ndarray) -> sparse.csr_matrix:
    """Which superpixels touch (4-connectivity): symmetric 0/1 matrix, zero diagonal.

    Parameters
    ----------
    segments : int ndarray, shape (H, W), ids ``0..n-1``

    Returns
    -------
    scipy.sparse.csr_matrix of float32, shape (n, n)
    """
    n = int(segments.max()) + 1
    pairs = [
        (segments[:, :-1].ravel(), segments[:, 1:].ravel()),
        (segments[:-1, :].ravel(), segments[1:, :].ravel()),
    ]
    first = np.concatenate([a for a, _ in pairs])
    second = np.concatenate([b for _, b in pairs])
    differ = first != second
    first, second = first[differ], second[differ]
    matrix = sparse.coo_matrix(
        (np.ones(2 * first.size, dtype=np.float32), (np.r_[first, second], np.r_[second, first])),
        shape=(n, n),
    ).tocsr()
    matrix.data[:] = 1.0  # duplicates were summed
    return matrix


def word_histograms(
    segments: np.ndarray, points: np.ndarray, words: np.ndarray, n_words: int
) -> np.ndarray:
    """Count the words of keypoints per superpixel.

    Parameters
    ----------
    segments : int ndarray, shape (H, W), ids ``0..n-1``
    points : float ndarray, shape (m, 2), keypoint ``x, y`` in the pixels of ``segments``
    words : int ndarray, shape (m,)

    Returns
    -------
    float32 ndarray, shape (n, n_words)
    """
    n = int(segments.max()) + 1
    height, width = segments.shape
    columns = np.clip(np.rint(points[:, 0]).astype(np.int64), 0, width - 1)
    rows = np.clip(np.rint(points[:, 1]).astype(np.int64), 0, height - 1)
    owners = segments[rows, columns]
    counts = np.bincount(owners * n_words + words, minlength=n * n_words)
    return counts.reshape(n, n_words).astype(np.float32)


def superpixel_majority(
    segments: np.ndarray, mask: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Majority label of every superpixel and its share of the superpixel's pixels.

    Parameters
    ----------
    segments : int ndarray, shape (H, W), ids ``0..n-1``
    mask : int ndarray, shape (H, W), 0 = unlabelled, ``1..n_labels``

    Returns
    -------
    labels : int64 ndarray, shape (n,), ``1..n_labels`` (0 where no pixel is labelled)
    purity : float64 ndarray, shape (n,), majority pixels / all pixels of the superpixel
    """
    n = int(segments.max()) + 1
    counts = np.bincount(
        (segments * (n_labels + 1) + mask).ravel(), minlength=n * (n_labels + 1)
    ).reshape(n, n_labels + 1)
    labelled = counts[:, 1:]
    labels = np.where(labelled.max(axis=1) > 0, labelled.argmax(axis=1) + 1, 0)
    purity = labelled.max(axis=1) / np.maximum(counts.sum(axis=1), 1)
    return labels.astype(np.int64), purity


def _resize_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of an integer map to ``shape`` (H, W)."""
    if labels.shape == shape:
        return labels
    rows = np.minimum((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0], labels.shape[0] - 1)
    columns = np.minimum(
        (np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1], labels.shape[1] - 1
    )
    return labels[rows.astype(np.int64)[:, None], columns.astype(np.int64)[None, :]]


def _as_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    ):
        raise ValueError(
            f"images must be uint8 (H, W), (H, W, 1) or (H, W, 3); got {image.dtype} {image.shape}"
        )
    return image


@dataclass
class _Encoded:
    """One image at the working scale: superpixels, their adjacency and local features."""

    segments: np.ndarray
    adjacency: sparse.csr_matrix
    features: list[LocalFeatures]


@dataclass(frozen=True)
class _RawEncoding:
    """What the encoding cache stores of one image: superpixels and the detectors' raw
    features (:meth:`~imagelearn.features.Detector.detect_raw`), at the working scale."""

    segments: np.ndarray
    features: tuple[LocalFeatures, ...]


@dataclass(frozen=True)
class _Encoder:
    """Encodes one image for :func:`~imagelearn.core.execution.map_images` (picklable: the
    detectors and superpixel settings, not the estimator)."""

    detectors: tuple[Detector, ...]
    superpixel_size: float
    compactness: float
    max_side: int | None

    def working(self, image: np.ndarray) -> np.ndarray:
        """``image`` with its longer side brought down to ``max_side`` (area interpolation)."""
        longest = max(image.shape[:2])
        if self.max_side is None or longest <= self.max_side:
            return image
        scale = self.max_side / longest
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def __call__(self, image: np.ndarray) -> _RawEncoding:
        working = self.working(_as_image(image))
        segments = superpixels(working, self.superpixel_size, self.compactness)
        return _RawEncoding(
            segments, tuple(detector.detect_raw(working) for detector in self.detectors)
        )

    def finish(self, raw: _RawEncoding) -> _Encoded:
        """The superpixel adjacency and the detectors' final descriptors (not cached)."""
        return _Encoded(
            raw.segments,
            superpixel_adjacency(raw.segments),
            [
                detector.normalise_descriptors(features)
                for detector, features in zip(self.detectors, raw.features, strict=True)
            ],
        )

    def recipe(self) -> str:
        """Everything an encoding depends on besides the image, as JSON (part of the cache key)."""
        from skimage import __version__ as skimage_version

        return json.dumps(
            {
                "cache_version": ENCODING_CACHE_VERSION,
                "opencv": cv2.__version__,
                "skimage": skimage_version,
                "detectors": [[d.name, d.get_params()] for d in self.detectors],
                "superpixel_size": float(self.superpixel_size),
                "compactness": float(self.compactness),
                "max_side": self.max_side,
            },
            sort_keys=True,
            default=lambda value: value.item() if isinstance(value, np.generic) else str(value),
        )


@dataclass(frozen=True)
class EncodingCache:
    """BoF-segmentation encodings on disk (a :class:`~imagelearn.core.execution.Cache`):
    ``<folder>/<key[:2]>/<key>.npz``, keyed by the SHA-256 of the encoder's recipe and the
    image's shape and pixels. SIFT's integer raw values are stored in one byte each.

    Reading an entry marks it used; writes are reported to ``budget`` (None: the size cap of
    ``folder``'s cache home, if it lies in one, see :class:`~imagelearn.core.cache.CacheBudget`).
    """

    folder: Path
    recipe: str
    budget: CacheBudget | None = None

    def __post_init__(self) -> None:
        if self.budget is None:
            object.__setattr__(self, "budget", CacheBudget.of(self.folder))

    def key(self, image: np.ndarray) -> str:
        image = np.ascontiguousarray(image)
        digest = hashlib.sha256(self.recipe.encode("utf-8"))
        digest.update(f"{image.dtype}{image.shape}".encode())
        digest.update(image.data)
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str) -> _RawEncoding | None:
        """The cached encoding; None when absent or unreadable (it is then computed again)."""
        path = self._path(key)
        try:
            stored = load_npz(path)
            n_channels = int(stored["n_channels"][0])
            encoding = _RawEncoding(
                stored["segments"].astype(np.int64),
                tuple(_unpacked_features(stored, f"channel{c}.") for c in range(n_channels)),
            )
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None
        mark_used(path)
        return encoding

    def put(self, key: str, raw: _RawEncoding) -> None:
        arrays = {
            "segments": raw.segments.astype(np.int32),
            "n_channels": np.array([len(raw.features)], dtype=np.int64),
        }
        for channel, features in enumerate(raw.features):
            arrays |= _packed_features(features, f"channel{channel}.")
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(self._path(key), buffer.getvalue())
        if self.budget is not None:
            self.budget.record(buffer.tell())


def _packed_features(features: LocalFeatures, prefix: str) -> dict[str, np.ndarray]:
    """Arrays of ``features``; float descriptors that are all integers in 0..255 in one byte."""
    descriptors = features.descriptors
    packed = (
        descriptors.dtype == np.float32
        and np.all((descriptors >= 0) & (descriptors <= 255))
        and np.array_equal(descriptors, np.rint(descriptors))
    )
    return {
        f"{prefix}keypoints": features.keypoints,
        f"{prefix}descriptors": descriptors.astype(np.uint8) if packed else descriptors,
        f"{prefix}float_descriptors": np.array([packed]),
        f"{prefix}image_shape": np.asarray(features.image_shape, dtype=np.int64),
    }


def _unpacked_features(stored: Any, prefix: str) -> LocalFeatures:
    descriptors = stored[f"{prefix}descriptors"]
    if stored[f"{prefix}float_descriptors"][0]:
        descriptors = descriptors.astype(np.float32)
    return LocalFeatures(
        stored[f"{prefix}keypoints"],
        descriptors,
        tuple(int(v) for v in stored[f"{prefix}image_shape"]),
    )


# ---------------------------------------------------------------- estimator


class BofSegmenterState(StateSchema):
    """The JSON state of a saved :class:`BofSegmenter` (the arrays aside)."""

    vocabularies: list[dict[str, Any]] = Field(min_length=1, max_length=16)
    classes: list[int] = Field(min_length=2, max_length=MAX_CLASSES)
    class_names: list[str] = Field(min_length=2, max_length=MAX_CLASSES)
    n_superpixels_per_class: dict[str, int]
    n_features: int = Field(ge=1)


class BofSegmenter(PersistentEstimator, BaseEstimator):
    """Per-pixel classes from Bag-of-Features histograms of SLIC superpixels.

    Saved with :meth:`save` as a ``bof-segmenter`` bundle and read back with :meth:`load`;
    ``n_jobs`` is not saved (set it with ``set_params`` after loading).

    Parameters
    ----------
    detector : str
        Texture detector of :data:`imagelearn.features.DETECTORS` (a dense one suits best).
    detector_params : dict or None
        Its keyword arguments (default ``{"step": 4, "sizes": (8, 16)}``); ``step`` and
        ``sizes`` also set the colour channel's grid.
    n_words : int
        Words of the texture vocabulary.
    color_n_words : int
        Words of a ``dense_lab`` colour vocabulary added beside it; 0 for none.
    superpixel_size : float
        Approximate side of a SLIC superpixel in working pixels.
    compactness : float
        SLIC compactness (higher: squarer superpixels).
    neighbor_context : bool
        Append the summed histograms of the adjacent superpixels.
    normalization : str
        Of each histogram block, one of :data:`imagelearn.bof.NORMALIZATIONS`.
    purity : float
        Training superpixels whose majority label covers less of them are left out.
    max_side : int or None
        Work on a copy whose longer side is at most this (labels come back at full size).
    classifier, classifier_params
        Key of :data:`imagelearn.segment.models.CLASSIFIERS` and its keyword arguments.
    sample_size : int
        Descriptors drawn over all training images to build each vocabulary.
    random_state : int
    n_jobs : int or None
        Threads encoding the images, for FAISS and for the forest (-1: all cores).
    cache_dir : path or None
        Where the encodings (superpixels and raw local features) of images are cached
        (:class:`EncodingCache`), so a second run over the same images skips SLIC and the
        detectors. None: ``$IMAGELEARN_CACHE/segmentation`` (else
        ``~/.cache/imagelearn/segmentation``); ``""``: no cache. A runtime setting: not saved.

    Attributes
    ----------
    vocabularies_ : list of KMeansVocabulary
        Texture vocabulary, then the colour one when ``color_n_words > 0``.
    classes_ : int64 ndarray, shape (K,)
        Labels seen in training (1..255).
    class_names_ : list of str
        Name of label ``k`` at index ``k - 1`` (classes absent from training included).
    n_superpixels_per_class_ : dict of str to int
    n_features_ : int
        Length of a superpixel's vector.
    detectors_ : list of Detector
        Texture detector, then the colour one when ``color_n_words > 0``.
    arrays_ : dict of str to ndarray
        The trained classifier as plain arrays (see :mod:`imagelearn.segment.models`).

    Examples
    --------
    >>> model = BofSegmenter(n_words=200).fit(images, masks, ["background", "daisy"])  # doctest: +SKIP
    >>> labels = model.predict(image)  # (H, W) uint8 with values in classes_  # doctest: +SKIP
    """

    bundle_kind = "bof-segmenter"
    state_schema = BofSegmenterState

    def __init__(
        self,
        detector: str = "dense_rootsift",
        detector_params: dict | None = None,
        n_words: int = 200,
        color_n_words: int = 32,
        superpixel_size: float = 16,
        compactness: float = 10.0,
        neighbor_context: bool = True,
        normalization: str = "power",
        purity: float = 0.6,
        max_side: int | None = 512,
        classifier: str = "random_forest",
        classifier_params: dict | None = None,
        sample_size: int = 100_000,
        random_state: int = 0,
        n_jobs: int | None = -1,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.detector = detector
        self.detector_params = detector_params
        self.n_words = n_words
        self.color_n_words = color_n_words
        self.superpixel_size = superpixel_size
        self.compactness = compactness
        self.neighbor_context = neighbor_context
        self.normalization = normalization
        self.purity = purity
        self.max_side = max_side
        self.classifier = classifier
        self.classifier_params = classifier_params
        self.sample_size = sample_size
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir

    # ------------------------------------------------------------ features

    def _detectors(self) -> list[Detector]:
        params = dict(
            {"step": 4, "sizes": (8, 16)} if self.detector_params is None else self.detector_params
        )
        detectors = [make_detector(self.detector, **params)]
        if self.color_n_words:
            shared = {key: params[key] for key in _SHARED_GRID_PARAMS if key in params}
            detectors.append(make_detector("dense_lab", **shared))
        return detectors

    def _encode_images(self, images: Sequence[np.ndarray], description: str) -> list[_Encoded]:
        """Superpixels, adjacency and local features of every image, through the execution
        layer and the encoding cache, on ``n_jobs`` threads (SLIC and OpenCV release the GIL;
        worker processes were slower on Dubai tiles: they pickle megabytes per encoding)."""
        encoder = _Encoder(
            tuple(self.detectors_), self.superpixel_size, self.compactness, self.max_side
        )
        if self.cache_dir is None:
            folder = cache_root("segmentation")
        else:
            folder = Path(self.cache_dir) if str(self.cache_dir) else None
        return map_images(
            encoder,
            images,
            n_jobs=self.n_jobs,
            workers="threads",
            cache=EncodingCache(folder, encoder.recipe()) if folder is not None else None,
            finish=encoder.finish,
            strict=True,
            description=description,
        ).values

    def _superpixel_vectors(self, encoded: _Encoded) -> np.ndarray:
        """Vectors (n_superpixels, n_features_): per channel the own histogram, then context."""
        blocks = []
        for vocabulary, features in zip(self.vocabularies_, encoded.features, strict=True):
            vocabulary.set_params(n_jobs=self.n_jobs)  # a runtime setting: the current one
            words = (
                vocabulary.assign(features.descriptors)
                if len(features)
                else np.zeros(0, dtype=np.int64)
            )
            own = word_histograms(
                encoded.segments, features.keypoints[:, :2], words, vocabulary.n_words_
            )
            blocks.append(normalize_histograms(own, self.normalization))
            if self.neighbor_context:
                context = encoded.adjacency @ own
                blocks.append(normalize_histograms(context, self.normalization))
        return np.hstack(blocks)

    def superpixel_features(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Superpixels of ``image`` and their BoF vectors.

        Parameters
        ----------
        image : uint8 ndarray, shape (H, W), (H, W, 1) or (H, W, 3)

        Returns
        -------
        segments : int64 ndarray, shape (H, W), superpixel ids ``0..n-1`` at full size
        vectors : float32 ndarray, shape (n, n_features_)

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before :meth:`fit` (or :meth:`load`).
        """
        check_is_fitted(self, "arrays_")
        (encoded,) = self._encode_images([image], "superpixels and local features")
        return (
            _resize_nearest(encoded.segments, image.shape[:2]),
            self._superpixel_vectors(encoded),
        )

    # ------------------------------------------------------------ fit

    def fit(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        class_names: Sequence[str] | None = None,
    ) -> BofSegmenter:
        """Learn vocabularies and the superpixel classifier from images with label masks.

        Parameters
        ----------
        images : list of uint8 ndarrays, shape (H, W) or (H, W, 3)
        masks : list of int ndarrays, shape (H, W) of its image; 0 = unlabelled, 1..K = class
        class_names : list of str, optional
            Name of label ``k`` at index ``k - 1`` (default ``class1``...).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Mismatched counts or sizes, labels out of range, fewer than two classes in pure
            superpixels.
        """
        images, masks = list(images), [np.asarray(mask) for mask in masks]
        if len(images) != len(masks) or not images:
            raise ValueError(
                f"need one mask per image, got {len(images)} images and {len(masks)} masks"
            )
        for number, (image, mask) in enumerate(zip(images, masks, strict=True)):
            shape = np.asarray(image).shape[:2]
            if mask.shape != shape:
                raise ValueError(
                    f"mask {number} has shape {mask.shape} but its image is "
                    f"{shape[1]}x{shape[0]} (expected a mask of shape {shape})"
                )
            if mask.size and (mask.min() < 0 or mask.max() > MAX_CLASSES):
                raise ValueError(f"mask {number}: labels must be 0..{MAX_CLASSES}")
        highest = max(int(mask.max(initial=0)) for mask in masks)
        names = list(class_names or [])
        if highest > len(names) and class_names:
            raise ValueError(
                f"masks hold label {highest} but only {len(names)} class names were given"
            )
        names += [f"class{label}" for label in range(len(names) + 1, highest + 1)]
        self.class_names_ = names
        self.detectors_ = self._detectors()
        encoded = self._encode_images(images, "local features of images")
        self.vocabularies_ = []
        for channel, n_words in enumerate(
            [self.n_words, self.color_n_words][: len(self.detectors_)]
        ):
            sample = sample_descriptors(
                [item.features[channel] for item in encoded], self.sample_size, self.random_state
            )
            self.vocabularies_.append(
                KMeansVocabulary(
                    n_words=n_words, n_jobs=self.n_jobs, random_state=self.random_state
                ).fit(sample)
            )
        vectors, labels = [], []
        for item, image, mask in zip(encoded, images, masks, strict=True):
            segments = _resize_nearest(item.segments, np.asarray(image).shape[:2])
            majority, purity = superpixel_majority(segments, mask.astype(np.int64), highest)
            keep = (majority > 0) & (purity >= self.purity)
            vectors.append(self._superpixel_vectors(item)[keep])
            labels.append(majority[keep])
        features, labels = np.concatenate(vectors), np.concatenate(labels)
        self.classes_ = np.unique(labels)
        if len(self.classes_) < 2:
            found = [names[label - 1] for label in self.classes_]
            raise ValueError(
                f"pure superpixels (purity >= {self.purity}) hold {len(self.classes_)} class(es) "
                f"{found}; the masks must label at least two classes"
            )
        self.n_superpixels_per_class_ = {
            names[label - 1]: int(np.sum(labels == label)) for label in self.classes_
        }
        self.n_features_ = features.shape[1]
        kind = classifier_kind(self.classifier)
        _, self.arrays_ = kind.fit(
            features,
            np.searchsorted(self.classes_, labels),
            dict(self.classifier_params or {}),
            self.random_state,
            self.n_jobs,
        )
        return self

    # ------------------------------------------------------------ predict

    def _predictor(self) -> Predictor:
        """The trained superpixel classifier, with the current ``n_jobs``."""
        return classifier_kind(self.classifier).predictor(self.arrays_, self.n_jobs)

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Class scores of every pixel (those of its superpixel).

        Returns
        -------
        float32 ndarray, shape (H, W, K), columns in the order of ``classes_``.
        """
        segments, vectors = self.superpixel_features(image)
        return self._predictor().predict_proba(vectors)[segments]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """The class of every pixel.

        Parameters
        ----------
        image : uint8 ndarray, shape (H, W), (H, W, 1) or (H, W, 3)

        Returns
        -------
        uint8 ndarray, shape (H, W), values in ``classes_``.
        """
        segments, vectors = self.superpixel_features(image)
        best = self._predictor().predict_proba(vectors).argmax(axis=1)
        return self.classes_.astype(np.uint8)[best][segments]

    # ------------------------------------------------------------ persistence

    def _check_saveable(self) -> None:
        check_is_fitted(self, "arrays_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"classifier.{name}": array for name, array in self.arrays_.items()}
        for index, vocabulary in enumerate(self.vocabularies_):
            arrays |= {
                f"vocabulary{index}.{name}": array for name, array in vocabulary.to_arrays().items()
            }
        state = {
            "vocabularies": [encode_params(vocabulary) for vocabulary in self.vocabularies_],
            "classes": self.classes_.tolist(),
            "class_names": self.class_names_,
            "n_superpixels_per_class": self.n_superpixels_per_class_,
            "n_features": self.n_features_,
        }
        return state, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.detectors_ = self._detectors()
        self.vocabularies_ = [
            KMeansVocabulary.from_arrays(
                {**params, "n_jobs": self.n_jobs}, _with_prefix(arrays, f"vocabulary{index}.")
            )
            for index, params in enumerate(state["vocabularies"])
        ]
        if len(self.vocabularies_) != len(self.detectors_):
            raise ValueError(
                f"{len(self.vocabularies_)} vocabularies for {len(self.detectors_)} detectors"
            )
        self.classes_ = np.asarray(state["classes"], dtype=np.int64)
        self.class_names_ = list(state["class_names"])
        self.n_superpixels_per_class_ = dict(state["n_superpixels_per_class"])
        self.n_features_ = int(state["n_features"])
        self.arrays_ = _with_prefix(arrays, "classifier.")
        # A random forest is rebuilt from its arrays here: a bundle missing some fails on load.
        classifier_kind(self.classifier).predictor(self.arrays_, None)


def _with_prefix(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name[len(prefix) :]: array for name, array in arrays.items() if name.startswith(prefix)}


# ---------------------------------------------------------------- evaluation


def iou_report(
    references: Sequence[np.ndarray], predictions: Sequence[np.ndarray], class_names: Sequence[str]
) -> dict:
    """:func:`~imagelearn.evaluation.segmentation.accuracy_report` over several maps plus ``mean_iou``.

    Parameters
    ----------
    references, predictions : lists of int ndarrays, shape (H, W) per image
        Reference 0 = unlabelled (ignored).

    Returns
    -------
    dict: the accuracy report, with ``mean_iou`` the mean of the per-class IoUs that are
    defined (classes in the reference or the prediction).
    """
    report = accuracy_report(
        np.concatenate([np.asarray(reference).ravel() for reference in references]),
        np.concatenate([np.asarray(prediction).ravel() for prediction in predictions]),
        class_names,
    )
    defined = [value for value in report["iou"].values() if value is not None]
    report["mean_iou"] = float(np.mean(defined)) if defined else None
    return report
