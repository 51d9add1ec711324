"""Saved models and indexes: a directory with a JSON manifest and safetensors arrays.

Nothing here unpickles: opening a bundle from a stranger reads JSON and raw arrays only.
Saving is atomic: the bundle is written into a temporary sibling directory and swapped into
place in one step (:func:`replace_directory`), so a crash at any point leaves either the old
or the new bundle, complete, at the destination.

Reading trusts nothing in the directory: every file name goes through :func:`member_path`
(a plain name that stays inside, links included) before it is opened, the header is
checked against :class:`~imagelearn.core.schema.BundleHeader`, and a FAISS file's header
against what the bundle says (:func:`faiss_header_problems`) before FAISS parses it.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import platform
import re
import shutil
import stat
import struct
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

import imagelearn
from imagelearn.core.errors import ImagelearnError
from imagelearn.core.schema import MEMBER_NAME_PATTERN, BundleHeader, validate

MANIFEST_NAME = "manifest.json"
ARRAYS_NAME = "arrays.safetensors"
FORMAT_NAME = "imagelearn-bundle"
FORMAT_VERSION = 1

_RECORDED_LIBRARIES = (
    "numpy",
    "opencv-contrib-python-headless",
    "scikit-learn",
    "faiss-cpu",
    "torch",
    "torchvision",
)


class BundleError(ImagelearnError, OSError):
    """A bundle directory is missing, corrupt, of another kind, or from a newer format."""


@dataclass(frozen=True)
class _FaissLayout:
    """What the start of a serialized FAISS index of one kind looks like."""

    fourcc: bytes
    binary: bool
    #: Bytes each vector takes at least, from the dimension (bits for binary indexes).
    vector_bytes: Callable[[int], int]
    #: Bytes besides the vectors when the size is exact (None: a lower bound only).
    exact_overhead: int | None = None


#: Float indexes: fourcc, dimension (int32), ntotal (int64), two unused int64, is_trained,
#: metric (int32). Binary indexes: fourcc, dimension in bits, code size (int32), ntotal
#: (int64), is_trained, metric.
_FAISS_HEADER = struct.Struct("<4siqqq?i")
_FAISS_BINARY_HEADER = struct.Struct("<4siiq?i")
#: The FAISS index kinds a bundle may hold, by class name.
FAISS_LAYOUTS = {
    # an id map over a flat index: two headers, then vectors and ids, each after its length
    "IndexIDMap2": _FaissLayout(b"IxM2", False, lambda d: 4 * d + 8, 2 * _FAISS_HEADER.size + 16),
    "IndexIVFPQ": _FaissLayout(b"IwPQ", False, lambda d: 8),
    "IndexHNSWFlat": _FaissLayout(b"IHNf", False, lambda d: 4 * d),
    "IndexBinaryHNSW": _FaissLayout(b"IBHf", True, lambda d: d // 8),
}


def faiss_header_problems(
    data: bytes | np.ndarray, kind: str, dimension: int, count: int
) -> list[str]:
    """What is wrong with a serialized FAISS index, checked before FAISS parses it.

    FAISS reads the file in native code and allocates what its header claims, so the
    header's kind, dimension and vector count, and a size that can hold the vectors, are
    checked against what the bundle says first.

    Parameters
    ----------
    data : bytes or ndarray of uint8
        The whole serialized index.
    kind : str
        A key of :data:`FAISS_LAYOUTS` (``type(index).__name__``).
    dimension : int
        Vector dimension (bits for binary indexes).
    count : int
        Vectors the index must hold.

    Returns
    -------
    list of str
        The problems, in words; empty when the header agrees.
    """
    layout = FAISS_LAYOUTS[kind]
    header = _FAISS_BINARY_HEADER if layout.binary else _FAISS_HEADER
    if len(data) < header.size:
        return [f"truncated ({len(data)} bytes)"]
    fields = header.unpack(bytes(np.asarray(data, dtype=np.uint8)[: header.size]))
    fourcc, stored_dimension = fields[0], fields[1]
    ntotal = fields[3] if layout.binary else fields[2]
    problems = []
    if fourcc != layout.fourcc:
        problems.append(f"kind {fourcc!r} where {kind} is expected")
    if stored_dimension != dimension:
        problems.append(f"dimension {stored_dimension} where {dimension} is expected")
    if ntotal != count:
        problems.append(f"{ntotal} vectors where {count} are expected")
    if problems:
        return problems
    payload = count * layout.vector_bytes(dimension)
    if layout.exact_overhead is not None and len(data) != payload + layout.exact_overhead:
        return [f"{len(data)} bytes where {count} vectors take {payload + layout.exact_overhead}"]
    if len(data) < header.size + payload:
        return [f"{len(data)} bytes, too few for {count} vectors"]
    return []


def library_versions() -> dict[str, str]:
    """Versions of Python and the numerical libraries that shape a saved model."""
    versions = {"python": platform.python_version(), "imagelearn": imagelearn.__version__}
    for name in _RECORDED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    atomic_write_text(
        path, json.dumps(payload, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


#: ``renameat2`` flag that swaps two existing paths in one step (Linux >= 3.15).
_RENAME_EXCHANGE = 2
#: ``renameat2``'s "relative to the working directory" descriptor.
_AT_FDCWD = -100
#: ``renameat2`` error numbers meaning "not here" (old kernel, other system, filesystem).
_EXCHANGE_UNSUPPORTED = frozenset(
    code
    for code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", None))
    if code is not None
)


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2``, or None where the C library has none (non-Linux, old glibc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically; False where the system or filesystem cannot.

    Raises
    ------
    OSError
        Any other failure of ``renameat2`` (permissions, a path gone).
    """
    function = _renameat2()
    if function is None:
        return False
    first_name, second_name = os.fsencode(first), os.fsencode(second)
    if function(_AT_FDCWD, first_name, _AT_FDCWD, second_name, _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _EXCHANGE_UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def _remove(path: Path) -> None:
    """Delete a directory tree, a file or a link; silently when it is already gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def staging_directory(destination: Path) -> Path:
    """A new empty sibling of ``destination`` to write a bundle into before
    :func:`replace_directory` moves it in; its name records this process's id."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{destination.name}.staging-{os.getpid()}-"
    return Path(tempfile.mkdtemp(dir=destination.parent, prefix=prefix))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_leftovers(destination: Path) -> list[Path]:
    """Tidy what crashed saves to ``destination`` left beside it; returns what was deleted.

    When ``destination`` is missing because a save on the portable path was killed between its
    two renames, the old bundle it had moved to ``.NAME.old-PID-*`` is renamed back first.
    Only siblings named by this module's own pattern (``.NAME.staging-PID-*``,
    ``.NAME.old-PID-*``) are touched, never ``destination`` itself, and never those of a save
    still running (its process id is alive).
    """
    parent = destination.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(destination.name)}\.(staging|old)-(?:(\d+)-)?.+")
    stale = []
    for sibling in sorted(parent.iterdir()):
        match = pattern.fullmatch(sibling.name)
        if match is None or sibling.name == destination.name:
            continue
        if match.group(2) is not None and _process_alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not os.path.lexists(destination):
            os.replace(sibling, destination)
            continue
        _remove(sibling)
        stale.append(sibling)
    return stale


