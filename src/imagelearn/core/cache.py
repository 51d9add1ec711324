"""Where imagelearn keeps its on-disk caches, how large they may grow, and how to empty them.

Caches live in ``$IMAGELEARN_CACHE`` (default ``~/.cache/imagelearn``), one folder per kind
(:data:`CACHE_KINDS`): local features, CNN embeddings, BoF-segmentation encodings, what is
computed from a read-only index (maps, tags of a classifier or clustering), the web app's
thumbnails. Every entry
is one file, and reading an entry sets its modification time to now (:func:`mark_used`), so
the oldest modification time is the least recently used entry.

The cache is capped at ``$IMAGELEARN_CACHE_MAX_BYTES`` (default 5 GiB; ``0``: no cap). Walking
the folder on every write would cost more than the entries save, so writers report what they
write to a :class:`CacheBudget`: each process adds up its bytes and, every
:data:`REPORT_BYTES` (or a twentieth of the cap when that is smaller), adds them to the
estimate of the total shared by every process in ``.usage.json``, under a file lock. Only
when that estimate exceeds the cap is the folder walked: the least recently used entries are
deleted until the cache holds at most :data:`EVICTION_TARGET` of the cap, and the estimate
becomes the measured size. A folder chosen with ``cache_dir=`` outside the cache home is the
user's to manage: it is not capped.

:func:`cache_info` measures the cache (``imagelearn cache info``), :func:`clear_cache`
deletes all of it, some kinds, or the entries not used for some days (``imagelearn cache
clear``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagelearn.core.errors import ImagelearnError, ParameterError

#: Environment variable naming the cache home.
CACHE_VARIABLE = "IMAGELEARN_CACHE"
#: Environment variable of the size cap (bytes, or a size such as ``5G`` or ``500M``).
MAX_BYTES_VARIABLE = "IMAGELEARN_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 5 * 2**30
#: The kinds of cache, one folder each in the cache home (``index``: what is computed from
#: an index that a reader may not write into it, maps and tags).
CACHE_KINDS = ("features", "embeddings", "segmentation", "index", "thumbnails")
#: Eviction deletes least recently used entries until the cache holds this fraction of the cap.
EVICTION_TARGET = 0.9
#: Bytes a process writes before it adds them to the shared estimate (at most a twentieth of
#: the cap): the estimate misses at most this much per process that stops writing.
REPORT_BYTES = 2**20
#: Bookkeeping files in the cache home (hidden, as the writers' temporary files are).
USAGE_FILE = ".usage.json"
LOCK_FILE = ".lock"

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_SECONDS_PER_DAY = 86_400.0

logger = logging.getLogger(__name__)


def cache_home() -> Path:
    """``$IMAGELEARN_CACHE``, else ``~/.cache/imagelearn``."""
    root = os.environ.get(CACHE_VARIABLE)
    return Path(root) if root else Path.home() / ".cache" / "imagelearn"


def cache_root(kind: str) -> Path:
    """``$IMAGELEARN_CACHE/<kind>``, else ``~/.cache/imagelearn/<kind>``."""
    return cache_home() / kind


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number of bytes, or with a binary unit (``500M``, ``5G``, ``1.5GiB``).

    Raises
    ------
    ValueError
        ``text`` is not a size.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size; use bytes or a unit, as in 500M or 5G")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def format_size(n_bytes: float) -> str:
    """``n_bytes`` for people: ``512 B``, ``3.4 MiB``, ``1.2 GiB``."""
    value, unit = float(n_bytes), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"


def max_cache_bytes() -> int | None:
    """The cap of the cache home: ``$IMAGELEARN_CACHE_MAX_BYTES`` (``0``: None, no cap),
    else :data:`DEFAULT_MAX_BYTES`.

    Raises
    ------
    ImagelearnError
        The variable holds something other than a size.
    """
    value = os.environ.get(MAX_BYTES_VARIABLE, "").strip()
    try:
        n_bytes = parse_size(value) if value else DEFAULT_MAX_BYTES
    except ValueError as error:
        raise ImagelearnError(f"{MAX_BYTES_VARIABLE}: {error}") from None
    return n_bytes or None


def mark_used(path: str | os.PathLike) -> None:
    """Set the modification time of the entry at ``path`` to now: it was just used (the
    least recently used entries are evicted first). A read-only cache is left as it is."""
    try:
        os.utime(path)
    except OSError:
        pass


# ---------------------------------------------------------------- measuring and clearing


@dataclass(frozen=True)
class KindUsage:
    """What one kind of cache holds.

    Attributes
    ----------
    kind : str
        One of :data:`CACHE_KINDS`.
    folder : Path
    n_entries : int
    n_bytes : int
    """

    kind: str
    folder: Path
    n_entries: int
    n_bytes: int


@dataclass(frozen=True)
class CacheInfo:
    """Where the cache is, how large it may grow, and what each kind holds.

    Attributes
    ----------
    location : Path
        The cache home (:func:`cache_home`).
    max_bytes : int or None
        The cap (:func:`max_cache_bytes`); None: no cap.
    kinds : tuple of KindUsage
        One per kind of :data:`CACHE_KINDS`, in that order.
    """

    location: Path
    max_bytes: int | None
    kinds: tuple[KindUsage, ...]

    @property
    def n_bytes(self) -> int:
        return sum(usage.n_bytes for usage in self.kinds)

    @property
    def n_entries(self) -> int:
        return sum(usage.n_entries for usage in self.kinds)

    def summary(self) -> str:
        """One line: location, size and cap."""
        cap = f"cap {format_size(self.max_bytes)}" if self.max_bytes else "no cap"
        return f"{self.location} ({format_size(self.n_bytes)}, {cap})"

    def format(self) -> str:
        """Several lines: the summary, then the size and entries of each kind."""
        width = max(len(usage.kind) for usage in self.kinds)
        lines = [f"cache: {self.summary()}"]
        lines += [
            f"  {usage.kind:<{width}}  {format_size(usage.n_bytes):>10}  {usage.n_entries} entries"
            for usage in self.kinds
        ]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": str(self.location),
            "max_bytes": self.max_bytes,
            "n_bytes": self.n_bytes,
            "n_entries": self.n_entries,
            "kinds": {
                usage.kind: {
                    "folder": str(usage.folder),
                    "n_bytes": usage.n_bytes,
                    "n_entries": usage.n_entries,
                }
                for usage in self.kinds
            },
        }


def _files(folder: Path, hidden: bool = False) -> Iterator[os.DirEntry]:
    """Every file under ``folder`` (symbolic links are neither followed nor listed); with
    ``hidden`` also files whose name starts with a dot (writers' temporary files)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:  # missing, or removed meanwhile
        return
    for entry in entries:
        if entry.name.startswith(".") and not hidden:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _files(Path(entry.path), hidden)
            elif entry.is_file(follow_symlinks=False):
                yield entry
        except OSError:
            continue


def _stat(entry: os.DirEntry) -> os.stat_result | None:
    try:
        return entry.stat(follow_symlinks=False)
    except OSError:  # removed meanwhile
        return None


def _check_kinds(kinds: Iterable[str] | None) -> tuple[str, ...]:
    chosen = CACHE_KINDS if kinds is None else tuple(dict.fromkeys(kinds))
    unknown = [kind for kind in chosen if kind not in CACHE_KINDS]
    if unknown:
        raise ParameterError(
            "kinds", f"unknown cache kind(s) {unknown}; choose from {list(CACHE_KINDS)}"
        )
    return chosen


def cache_info() -> CacheInfo:
    """Measure the cache home: entries and bytes of every kind (one walk of its folders)."""
    home = cache_home()
    kinds = []
    for kind in CACHE_KINDS:
        stats = [stat for stat in map(_stat, _files(home / kind)) if stat is not None]
        kinds.append(KindUsage(kind, home / kind, len(stats), sum(s.st_size for s in stats)))
    return CacheInfo(home, max_cache_bytes(), tuple(kinds))


def clear_cache(older_than: float | None = None, kinds: Iterable[str] | None = None) -> int:
    """Delete cache entries; returns the bytes freed.

    Parameters
    ----------
    older_than : float, optional
        Only entries not used for this many days (their modification time, which reading
        sets); None: every entry.
    kinds : iterable of str, optional
        Kinds to clear (of :data:`CACHE_KINDS`); None: all of them.

    Raises
    ------
    ParameterError
        An unknown kind (parameter ``kinds``) or a negative ``older_than``.
    """
    chosen = _check_kinds(kinds)
    if older_than is not None and older_than < 0:
        raise ParameterError("older_than", f"older_than must be >= 0 days; got {older_than!r}")
    home = cache_home()
    if not home.is_dir():
        return 0
    threshold = None if older_than is None else time.time() - older_than * _SECONDS_PER_DAY
    freed = 0
    with _usage_lock(home):
        for kind in chosen:
            for entry in _files(home / kind, hidden=True):
                stat = _stat(entry)
                if stat is None or (threshold is not None and stat.st_mtime >= threshold):
                    continue
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                freed += stat.st_size
            if threshold is None:
                shutil.rmtree(home / kind, ignore_errors=True)
            else:
                _remove_empty_folders(home / kind)
        (home / USAGE_FILE).unlink(missing_ok=True)  # measured again at the next report
    return freed


def _remove_empty_folders(folder: Path) -> None:
    """Remove the empty folders below ``folder`` (``folder`` itself stays)."""
    for parent, _, _ in sorted(os.walk(folder), key=lambda item: -len(item[0])):
        if Path(parent) != folder:
            try:
                os.rmdir(parent)
            except OSError:  # not empty
                pass


# ---------------------------------------------------------------- the size cap


@contextmanager
def _usage_lock(home: Path) -> Iterator[None]:
    """Hold the exclusive lock of the cache home's bookkeeping (waiting for it)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a") as stream:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(stream.fileno(), fcntl.LOCK_UN)


def _read_usage(home: Path) -> int | None:
    try:
        n_bytes = json.loads((home / USAGE_FILE).read_text(encoding="utf-8"))["bytes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return n_bytes if isinstance(n_bytes, int) and n_bytes >= 0 else None


def _write_usage(home: Path, n_bytes: int) -> None:
    temporary = home / f"{USAGE_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps({"bytes": int(n_bytes)}), encoding="utf-8")
    os.replace(temporary, home / USAGE_FILE)


def _entries_by_use(home: Path) -> list[tuple[float, int, str]]:
    """``(modification time, bytes, path)`` of every entry of ``home``, least recently used first."""
    entries = []
    for entry in (entry for kind in CACHE_KINDS for entry in _files(home / kind)):
        stat = _stat(entry)
        if stat is not None:
            entries.append((stat.st_mtime, stat.st_size, entry.path))
    return sorted(entries)


def evict(home: Path, target_bytes: int) -> int:
    """Delete the least recently used entries of ``home`` until it holds at most
    ``target_bytes``; returns the bytes it holds then."""
    entries = _entries_by_use(home)
    total = sum(size for _, size, _ in entries)
    for _, size, path in entries:
        if total <= target_bytes:
            break
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        total -= size
    return total


_unreported: dict[Path, int] = {}
_unreported_lock = threading.Lock()


@dataclass(frozen=True)
class CacheBudget:
    """The size cap of one cache home, as the caches' writers report to it (picklable, so a
    worker process reports to the home its caller chose).

    Attributes
    ----------
    home : Path
        The cache home.
    max_bytes : int
        Its cap.
    """

    home: Path
    max_bytes: int

    @classmethod
    def of(cls, folder: str | os.PathLike) -> CacheBudget | None:
        """The budget of the cache home when ``folder`` lies in it and it is capped, else None."""
        home, max_bytes = cache_home(), max_cache_bytes()
        if max_bytes is None:
            return None
        try:
            Path(folder).resolve().relative_to(home.resolve())
        except ValueError:
            return None
        return cls(home, max_bytes)

    @property
    def report_bytes(self) -> int:
        return max(1, min(REPORT_BYTES, self.max_bytes // 20))

    def record(self, n_bytes: int) -> None:
        """Note ``n_bytes`` written to the cache; evicts when the estimate exceeds the cap.

        Bookkeeping failures (a read-only home) are logged and ignored: a cache that cannot be
        capped costs disk, not results.
        """
        with _unreported_lock:
            pending = _unreported.get(self.home, 0) + int(n_bytes)
            _unreported[self.home] = 0 if pending >= self.report_bytes else pending
        if pending >= self.report_bytes:
            try:
                self._report(pending)
            except OSError as error:
                logger.debug("could not track the size of the cache %s: %s", self.home, error)

    def _report(self, n_bytes: int) -> None:
        with _usage_lock(self.home):
            estimate = _read_usage(self.home)
            if estimate is None:  # first report, or after a clear: measure once
                total = sum(size for _, size, _ in _entries_by_use(self.home))
            else:
                total = estimate + n_bytes
            if total > self.max_bytes:
                total = evict(self.home, int(EVICTION_TARGET * self.max_bytes))
            _write_usage(self.home, total)
