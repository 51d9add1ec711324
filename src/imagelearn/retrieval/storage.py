"""The on-disk layout of an index directory, its manifest, its lock and its immutable segments.

::

    INDEX/
      manifest.json            the snapshot: which files make up the index (swapped atomically)
      vocabulary.safetensors   visual words, idf, global whitening (written once)
      catalogue.sqlite         one row per image (path, content hash, size, time added)
      segments/<name>/*.npy    immutable postings + keypoints of a batch of images
      removed-<generation>.npy ids removed since their segment was written
      global-<generation>.faiss FAISS index of the global descriptors
      .lock                    held (fcntl) by the one process that writes

Readers read the manifest once and open only the files it names, which are never modified,
so a search sees one consistent snapshot while ``add`` runs. Writers take the lock, write new
files, then replace the manifest; files no manifest names are deleted by the next writer.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from imagelearn.core.bundle import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    BundleError,
    atomic_write_json,
    library_versions,
    read_manifest,
)
from imagelearn.core.errors import OutputExistsError
from imagelearn.retrieval.catalogue import now
from imagelearn.retrieval.inverted_file import Postings

INDEX_KIND = "retrieval-index"
#: Version of the index layout inside the bundle manifest; newer indexes are refused.
INDEX_VERSION = 1
SEGMENTS_DIR = "segments"
VOCABULARY_NAME = "vocabulary.safetensors"
LOCK_NAME = ".lock"

_SEGMENT_ARRAYS = (
    "ids",
    "sizes",
    "keypoint_offsets",
    "keypoints",
    "words",
    "postings_offsets",
    "postings_images",
    "postings_weights",
)


class IndexBusyError(BundleError):
    """Another process is writing to the index."""


class IndexExistsError(OutputExistsError, BundleError):
    """A finished index is already in the directory a build was asked to write.

    ``directory`` names it; add images to it, or build with ``overwrite=True`` to replace it.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        super().__init__(directory, "an index", "add images to it, or allow replacing it")


@dataclass(frozen=True)
class Segment:
    """An immutable batch of indexed images.

    Attributes
    ----------
    name : str
    ids : ndarray of uint32, shape (n,)
    sizes : ndarray of int32, shape (n, 2)
        (height, width) of each image file, pixels.
    keypoint_offsets : ndarray of int64, shape (n + 1,)
        Features of image ``i`` are rows ``keypoint_offsets[i]:keypoint_offsets[i + 1]``.
    keypoints : ndarray of float32, shape (n_features, 4)
        x, y, size (file pixels) and angle (degrees) of each feature.
    words : ndarray of uint32, shape (n_features,)
        Visual word of each feature.
    postings : Postings
    """

    name: str
    ids: np.ndarray
    sizes: np.ndarray
    keypoint_offsets: np.ndarray
    keypoints: np.ndarray
    words: np.ndarray
    postings: Postings

    def features(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints (k, 4), words (k,)) of the image in ``row``."""
        rows = slice(int(self.keypoint_offsets[row]), int(self.keypoint_offsets[row + 1]))
        return self.keypoints[rows], self.words[rows]

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "ids": self.ids,
            "sizes": self.sizes,
            "keypoint_offsets": self.keypoint_offsets,
            "keypoints": self.keypoints,
            "words": self.words,
            "postings_offsets": self.postings.offsets,
            "postings_images": self.postings.images,
            "postings_weights": self.postings.weights,
        }


def write_segment(directory: Path, segment: Segment) -> None:
    """Write ``segment`` to ``directory/segments/<name>/`` through a staging folder and a rename."""
    parent = directory / SEGMENTS_DIR
    parent.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{segment.name}.staging-"))
    try:
        for name, array in segment.arrays().items():
            with open(staging / f"{name}.npy", "wb") as stream:
                np.save(stream, np.ascontiguousarray(array), allow_pickle=False)
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(staging, parent / segment.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_segment(directory: Path, name: str) -> Segment:
    """Memory-map a segment's arrays (pages are read when searched, never copied whole).

    Raises
    ------
    FileNotFoundError
        The segment was deleted by a writer after the manifest was read (reopen the index).
    BundleError
        A corrupt array file.
    """
    folder = directory / SEGMENTS_DIR / name
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: segment named by the manifest is missing")
    arrays = {}
    for array_name in _SEGMENT_ARRAYS:
        path = folder / f"{array_name}.npy"
        try:
            arrays[array_name] = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            if not folder.is_dir():  # a writer deleted the whole segment while we read it
                raise FileNotFoundError(f"{folder}: segment deleted while being read") from None
            raise BundleError(f"{path}: array file missing; the index is corrupt") from None
        except (ValueError, OSError) as error:
            raise BundleError(f"{path}: corrupt array file ({error})") from error
    postings = Postings(
        arrays.pop("postings_offsets"),
        arrays.pop("postings_images"),
        arrays.pop("postings_weights"),
    )
    if len(arrays["keypoint_offsets"]) != len(arrays["ids"]) + 1:
        raise BundleError(f"{folder}: inconsistent array lengths; the index is corrupt")
    return Segment(name, postings=postings, **arrays)


def read_removed_ids(directory: Path, content: dict[str, Any]) -> np.ndarray:
    """Ids removed since their segment was written, per the manifest ``content``: uint32, (n,).

    Raises
    ------
    FileNotFoundError
        A writer replaced the snapshot and deleted the file meanwhile.
    """
    name = content.get("removed")
    return read_array(directory / name) if name else np.zeros(0, np.uint32)


def write_array(path: Path, array: np.ndarray) -> None:
    """Write one ``.npy`` file atomically (temporary file, fsync, rename)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, np.ascontiguousarray(array), allow_pickle=False)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as error:
        raise BundleError(f"{path}: corrupt array file ({error})") from error


