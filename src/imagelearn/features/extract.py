"""Extracting local features from many images through the execution layer, with a disk cache.

The cache key is the SHA-256 of the file's bytes together with the detector's name and
parameters, the OpenCV version and :data:`CACHE_VERSION`; so renaming or copying a file still
hits the cache, and editing it or changing a parameter misses. Entries are ``.npz`` files
(plain ``.npy`` arrays in a zip, read without pickle) written atomically. They hold the
detector's raw output (:meth:`~imagelearn.features.Detector.detect_raw`): SIFT's integer values
are stored in one byte each, a quarter of float32, and RootSIFT is applied after reading.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from imagelearn.core.bundle import atomic_write_bytes
from imagelearn.core.cache import CacheBudget, cache_root, mark_used
from imagelearn.core.execution import Backend, BatchResult, map_images
from imagelearn.core.images import load_image
from imagelearn.core.npyfiles import load_npz
from imagelearn.features.base import LocalFeatures
from imagelearn.features.detectors import Detector, rescale_features

#: Bump when the meaning of cached features changes without a parameter changing.
CACHE_VERSION = 2

#: EXIF orientations that swap width and height (transposed or rotated by 90 degrees).
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112

logger = logging.getLogger(__name__)

ImageSource = str | os.PathLike | np.ndarray


def default_cache_dir() -> Path:
    """``$IMAGELEARN_CACHE/features``, else ``~/.cache/imagelearn/features``."""
    return cache_root("features")


def cache_key(path: str | os.PathLike, detector: Detector) -> str:
    """Hex SHA-256 naming the features of the file at ``path`` under ``detector``."""
    with open(path, "rb") as stream:
        content = hashlib.file_digest(stream, "sha256").hexdigest()
    recipe = json.dumps(
        {
            "cache_version": CACHE_VERSION,
            "opencv": cv2.__version__,
            "detector": detector.name,
            "params": detector.get_params(),
            "content": content,
        },
        sort_keys=True,
        default=lambda value: value.item() if isinstance(value, np.generic) else str(value),
    )
    return hashlib.sha256(recipe.encode("utf-8")).hexdigest()


def _entry_path(cache_dir: Path, detector: Detector, key: str) -> Path:
    return cache_dir / detector.name / key[:2] / f"{key}.npz"


def _read_entry(path: Path) -> LocalFeatures | None:
    """The cached raw features at ``path``, marked as used; None when absent or unreadable
    (then recomputed)."""
    try:
        stored = load_npz(path)
        descriptors = stored["descriptors"]
        if "float_descriptors" in stored:
            descriptors = descriptors.astype(np.float32)
        features = LocalFeatures(
            stored["keypoints"], descriptors, tuple(int(v) for v in stored["image_shape"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        logger.debug("ignoring unreadable cache entry %s (%s)", path, error)
        return None
    mark_used(path)
    return features


def _write_entry(path: Path, features: LocalFeatures) -> int:
    """Save raw features; float descriptors that are all integers in 0..255 go in one byte.
    Returns the bytes written."""
    arrays = {
        "keypoints": features.keypoints,
        "descriptors": features.descriptors,
        "image_shape": np.asarray(features.image_shape, dtype=np.int64),
    }
    descriptors = features.descriptors
    if (
        descriptors.dtype == np.float32
        and np.all((descriptors >= 0) & (descriptors <= 255))
        and np.array_equal(descriptors, np.rint(descriptors))
    ):
        arrays["descriptors"] = descriptors.astype(np.uint8)
        arrays["float_descriptors"] = np.ones(1, dtype=np.bool_)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return buffer.tell()


def oriented_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of the image file after its EXIF orientation, from the header only."""
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
    return height, width