def replace_directory(staging: Path, destination: Path) -> None:
    """Move a finished ``staging`` directory to ``destination``; at every instant one complete
    bundle, the old or the new, is at ``destination``.

    ``staging`` must be a sibling of ``destination`` (see :func:`staging_directory`). An
    existing ``destination`` is swapped with ``staging`` in one ``renameat2(RENAME_EXCHANGE)``
    and then deleted from the staging path; a new one is renamed into place. Where the
    exchange is unavailable (not Linux, a kernel before 3.15, a filesystem without it) the
    old bundle is renamed to ``.NAME.old-PID-*`` first and deleted only once the new one is
    in place: a crash between those two renames leaves no bundle at ``destination`` but the
    old one, complete, under that name, where the next save (:func:`clean_leftovers`) finds
    it and puts it back. Leftovers of earlier crashed saves are deleted first.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(destination)
    if not os.path.lexists(destination):
        os.replace(staging, destination)
    elif _exchange(staging, destination):
        _remove(staging)  # the old bundle, now under the staging name
    else:
        _replace_by_renames(staging, destination)


def _replace_by_renames(staging: Path, destination: Path) -> None:
    """The portable, non-atomic replacement: old away, new in, old deleted last."""
    suffix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    retired = destination.with_name(f".{destination.name}.old-{suffix}")
    os.replace(destination, retired)
    try:
        os.replace(staging, destination)
    except BaseException:
        os.replace(retired, destination)
        raise
    _remove(retired)


def save_bundle(
    directory: str | os.PathLike,
    kind: str,
    manifest: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a bundle directory atomically.

    Parameters
    ----------
    directory : path-like
        Destination; replaced as a whole when it already exists.
    kind : str
        What the bundle holds (``"bof-classifier"``, ``"cnn-classifier"``...); checked on load.
    manifest : mapping
        JSON-serialisable parameters and metadata; stored under the manifest's ``"content"`` key.
    arrays : mapping of str to ndarray
        Stored in one safetensors file; names may contain dots and slashes.
    files : mapping of str to bytes, optional
        Extra files written beside the manifest (e.g. a FAISS index).

    Returns
    -------
    pathlib.Path of the bundle.
    """
    directory = Path(directory)
    staging = staging_directory(directory)
    try:
        contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
        save_file(contiguous, str(staging / ARRAYS_NAME))
        for name, data in (files or {}).items():
            (staging / name).write_bytes(data)
        header = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": library_versions(),
            "content": dict(manifest),
        }
        (staging / MANIFEST_NAME).write_text(
            json.dumps(header, indent=2, ensure_ascii=False, default=_json_default) + "\n",
            encoding="utf-8",
        )
        replace_directory(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def member_path(directory: str | os.PathLike, *names: str, what: str = "bundle") -> Path:
    """The path of ``directory/NAME/...``, checked to stay inside ``directory``.

    Every file name that comes from a manifest goes through here before anything is opened:
    each of ``names`` must match :data:`~imagelearn.core.schema.MEMBER_NAME_PATTERN` (no
    absolute path, no ``..``, no hidden or nested name), and the path, with its symbolic
    links followed, must stay inside ``directory`` and be a regular file or folder when it
    exists. Nothing is opened: links are read and the target is looked up, never read.

    Parameters
    ----------
    directory : path-like
        The bundle or index directory.
    *names : str
        Path components below it (``"segments", "g000001"``).
    what : str
        What ``directory`` holds, for the message (``"index"``).

    Returns
    -------
    pathlib.Path
        ``directory`` joined with ``names`` (not resolved; it may not exist).

    Raises
    ------
    BundleError
        ``"DIRECTORY: not a valid WHAT: ..."`` naming the offending name.
    """
    directory = Path(directory)
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(MEMBER_NAME_PATTERN, name):
            raise BundleError(
                f"{directory}: not a valid {what}: file name {name!r} is not a plain name "
                "inside the directory"
            )
    path = directory.joinpath(*names)
    try:
        root = directory.resolve(strict=True)
        target = path.resolve()
    except (OSError, RuntimeError) as error:  # a link loop
        raise BundleError(f"{directory}: not a valid {what}: {path} ({error})") from None
    if not target.is_relative_to(root):
        raise BundleError(
            f"{directory}: not a valid {what}: {path} leads out of the directory (to {target})"
        )
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return path
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise BundleError(f"{directory}: not a valid {what}: {path} is not a regular file")
    return path


def read_manifest(directory: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read and check a bundle's manifest; returns the whole header (``content`` inside).

    The header is checked against :class:`~imagelearn.core.schema.BundleHeader`; the
    ``content`` is left to the schema of the ``kind``.

    Raises
    ------
    BundleError
        Not a directory, no manifest, not JSON, not an imagelearn manifest, a newer format,
        a header of the wrong shape, or another ``kind``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(
            f"{directory}: not a directory (expected a saved imagelearn model or index)"
        )
    manifest_path = member_path(directory, MANIFEST_NAME)
    try:
        header = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise BundleError(f"{directory}: no {MANIFEST_NAME}; not an imagelearn bundle") from error
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise BundleError(f"{manifest_path}: corrupt manifest ({error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise BundleError(f"{manifest_path}: not an imagelearn bundle manifest")
    version = header.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise BundleError(
            f"{directory}: bundle format version {version} is newer than this imagelearn reads "
            f"({FORMAT_VERSION}); upgrade imagelearn"
        )
    checked = validate(BundleHeader, header, directory, "bundle")
    if kind is not None and checked.kind != kind:
        raise BundleError(f"{directory}: holds a {checked.kind!r}, expected a {kind!r}")
    return header


def load_bundle(
    directory: str | os.PathLike, kind: str | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a bundle written by :func:`save_bundle`.

    Returns
    -------
    content : dict
        The ``manifest`` given to :func:`save_bundle`.
    arrays : dict of str to ndarray
    """
    directory = Path(directory)
    header = read_manifest(directory, kind)
    arrays_path = member_path(directory, ARRAYS_NAME)
    try:
        arrays = load_file(str(arrays_path))
    except FileNotFoundError as error:
        raise BundleError(f"{directory}: {ARRAYS_NAME} is missing") from error
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise BundleError(f"{arrays_path}: corrupt array file ({error})") from error
    return header["content"], arrays
