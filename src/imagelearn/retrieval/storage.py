"""The on-disk layout of an index directory, its manifest, its lock and its immutable segments.

::

    INDEX/
      manifest.json            the snapshot: which files make up the index (swapped atomically)
      vocabulary.safetensors   visual words, idf, global whitening (written once)
      catalogue.sqlite         one row per image (path, content hash, size, time added)
      segments/<name>/*.npy    immutable postings + keypoints of a batch of images
      removed-<generation>.npy ids removed since their segment was written
      global-<generation>.faiss FAISS index of the global descriptors
      map-<generation>.safetensors 2-D map of the images (retrieval/image_map.py)
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
from typing import Annotated, Any, Literal, Self

import faiss
import numpy as np
from pydantic import Field, model_validator

from imagelearn.core.bundle import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    BundleError,
    atomic_write_json,
    faiss_header_problems,
    library_versions,
    member_path,
    read_manifest,
)
from imagelearn.core.errors import OutputExistsError
from imagelearn.core.npyfiles import load_npy
from imagelearn.core.schema import Schema, validate
from imagelearn.retrieval.catalogue import now
from imagelearn.retrieval.inverted_file import Postings

INDEX_KIND = "retrieval-index"
#: Version of the index layout inside the bundle manifest; newer indexes are refused.
INDEX_VERSION = 1
SEGMENTS_DIR = "segments"
VOCABULARY_NAME = "vocabulary.safetensors"
LOCK_NAME = ".lock"
#: Names the writer gives segments.
SEGMENT_NAME_PATTERN = r"^g[0-9]{6,12}$"
#: Names the writer gives the 2-D map of the images.
MAP_NAME_PATTERN = r"^map-[0-9]{6,12}\.safetensors$"

#: Ids are stored as uint32.
MAX_IMAGE_ID = 2**32 - 1
#: The largest global descriptor the index accepts (GeM of the widest backbone is 2048).
MAX_GLOBAL_DIMENSION = 65_536

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


class GlobalContent(Schema):
    """The manifest's ``global`` entry: the FAISS file of the global descriptors."""

    file: str = Field(pattern=r"^global-[0-9]{6,12}\.faiss$")
    dimension: int = Field(ge=1, le=MAX_GLOBAL_DIMENSION)
    kind: Literal["IndexIDMap2", "IndexIVFPQ"]


class IndexContent(Schema):
    """The content of an index manifest: the snapshot's files and counts.

    ``params`` is checked by :class:`~imagelearn.retrieval.params.IndexParams` when the
    snapshot is opened. Names follow the writer's patterns, so none can leave the directory.
    """

    index_version: int = Field(ge=1, le=INDEX_VERSION)
    params: dict[str, Any]
    segments: list[Annotated[str, Field(pattern=SEGMENT_NAME_PATTERN)]] = Field(max_length=100_000)
    next_id: int = Field(ge=0, le=MAX_IMAGE_ID + 1)
    n_images: int = Field(ge=0)
    generation: int = Field(ge=0)
    complete: bool
    removed: str | None = Field(default=None, pattern=r"^removed-[0-9]{6,12}\.npy$")
    global_: GlobalContent | None = Field(default=None, alias="global")
    n_words: int | None = Field(default=None, ge=1)
    map: str | None = Field(default=None, pattern=MAP_NAME_PATTERN)

    @model_validator(mode="after")
    def _counts_agree(self) -> Self:
        if self.n_images > self.next_id:
            raise ValueError(f"n_images {self.n_images} exceeds next_id {self.next_id}")
        return self


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
    parent = member_path(directory, SEGMENTS_DIR, what="index")
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
    folder = member_path(directory, SEGMENTS_DIR, name, what="index")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: segment named by the manifest is missing")
    arrays = {}
    for array_name in _SEGMENT_ARRAYS:
        path = member_path(directory, SEGMENTS_DIR, name, f"{array_name}.npy", what="index")
        try:
            arrays[array_name] = load_npy(path, mmap_mode="r")
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
    if not name:
        return np.zeros(0, np.uint32)
    removed = read_array(member_path(directory, name, what="index"))
    if removed.ndim != 1 or removed.dtype.kind not in "ui":
        raise BundleError(f"{directory / name}: not a list of image ids; the index is corrupt")
    return removed


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
        return load_npy(path)
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as error:
        raise BundleError(f"{path}: corrupt array file ({error})") from error


