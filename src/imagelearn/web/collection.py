"""What the web app shows of one index snapshot: its live images, their records and tags.

A :class:`Collection` is read once per snapshot (at start, and after each add or remove) and
never changes, so every request reads it without a lock; the paged grid, the filters and
the image metadata are answered from memory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from imagelearn.retrieval import Index
from imagelearn.retrieval.catalogue import ImageRecord


def live_records(index: Index) -> dict[int, ImageRecord]:
    """The catalogue rows of the images searchable in ``index``'s snapshot, by ascending id."""
    ids = [int(i) for segment in index.segments for i in np.asarray(segment.ids)]
    live = sorted(i for i in ids if not index._removed[i])
    return index._catalogue.records(live)


def _tag_json(tag: Any) -> dict[str, Any]:
    return {"source": tag.source, "name": tag.name, "score": round(float(tag.score), 4)}


def _within(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def common_root(paths: list[str]) -> str:
    """The deepest folder holding every path ("" for none)."""
    if not paths:
        return ""
    root = os.path.commonpath(paths)
    return str(Path(root).parent) if len(paths) == 1 or root in paths else root


@dataclass(frozen=True)
class Collection:
    """The live images of one snapshot, as the app shows them.

    Attributes
    ----------
    generation : int
        Counts the snapshots the app has read (0 at start).
    records : dict of int to ImageRecord
        Catalogue rows by id, ascending.
    root : str
        The deepest folder holding every image but those added through the app; paths are
        shown relative to it.
    upload_dir : str
        Where the app stores the images added through it; they are shown as
        ``<its name>/<file>``.
    modes : tuple of str
        Search modes the index supports.
    default_mode : str
    tags : TagTable or None
        The images' tags (ImageNet labels, a classifier's classes, cluster ids), combined.
    """

    generation: int
    records: dict[int, ImageRecord]
    root: str
    upload_dir: str
    modes: tuple[str, ...]
    default_mode: str
    tags: Any = None
    _cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @classmethod
    def read(cls, index: Index, generation: int, upload_dir: str | os.PathLike) -> Collection:
        """The collection of ``index``'s snapshot; ``upload_dir`` holds the images added
        through the app."""
        records = live_records(index)
        modes = ("local", "global", "hybrid") if index.info()["global"] else ("local",)
        uploads = os.path.abspath(upload_dir)
        others = [r.path for r in records.values() if not _within(r.path, uploads)]
        return cls(
            generation,
            records,
            common_root(others),
            uploads,
            modes,
            "hybrid" if "hybrid" in modes else "local",
        )

    @property
    def ids(self) -> list[int]:
        return list(self.records)

    def display_path(self, image_id: int) -> str:
        """The image's path relative to :attr:`root`, with ``/`` separators."""
        path = self.records[image_id].path
        if _within(path, self.upload_dir):
            relative = os.path.join(
                Path(self.upload_dir).name, os.path.relpath(path, self.upload_dir)
            )
        else:
            relative = os.path.relpath(path, self.root) if self.root else path
        return PurePosixPath(*Path(relative).parts).as_posix()

    def folder(self, image_id: int) -> str:
        """The folder of the image's display path ("" at the root)."""
        return self.cached("folder_of", self._folder_of)[image_id]

    def _folder_of(self) -> dict[int, str]:
        folders = {}
        for image_id in self.records:
            parent = PurePosixPath(self.display_path(image_id)).parent.as_posix()
            folders[image_id] = "" if parent == "." else parent
        return folders

    def folders(self) -> dict[str, int]:
        """Images per folder, sorted by folder."""
        return self.cached("folders", self._count_folders)

    def _count_folders(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for image_id in self.records:
            name = self.folder(image_id)
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    def in_folder(self, image_id: int, folder: str) -> bool:
        """Whether the image is in ``folder`` or below it ("" holds every image)."""
        own = self.folder(image_id)
        return not folder or own == folder or own.startswith(folder.rstrip("/") + "/")

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, computed once per collection for ``key``."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = compute()
        with self._lock:
            return self._cache.setdefault(key, value)

    def select(
        self,
        *,
        folder: str | None = None,
        tag: str | None = None,
        cluster: str | None = None,
        ids: list[int] | None = None,
    ) -> list[int]:
        """Live ids passing every filter given: in id order, or in the order of ``ids``."""
        chosen = self.ids if ids is None else [i for i in dict.fromkeys(ids) if i in self.records]
        if folder is not None:
            chosen = [i for i in chosen if self.in_folder(i, folder)]
        for source, name in (("", tag), ("cluster", cluster)):
            if name is not None:
                having = self.having_tag(name, source)
                chosen = [i for i in chosen if i in having]
        return chosen

    def having_tag(self, name: str, source: str = "") -> set[int]:
        """Ids with the tag ``name`` exactly (of ``source``, or of any source for "")."""
        if self.tags is None:
            return set()
        wanted = name.lower()
        return {
            image_id
            for image_id, tag in self.tags.search(name, top=len(self.records))
            if tag.name.lower() == wanted and (not source or tag.source == source)
        }

    def tagged(self, prefix: str) -> set[int]:
        """Ids with a tag whose name starts with ``prefix`` (case-insensitive)."""
        return {image_id for image_id, _ in self.search_tags(prefix, len(self.records))}

    def search_tags(self, prefix: str, top: int) -> list[tuple[int, dict[str, Any]]]:
        """Images with a tag starting with ``prefix``, best score first, and that tag."""
        if self.tags is None:
            return []
        found = self.tags.search(prefix.strip(), top=top)
        return [(i, _tag_json(tag)) for i, tag in found if i in self.records]

    def tags_of(self, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """The tags of each image, best score first: ``{"source", "name", "score"}``."""
        if self.tags is None:
            return {i: [] for i in ids}
        found = self.tags.of(ids)
        return {i: [_tag_json(tag) for tag in found.get(i, [])] for i in ids}

    def tag_counts(self, prefix: str = "", top: int = 50) -> list[dict[str, Any]]:
        """Tags starting with ``prefix`` (case-insensitive) and their image counts, most first."""
        if self.tags is None:
            return []
        counts = self.cached("tag_counts", self.tags.counts)
        wanted = prefix.strip().lower()
        chosen = [(n, c) for n, c in counts.items() if n.lower().startswith(wanted)]
        chosen.sort(key=lambda item: (-item[1], item[0]))
        return [{"name": name, "count": count} for name, count in chosen[:top]]

    def tag_sources(self) -> list[str]:
        """The sources of the collection's tags (``imagenet``, ``model``, ``cluster``...)."""
        if self.tags is None:
            return []

        def sources() -> list[str]:
            found = self.tags.of(self.ids)
            return sorted({tag.source for tags in found.values() for tag in tags})

        return self.cached("tag_sources", sources)

    def map_json(self, index: Index) -> dict[str, Any]:
        """The 2-D map of the images' embeddings: ``{"ids", "x", "y"}`` (live images only)."""

        def compute() -> dict[str, Any]:
            from imagelearn.retrieval.image_map import image_map

            placed = image_map(index)
            rows = [
                (int(i), round(float(x), 5), round(float(y), 5))
                for i, (x, y) in zip(placed.ids, placed.xy, strict=True)
                if int(i) in self.records
            ]
            return {
                "ids": [row[0] for row in rows],
                "x": [row[1] for row in rows],
                "y": [row[2] for row in rows],
            }

        return self.cached("map", compute)

    def duplicate_groups(self, index: Index, threshold: float) -> list[list[int]]:
        """Groups of near-duplicate images (ids) at ``threshold``, computed once per threshold."""
        return self.cached(
            ("duplicates", round(threshold, 4)),
            lambda: [[int(i) for i in group] for group in index.duplicate_groups(threshold)],
        )

    def describe(self, image_id: int) -> dict[str, Any]:
        """What the grid shows of one image: id, display path, folder, size."""
        record = self.records[image_id]
        return {
            "id": image_id,
            "path": self.display_path(image_id),
            "folder": self.folder(image_id),
            "width": record.width,
            "height": record.height,
        }