@dataclass(frozen=True)
class FeatureCache:
    """The feature cache of one detector in ``directory`` (a :class:`~imagelearn.core.execution.Cache`).

    Values are the detector's raw features; arrays are not cached. Reading an entry marks it
    used; writes are reported to ``budget``, the size cap of the cache home (None: that of
    ``directory``'s cache home, if it lies in one, see :class:`~imagelearn.core.cache.CacheBudget`).
    """

    directory: Path
    detector: Detector
    budget: CacheBudget | None = None

    def __post_init__(self) -> None:
        if self.budget is None:
            object.__setattr__(self, "budget", CacheBudget.of(self.directory))

    def key(self, source: ImageSource) -> str | None:
        return None if isinstance(source, np.ndarray) else cache_key(source, self.detector)

    def get(self, key: str) -> LocalFeatures | None:
        return _read_entry(_entry_path(self.directory, self.detector, key))

    def put(self, key: str, features: LocalFeatures) -> None:
        n_bytes = _write_entry(_entry_path(self.directory, self.detector, key), features)
        if self.budget is not None:
            self.budget.record(n_bytes)


def detect_raw_features(source: ImageSource, detector: Detector) -> LocalFeatures:
    """Raw features (:meth:`~imagelearn.features.Detector.detect_raw`) of a file or an array.

    Keypoints of files are in the file's own pixel coordinates (after EXIF orientation).

    Raises
    ------
    ImageReadError
        The file cannot be read.
    """
    if isinstance(source, np.ndarray):
        return detector.detect_raw(source)
    image = load_image(source, detector.color_mode, max_side=detector.max_side)
    raw = detector.detect_raw(image)
    if detector.max_side is not None:  # loading may have shrunk it
        raw = rescale_features(raw, oriented_size(source))
    return raw


def extract_features(
    images: Sequence[ImageSource],
    detector: Detector,
    n_jobs: int | None = -1,
    cache_dir: str | os.PathLike | bool | None = None,
    strict: bool = False,
    description: str = "features",
    engine: str | Backend | None = None,
) -> tuple[list[LocalFeatures | None], list[tuple[str, str]]]:
    """Detect and describe local features in many images, in parallel, with a disk cache.

    Parameters
    ----------
    images : sequence of path-like or ndarray
        Image files (loaded with the detector's ``color_mode``, downscaled to its ``max_side``
        while decoding) or uint8 arrays (H, W) / (H, W, 3). Arrays are not cached.
    detector : Detector
        From :func:`~imagelearn.features.make_detector`.
    n_jobs : int or None
        Worker processes; -1 uses all cores (scikit-learn's convention).
    cache_dir : path-like, None or False
        Where cached features live; None: :func:`default_cache_dir`; False: no cache.
    strict : bool
        Raise on the first unreadable file instead of skipping it.
    description : str
        Label of the progress bar.
    engine : str, Backend or None
        Where the work runs (:func:`imagelearn.core.execution.get_backend`; None: the current
        engine, :func:`~imagelearn.core.execution.use_engine`).

    Returns
    -------
    features : list of LocalFeatures or None
        One per image, in order; None for an unreadable file. Keypoints of a file are in the
        file's pixel coordinates even when ``max_side`` shrank it for detection.
    skipped : list of (path, reason)
        Unreadable files; each is also logged as a warning.

    Raises
    ------
    ImageReadError
        With ``strict=True``, for the first file that cannot be read.
    """
    result = map_features(images, detector, n_jobs, cache_dir, strict, description, engine)
    return result.per_input(), result.failures


def map_features(
    images: Sequence[ImageSource],
    detector: Detector,
    n_jobs: int | None = -1,
    cache_dir: str | os.PathLike | bool | None = None,
    strict: bool = False,
    description: str = "features",
    engine: str | Backend | None = None,
) -> BatchResult[LocalFeatures]:
    """:func:`extract_features` as a :class:`~imagelearn.core.execution.BatchResult`: the
    features of the readable images, their indices, and the unreadable files with reasons."""
    cache = (
        None
        if cache_dir is False
        else FeatureCache(
            Path(default_cache_dir() if cache_dir in (None, True) else cache_dir), detector
        )
    )
    return map_images(
        partial(detect_raw_features, detector=detector),
        images,
        n_jobs=n_jobs,
        workers="processes",
        cache=cache,
        finish=detector.normalise_descriptors,
        strict=strict,
        description=description,
        engine=engine,
    )
