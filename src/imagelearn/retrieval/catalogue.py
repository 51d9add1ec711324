"""The SQLite catalogue of an index: one row per indexed image.

Rows are written before the manifest that makes their segment visible, so a reader never
sees an image id without its row; a writer interrupted between the two leaves rows with ids
at or beyond the manifest's ``next_id``, and the next writer deletes them
(:meth:`Catalogue.reconcile`). Ids are never reused, so merging segments leaves rows alone.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from imagelearn.core.bundle import BundleError, member_path

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
    """The ``catalogue.sqlite`` of an index directory (WAL mode, so readers never block)."""

    def __init__(self, directory: str | os.PathLike, writable: bool = False) -> None:
        path = member_path(directory, CATALOGUE_NAME, what="index")
        try:
            if writable:
                self._connection = sqlite3.connect(path, timeout=30)
                self._connection.execute("PRAGMA journal_mode=WAL")
                self._connection.executescript(_SCHEMA)
            else:
                if not path.is_file():
                    raise BundleError(f"{path}: the image catalogue is missing")
                self._connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            self._connection.execute("SELECT count(*) FROM images").fetchone()
        except sqlite3.DatabaseError as error:
            raise BundleError(f"{path}: corrupt image catalogue ({error})") from error

    def close(self) -> None:
        self._connection.close()

    def insert(self, records: Sequence[ImageRecord]) -> None:
        """Add rows in one transaction."""
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

    def mark_removed(self, ids: Iterable[int]) -> None:
        with self._connection:
            self._connection.executemany(
                "UPDATE images SET removed = 1 WHERE id = ?", [(int(i),) for i in ids]
            )

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
        self.mark_removed(removed_ids)

    def live_hashes(self, hashes: Sequence[str]) -> dict[str, str]:
        """Of the given content hashes, those already indexed (not removed), with their path."""
        found: dict[str, str] = {}
        for start in range(0, len(hashes), 500):
            chunk = list(hashes[start : start + 500])
            rows = self._connection.execute(
                f"SELECT sha256, path FROM images WHERE removed = 0 AND sha256 IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update(dict(rows.fetchall()))
        return found

    def records(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """Rows by id (ids absent from the catalogue are absent from the result)."""
        found: dict[int, ImageRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start : start + 500]]
            rows = self._connection.execute(
                "SELECT id, path, sha256, bytes, height, width, n_features, added, segment "
                f"FROM images WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update({row[0]: ImageRecord(*row) for row in rows.fetchall()})
        return found

    def ids_of(self, paths: Sequence[str]) -> dict[str, list[int]]:
        """Live image ids of each path (as stored: absolute paths)."""
        found: dict[str, list[int]] = {}
        for path in paths:
            rows = self._connection.execute(
                "SELECT id FROM images WHERE removed = 0 AND path = ?", (path,)
            ).fetchall()
            found[path] = [row[0] for row in rows]
        return found

    def summary(self) -> dict[str, int]:
        """Live image count, total bytes of the indexed files and features."""
        count, size, features = self._connection.execute(
            "SELECT count(*), coalesce(sum(bytes), 0), coalesce(sum(n_features), 0) "
            "FROM images WHERE removed = 0"
        ).fetchone()
        return {"images": count, "bytes": size, "features": features}


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
