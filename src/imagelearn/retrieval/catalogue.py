"""The SQLite catalogue of an index: one row per indexed image, and the images' tags.

Rows are written before the manifest that makes their segment visible, so a reader never
sees an image id without its row; a writer interrupted between the two leaves rows with ids
at or beyond the manifest's ``next_id``, and the next writer deletes them
(:meth:`Catalogue.reconcile`). Ids are never reused, so merging segments leaves rows alone.
An image's tags (:mod:`imagelearn.retrieval.tags`) are written in the transaction of its
row and deleted with its removal.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from imagelearn.core.bundle import BundleError, member_path
from imagelearn.retrieval.tags import StoredTags, Tag, create_tag_tables, insert_tags

CATALOGUE_NAME = "catalogue.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    n_features INTEGER NOT NULL,
    added TEXT NOT NULL,
    segment TEXT NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS images_sha256 ON images (sha256);
CREATE INDEX IF NOT EXISTS images_path ON images (path);
"""


@dataclass(frozen=True)
class ImageRecord:
    """One catalogue row (sizes in pixels and bytes; ``added`` is ISO 8601 UTC).

    ``segment`` names the segment the image was added in; a merge rewrites segments, not rows.
    """

    id: int
    path: str
    sha256: str
    bytes: int
    height: int
    width: int
    n_features: int
    added: str
    segment: str


class Catalogue:
    """The ``catalogue.sqlite`` of an index directory.

    A writer works in WAL mode, so searches never block on its transactions, and switches
    the file back to a rollback journal when it closes: a catalogue at rest is one file, which
    read-only connections open without creating ``-wal``/``-shm`` files beside it (a read-only
    server never writes in the index directory). Where a reader holds the file open at that
    moment, SQLite keeps WAL mode, which is as correct. A read-only catalogue may be used from
    several threads (one query at a time).
    """

    def __init__(self, directory: str | os.PathLike, writable: bool = False) -> None:
        self.path = path = member_path(directory, CATALOGUE_NAME, what="index")
        self._lock = threading.Lock()
        self._writable = writable
        try:
            if writable:
                self._connection = sqlite3.connect(path, timeout=30)
                self._connection.execute("PRAGMA journal_mode=WAL")
                self._connection.executescript(_SCHEMA)
                create_tag_tables(self._connection)
            else:
                if not path.is_file():
                    raise BundleError(f"{path}: the image catalogue is missing")
                self._connection = _read_only(path)
            self._connection.execute("SELECT count(*) FROM images").fetchone()
        except sqlite3.DatabaseError as error:
            raise BundleError(f"{path}: corrupt image catalogue ({error})") from error

    def close(self) -> None:
        if self._writable:
            with contextlib.suppress(sqlite3.OperationalError):  # a reader holds it: stay WAL
                self._connection.execute("PRAGMA busy_timeout = 0")
                self._connection.execute("PRAGMA journal_mode=DELETE")
        self._connection.close()

    def _rows(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def insert(self, records: Sequence[ImageRecord], tags: Iterable[tuple[int, Tag]] = ()) -> None:
        """Add rows, and ``(image_id, tag)`` rows of their tags, in one transaction."""
        with self._connection:
            self._connection.executemany(
                "INSERT INTO images (id, path, sha256, bytes, height, width, n_features, added, "
                "segment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.id,
                        r.path,
                        r.sha256,
                        r.bytes,
                        r.height,
                        r.width,
                        r.n_features,
                        r.added,
                        r.segment,
                    )
                    for r in records
                ],
            )
            insert_tags(self._connection, tags)

    def insert_tags(self, tags: Iterable[tuple[int, Tag]]) -> None:
        """Add ``(image_id, tag)`` rows of indexed images in one transaction."""
        with self._connection:
            insert_tags(self._connection, tags)

    def mark_removed(self, ids: Iterable[int]) -> None:
        """Flag rows as removed and delete their tags."""
        rows = [(int(i),) for i in ids]
        with self._connection:
            self._connection.executemany("UPDATE images SET removed = 1 WHERE id = ?", rows)
            self._connection.executemany("DELETE FROM tags WHERE image_id = ?", rows)

    def reconcile(self, next_id: int, removed_ids: Iterable[int]) -> None:
        """Make the catalogue agree with a manifest: drop rows of uncommitted ids, flag removals.

        Parameters
        ----------
        next_id : int
            The manifest's ``next_id``: rows from ``next_id`` on belong to no committed segment.
        removed_ids : iterable of int
        """
        with self._connection:
            self._connection.execute("DELETE FROM images WHERE id >= ?", (int(next_id),))
            self._connection.execute("DELETE FROM tags WHERE image_id >= ?", (int(next_id),))
        self.mark_removed(removed_ids)

    def live_hashes(self, hashes: Sequence[str]) -> dict[str, str]:
        """Of the given content hashes, those already indexed (not removed), with their path."""
        found: dict[str, str] = {}
        for start in range(0, len(hashes), 500):
            chunk = list(hashes[start : start + 500])
            found.update(
                dict(
                    self._rows(
                        f"SELECT sha256, path FROM images WHERE removed = 0 AND sha256 IN "
                        f"({','.join('?' * len(chunk))})",
                        chunk,
                    )
                )
            )
        return found

    def records(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """Rows by id (ids absent from the catalogue are absent from the result)."""
        rows = self._rows(
            "SELECT id, path, sha256, bytes, height, width, n_features, added, segment "
            "FROM images WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        )
        return {row[0]: ImageRecord(*row) for row in rows}

    def ids_of(self, paths: Sequence[str]) -> dict[str, list[int]]:
        """Live image ids of each path (as stored: absolute paths)."""
        found: dict[str, list[int]] = {}
        for path in paths:
            rows = self._rows("SELECT id FROM images WHERE removed = 0 AND path = ?", (path,))
            found[path] = [row[0] for row in rows]
        return found

    def untagged(self, source: str, next_id: int) -> list[tuple[int, str, str]]:
        """(id, path, sha256) of the live images below ``next_id`` without a tag of ``source``."""
        return self._rows(
            "SELECT id, path, sha256 FROM images WHERE removed = 0 AND id < ? AND NOT EXISTS "
            "(SELECT 1 FROM tags WHERE tags.image_id = images.id AND tags.source = ?) "
            "ORDER BY id",
            (int(next_id), source),
        )

    def summary(self) -> dict[str, int]:
        """Live image count, total bytes of the indexed files and features."""
        count, size, features = self._rows(
            "SELECT count(*), coalesce(sum(bytes), 0), coalesce(sum(n_features), 0) "
            "FROM images WHERE removed = 0"
        )[0]
        return {"images": count, "bytes": size, "features": features}


def _read_only(path: os.PathLike) -> sqlite3.Connection:
    """A read-only connection to ``path`` usable from any thread (callers serialise queries)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)


def catalogue_tags(directory: str | os.PathLike, live: np.ndarray) -> StoredTags:
    """The tags in the catalogue of the index at ``directory``, of the ids where ``live``.

    Queried in SQLite at each call (never loaded whole); a catalogue older than tags is an
    empty table.
    """
    path = member_path(directory, CATALOGUE_NAME, what="index")
    try:
        return StoredTags(_read_only(path), live)
    except sqlite3.DatabaseError as error:
        raise BundleError(f"{path}: corrupt image catalogue ({error})") from error


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