def read_faiss_index(path: Path) -> faiss.Index:
    """A FAISS index file, read whole.

    Raises
    ------
    FileNotFoundError
        The file is gone (a writer replaced the snapshot): FAISS's own reader would raise a
        generic RuntimeError instead, which a reader could not tell from corruption.
    BundleError
        Not a readable FAISS index.
    """
    data = np.fromfile(path, dtype=np.uint8)
    try:
        return faiss.deserialize_index(data)
    except RuntimeError as error:
        raise BundleError(f"{path}: corrupt FAISS index ({str(error)[:200]})") from error


def write_index_manifest(directory: Path, content: dict[str, Any]) -> None:
    """Replace the manifest atomically: the new snapshot becomes visible in one rename."""
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": INDEX_KIND,
        "created": now(),
        "versions": library_versions(),
        "content": {"index_version": INDEX_VERSION, **content},
    }
    atomic_write_json(directory / MANIFEST_NAME, header)


def read_index_manifest(directory: Path) -> dict[str, Any]:
    """The manifest's content, checked for kind and version.

    Raises
    ------
    BundleError
        Not an index, corrupt, or written by a newer imagelearn.
    """
    content = read_manifest(directory, INDEX_KIND)["content"]
    version = content.get("index_version")
    if not isinstance(version, int) or version > INDEX_VERSION:
        raise BundleError(
            f"{directory}: index format version {version} is newer than this imagelearn reads "
            f"({INDEX_VERSION}); upgrade imagelearn"
        )
    required = ("params", "segments", "next_id", "n_images", "generation", "complete")
    missing = [key for key in required if key not in content]
    if missing:
        raise BundleError(
            f"{directory / MANIFEST_NAME}: corrupt index manifest (no {', '.join(missing)})"
        )
    return content


class WriteLock:
    """An exclusive ``fcntl`` lock on ``INDEX/.lock``; refused at once when another writer holds it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __enter__(self) -> WriteLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._stream = open(self.directory / LOCK_NAME, "a+")
        try:
            fcntl.flock(self._stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._stream.close()
            raise IndexBusyError(
                f"{self.directory}: another process is writing to this index; try again when it ends"
            ) from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._stream.fileno(), fcntl.LOCK_UN)
        self._stream.close()


def collect_garbage(directory: Path, content: dict[str, Any]) -> None:
    """Delete segments and files that the manifest does not name (left by replaced snapshots)."""
    named = set(content["segments"])
    for folder in (directory / SEGMENTS_DIR).glob("*"):
        if folder.name not in named:
            shutil.rmtree(folder, ignore_errors=True)
    keep = {content.get("removed"), (content.get("global") or {}).get("file")}
    for pattern in ("removed-*.npy", "global-*.faiss", ".*.tmp"):
        for path in directory.glob(pattern):
            if path.name not in keep:
                path.unlink(missing_ok=True)
