"""Saved models and indexes: a directory with a JSON manifest and safetensors arrays.

Nothing here unpickles: opening a bundle from a stranger reads JSON and raw arrays only.
Saving is atomic: the bundle is written into a temporary sibling directory and swapped into
place in one step (:func:`replace_directory`), so a crash at any point leaves either the old
or the new bundle, complete, at the destination.
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
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

import imagelearn
from imagelearn.core.errors import ImagelearnError

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


def read_manifest(directory: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read and check a bundle's manifest; returns the whole header (``content`` inside)."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise BundleError(
            f"{directory}: not a directory (expected a saved imagelearn model or index)"
        )
    try:
        header = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise BundleError(f"{directory}: no {MANIFEST_NAME}; not an imagelearn bundle") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{manifest_path}: corrupt manifest ({error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise BundleError(f"{manifest_path}: not an imagelearn bundle manifest")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(
            f"{directory}: bundle format version {version} is newer than this imagelearn reads "
            f"({FORMAT_VERSION}); upgrade imagelearn"
        )
    if kind is not None and header.get("kind") != kind:
        raise BundleError(f"{directory}: holds a {header.get('kind')!r}, expected a {kind!r}")
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
    try:
        arrays = load_file(str(directory / ARRAYS_NAME))
    except FileNotFoundError as error:
        raise BundleError(f"{directory}: {ARRAYS_NAME} is missing") from error
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise BundleError(f"{directory / ARRAYS_NAME}: corrupt array file ({error})") from error
    return header["content"], arrays
