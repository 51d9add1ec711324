"""What the web app shows of one index snapshot: its live images, their records and tags.

A :class:`Collection` is read once per snapshot (at start, and after each add or remove) and
never changes, so requests read it without a lock; the paged grid, the filters and the image
metadata are answered from memory, keyword searches by its tag tables (thread-safe), and what
is costly to compute (the map, near-duplicate groups) is computed once per snapshot.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from imagelearn.retrieval import Index
from imagelearn.retrieval.catalogue import ImageRecord
from imagelearn.retrieval.tags import Tag, TagTable, classifier_tags, cluster_tags


def tag_json(tag: Tag) -> dict[str, Any]:
    return {"source": tag.source, "name": tag.name, "score": round(float(tag.score), 4)}


def _within(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def common_root(paths: list[str]) -> str:
    """The deepest folder holding every path ("" for none)."""
    if not paths:
        return ""
    root = os.path.commonpath(paths)
    return str(Path(root).parent) if len(paths) == 1 or root in paths else root


def tag_tables(
    index: Index, model: str | os.PathLike | None, clusters: str | os.PathLike | None
) -> dict[str, TagTable]:
    """The tag tables of ``index`` by source: its ImageNet tags, a classifier run's classes
    (``model``) and a clustering run's clusters (``clusters``), each where given.

    Raises
    ------
    BundleError
        ``model`` is not a classifier run, or ``clusters`` not a clustering run.
    """
    tables = {"imagenet": index.tag_table()}
    if model is not None:
        tables["model"] = classifier_tags(index, model)
    if clusters is not None:
        tables["cluster"] = cluster_tags(index, clusters)
    return tables


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
    tables : dict of str to TagTable
        The images' tags by source (``imagenet``, ``model``, ``cluster``).
    """

    generation: int
    records: dict[int, ImageRecord]
    root: str
    upload_dir: str
    modes: tuple[str, ...]
    default_mode: str
    tables: dict[str, TagTable]
    _cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @classmethod
    def read(
        cls,
        index: Index,
        generation: int,
        upload_dir: str | os.PathLike,
        tables: dict[str, TagTable],
    ) -> Collection:
        """The collection of ``index``'s snapshot; ``upload_dir`` holds the images added
        through the app; ``tables`` are its tags (:func:`tag_tables`)."""
        records = index.records(index.ids().tolist())
        modes = ("local", "global", "hybrid") if index.content.get("global") else ("local",)
        uploads = os.path.abspath(upload_dir)
        others = [r.path for r in records.values() if not _within(r.path, uploads)]
        return cls(
            generation,
            records,
            common_root(others),
            uploads,
            modes,
            "hybrid" if "hybrid" in modes else "local",
            tables,
        )

    @property
    def ids(self) -> list[int]:
        return list(self.records)

    @property
    def tags(self) -> TagTable:
        """Every tag table as one."""
        return self.cached("tags", lambda: TagTable.combined(*self.tables.values()))

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, computed once per collection for ``key``."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = compute()
        with self._lock:
            return self._cache.setdefault(key, value)

    # ------------------------------------------------------------ paths and folders

    def display_path(self, image_id: int) -> str:
        """The image's path relative to :attr:`root` (or ``uploads/NAME``), ``/``-separated."""
        path = self.records[image_id].path
        if _within(path, self.upload_dir):
            name = Path(self.upload_dir).name
            relative = os.path.join(name, os.path.relpath(path, self.upload_dir))
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

        def count() -> dict[str, int]:
            counts: dict[str, int] = {}
            for name in self._folder_of().values():
                counts[name] = counts.get(name, 0) + 1
            return dict(sorted(counts.items()))

        return self.cached("folders", count)

    def in_folder(self, image_id: int, folder: str) -> bool:
        """Whether the image is in ``folder`` or below it ("" holds every image)."""
        own = self.folder(image_id)
        return not folder or own == folder or own.startswith(folder.rstrip("/") + "/")

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

    # ------------------------------------------------------------ filters and tags

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
        for name, source in ((tag, None), (cluster, "cluster")):
            if name is not None:
                having = self.having_tag(name, source)
                chosen = [i for i in chosen if i in having]
        return chosen

    def having_tag(self, name: str, source: str | None = None) -> set[int]:
        """Ids with the tag ``name`` exactly (any case), of ``source`` or of any source."""
        table = self.tags if source is None else self.tables.get(source)
        if table is None:
            return set()
        return {i for i, _ in table.search(name, top=len(self.records), exact=True)}

    def matching(self, keyword: str, ids: Sequence[int]) -> set[int]:
        """Those of ``ids`` with a tag matching ``keyword`` (word prefixes, synonyms)."""
        found = self.tags.search(keyword, top=len(ids), among=list(ids))
        return {image_id for image_id, _ in found}

    def search_tags(self, keyword: str, top: int) -> list[tuple[int, dict[str, Any]]]:
        """Images with a tag matching ``keyword``, best score first, with that tag."""
        found = self.tags.search(keyword, top=top)
        return [(i, tag_json(tag)) for i, tag in found if i in self.records]

    def tags_of(self, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """The tags of each image, best score first: ``{"source", "name", "score"}``."""
        found = self.tags.of(ids)
        return {i: [tag_json(tag) for tag in found.get(i, [])] for i in ids}

    def tag_counts(self, prefix: str = "", top: int = 50, source: str | None = None):
        """Tags (of ``source``, or of all) whose name or a word of it starts with ``prefix``
        (any case), and their image counts, most frequent first."""
        table = self.tags if source is None else self.tables.get(source)
        if table is None:
            return []
        counts = self.cached(("tag_counts", source), table.counts)
        wanted = prefix.strip().lower()

        def matches(name: str) -> bool:
            lower = name.lower()
            return lower.startswith(wanted) or any(
                word.startswith(wanted) for word in lower.replace("-", " ").split()
            )

        chosen = [(n, c) for n, c in counts.items() if not wanted or matches(n)]
        chosen.sort(key=lambda item: (-item[1], item[0]))
        return [{"name": name, "count": count} for name, count in chosen[:top]]

    def tag_sources(self) -> list[str]:
        """The sources with at least one tag (``imagenet``, ``model``, ``cluster``)."""
        return self.cached(
            "tag_sources",
            lambda: [source for source, table in self.tables.items() if table.counts()],
        )

    # ------------------------------------------------------------ computed once

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