def read_global_index(directory: Path, content: dict[str, Any]) -> faiss.Index:
    """The FAISS index of the global descriptors that the manifest ``content`` names.

    Raises
    ------
    FileNotFoundError
        A writer replaced the snapshot and deleted the file meanwhile.
    BundleError
        A name leading out of the directory, or not the file the manifest describes.
    """
    described = GlobalContent.model_validate(content["global"])
    path = member_path(directory, described.file, what="index")
    return read_faiss_index(path, described, int(content["next_id"]))


def read_faiss_index(
    path: Path, expected: GlobalContent | None = None, count: int = 0
) -> faiss.Index:
    """A FAISS index file, read whole, after its header was checked against the manifest.

    FAISS parses the file in native code, so the header is read here first: the kind's
    four-character code, the dimension and ``count`` vectors, and a file size that can hold
    them (exactly, for the flat kind). Only then is the file handed to FAISS.

    Parameters
    ----------
    path : Path
    expected : GlobalContent, optional
        The manifest's description of the file; None reads any FAISS file unchecked.
    count : int
        Vectors the file must hold (the manifest's ``next_id``); used with ``expected``.

    Raises
    ------
    FileNotFoundError
        The file is gone (a writer replaced the snapshot): FAISS's own reader would raise a
        generic RuntimeError instead, which a reader could not tell from corruption.
    BundleError
        Not a readable FAISS index, or not the one the manifest describes.
    """
    data = np.fromfile(path, dtype=np.uint8)
    if expected is not None:
        problems = faiss_header_problems(data, expected.kind, expected.dimension, count)
        if problems:
            raise BundleError(
                f"{path}: not the FAISS index the manifest describes ({'; '.join(problems)})"
            )
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
    """The manifest's content, checked against :class:`IndexContent`.

    Returns the checked content as the writer stores it (``global`` under its own name).

    Raises
    ------
    BundleError
        Not an index, corrupt, of the wrong shape, or written by a newer imagelearn.
    """
    content = read_manifest(directory, INDEX_KIND)["content"]
    version = content.get("index_version")
    if isinstance(version, int) and version > INDEX_VERSION:
        raise BundleError(
            f"{directory}: index format version {version} is newer than this imagelearn reads "
            f"({INDEX_VERSION}); upgrade imagelearn"
        )
    return validate(IndexContent, content, directory, "index").model_dump(by_alias=True)


class WriteLock:
    """An exclusive ``fcntl`` lock on ``INDEX/.lock``; refused at once when another writer holds it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __enter__(self) -> WriteLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:  # never through a link: a planted .lock must not create or touch a file elsewhere
            handle = os.open(
                self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644
            )
        except OSError as error:
            raise BundleError(
                f"{self.directory}: not a valid index: {LOCK_NAME} is not a plain file ({error})"
            ) from None
        self._stream = os.fdopen(handle, "a+")
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
    for folder in member_path(directory, SEGMENTS_DIR, what="index").glob("*"):
        if folder.name not in named:
            shutil.rmtree(folder, ignore_errors=True)
    keep = {content.get("removed"), (content.get("global") or {}).get("file"), content.get("map")}
    for pattern in ("removed-*.npy", "global-*.faiss", "map-*.safetensors", ".*.tmp"):
        for path in directory.glob(pattern):
            if path.name not in keep:
                path.unlink(missing_ok=True)
