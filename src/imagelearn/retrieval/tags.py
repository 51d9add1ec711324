"""Tags of indexed images, searched by keyword: ImageNet classes, a classifier's, cluster ids.

Every image an index tags (``IndexParams(tags=True)``, the default of ``imagelearn index
build`` where the ImageNet weights are on the machine) carries the top ImageNet classes of the
index's global backbone (MobileNetV2 by default), with their probabilities, in the catalogue:
computed from the network pass of the global descriptor (:func:`describe_with_classes`).
A trained classifier's classes (:func:`classifier_tags`) and a clustering's cluster ids
(:func:`cluster_tags`) are tags of their own sources, computed once and cached; a
:class:`TagTable` searches any of them, and :meth:`TagTable.combined` all at once:

>>> from imagelearn.retrieval import Index
>>> index = Index.open("photos.index")  # doctest: +SKIP
>>> tags = TagTable.combined(index.tag_table(), classifier_tags(index, "runs/flowers"))  # doctest: +SKIP
>>> tags.search("dais", top=10)  # doctest: +SKIP
[(17, Tag(source='imagenet', name='daisy', score=0.93)), ...]

A query matches a tag when each of its words is the beginning of a word of the tag's name or
of its synonyms (ImageNet's: "tabby" is also "tabby cat", so "cat" finds it), in any case.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imagelearn.core.bundle import MANIFEST_NAME, BundleError, member_path, read_manifest

if TYPE_CHECKING:
    from imagelearn.retrieval.catalogue import ImageRecord
    from imagelearn.retrieval.global_descriptors import GeMDescriptor
    from imagelearn.retrieval.index import Index

log = logging.getLogger(__name__)

#: The sources of tags: the index's ImageNet classifier, a trained classifier, a clustering.
SOURCES = ("imagenet", "model", "cluster")
#: ImageNet classes kept per image: the most probable, down to :data:`IMAGENET_FLOOR`.
IMAGENET_TOP = 5
#: Probability below which an ImageNet class is not kept (the most probable one always is).
IMAGENET_FLOOR = 0.02
#: Classes of a trained classifier kept per image, down to :data:`MODEL_FLOOR`, the first
#: always (a BoF classifier's: down to 0.5, a positive margin, and none where no class has one).
MODEL_TOP = 3
MODEL_FLOOR = 0.05
#: A BoF classifier's SVM margin ``m`` scores ``1 / (1 + exp(-BOF_MARGIN_SCALE m))``: a
#: flower classifier's margins on the demo index: median 0.41 on flowers, -0.12 on UKBench.
BOF_MARGIN_SCALE = 2.0
#: Images that the global descriptor's resize enlarges more than this many times are
#: classified in a second pass at :data:`CLASSIFIER_SIDE` pixels: ImageNet networks classify
#: enlarged thumbnails poorly (measured on 128-pixel flower photos: the top-5 accuracy of
#: "daisy" falls from 0.45 at 224 pixels to 0.28 at 384).
MAX_UPSCALE = 1.5
CLASSIFIER_SIDE = 224

_TAG_SCHEMA = """
CREATE TABLE IF NOT EXISTS tags (
    image_id INTEGER NOT NULL,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (image_id, source, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_by_name ON tags (source, name, score);
CREATE TABLE IF NOT EXISTS tag_names (
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    words TEXT NOT NULL,
    PRIMARY KEY (source, name)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Tag:
    """One tag of an image.

    Attributes
    ----------
    source : str
        Where it comes from: ``"imagenet"``, ``"model"`` or ``"cluster"`` (:data:`SOURCES`).
    name : str
        The class or cluster name (``"daisy"``, ``"cluster 3"``).
    score : float
        In [0, 1], higher is surer: a class probability, or a cluster member's closeness to
        its centre.
    """

    source: str
    name: str
    score: float


def words_of(text: str) -> list[str]:
    """The lowercase words of ``text`` (runs of letters and digits): "Man-eater" -> man, eater."""
    return re.findall(r"\w+", text.lower())


@cache
def imagenet_synonyms() -> tuple[str, ...]:
    """The WordNet synonyms of each ImageNet class, in class order: ``"tabby, tabby cat"``."""
    text = resources.files("imagelearn.retrieval").joinpath("imagenet_synonyms.txt")
    lines = text.read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line and not line.startswith("#"))


@cache
def _imagenet_words() -> dict[str, str]:
    from imagelearn.classify.weights import imagenet_categories

    return dict(zip(imagenet_categories(), imagenet_synonyms(), strict=True))


def tag_words(source: str, name: str) -> str:
    """The words a query is matched against: the name's, and for an ImageNet class its
    synonyms', space separated and lowercase."""
    words = words_of(name)
    if source == "imagenet" and name in _imagenet_words():
        words += words_of(_imagenet_words()[name])
    return " ".join(dict.fromkeys(words))


def top_classes(
    probabilities: np.ndarray,
    names: Sequence[str],
    source: str,
    top: int,
    floor: float,
    keep_best: bool = True,
) -> list[list[Tag]]:
    """Tags of each row of ``probabilities`` (n, n_classes): its ``top`` most probable classes
    of probability at least ``floor``, best first; the most probable one always where
    ``keep_best``."""
    tags = []
    for row in np.asarray(probabilities, dtype=np.float64):
        order = np.argsort(-row, kind="stable")[: max(1, top)]
        tags.append(
            [
                Tag(source, names[c], round(float(row[c]), 6))
                for rank, c in enumerate(order)
                if (rank == 0 and keep_best) or row[c] >= floor
            ]
        )
    return tags


def describe_with_classes(
    descriptor: GeMDescriptor, images: Sequence[str | os.PathLike]
) -> tuple[np.ndarray, list[list[Tag]]]:
    """Global descriptors of image files and their ImageNet tags, from one network pass.

    Images that the descriptor's resize would enlarge more than :data:`MAX_UPSCALE` times
    are classified in a second, smaller pass at :data:`CLASSIFIER_SIDE` pixels.

    Returns
    -------
    descriptors : ndarray of float32, shape (n, d)
        As ``descriptor.transform(images)``.
    tags : list of list of Tag
        The :data:`IMAGENET_TOP` most probable classes of each image (source ``"imagenet"``).

    Raises
    ------
    ImageReadError
        An unreadable file.
    ParameterError
        The backbone has no ImageNet classifier of one linear layer.
    """
    from imagelearn.classify.weights import imagenet_categories

    descriptors, probabilities = descriptor.transform_with_classes(images)
    small = [
        row
        for row, image in enumerate(images)
        if _longer_side(image) * MAX_UPSCALE < descriptor.max_side
    ]
    if small:
        classifier = _small_image_classifier(descriptor)
        _, probabilities[small] = classifier.transform_with_classes(
            [images[row] for row in small], "classes of small images"
        )
    tags = top_classes(
        probabilities, imagenet_categories(), "imagenet", IMAGENET_TOP, IMAGENET_FLOOR
    )
    return descriptors, tags


def _small_image_classifier(descriptor: GeMDescriptor) -> GeMDescriptor:
    """``descriptor`` at :data:`CLASSIFIER_SIDE` pixels (kept: its network is built once)."""
    return _descriptor_at(
        tuple(sorted({**descriptor.get_params(), "max_side": CLASSIFIER_SIDE}.items()))
    )


@lru_cache(maxsize=4)
def _descriptor_at(params: tuple[tuple[str, Any], ...]) -> GeMDescriptor:
    from imagelearn.retrieval.global_descriptors import GeMDescriptor

    return GeMDescriptor(**dict(params))


def _longer_side(image: str | os.PathLike) -> int:
    """The longer side of an image file from its header, pixels (0 when unreadable)."""
    from PIL import Image

    try:
        with Image.open(image) as opened:
            return max(opened.size)
    except (OSError, ValueError):
        return 0


class TagTable:
    """Tags of images by image id, searchable by keyword.

    Made by :meth:`Index.tag_table` (the catalogue's, in SQLite), :func:`classifier_tags`,
    :func:`cluster_tags`, :meth:`from_rows` (in memory) and :meth:`combined`. Safe to use
    from several threads.
    """

    def of(self, ids: Sequence[int]) -> dict[int, list[Tag]]:
        """The tags of each of ``ids`` (every id is a key; best score first)."""
        raise NotImplementedError

    def search(
        self,
        text: str,
        top: int = 100,
        among: Sequence[int] | None = None,
        *,
        exact: bool = False,
    ) -> list[tuple[int, Tag]]:
        """Images with a tag matching ``text``, best score first, each once with its best tag.

        Parameters
        ----------
        text : str
            Words; a tag matches when each is the beginning of one of its words (name or
            synonyms), in any case: "tab cat" finds "tabby" (a "tabby cat").
        top : int
            Images returned at most.
        among : sequence of int, optional
            Only these image ids (a visual search's results, to filter them by keyword).
        exact : bool
            Match the whole name instead (any case): "cluster 1" is not "cluster 10".
        """
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        """Images per tag name (sources added together), most frequent first."""
        raise NotImplementedError

    @staticmethod
    def from_rows(rows: Iterable[tuple[int, Tag]]) -> TagTable:
        """An in-memory table of ``(image_id, tag)`` rows (a tag of one image counts once)."""
        return StoredTags(_memory_database(rows))

    @staticmethod
    def combined(*tables: TagTable) -> TagTable:
        """All ``tables`` as one: tags of each image together, searches merged by score."""
        return CombinedTags(tables)


class StoredTags(TagTable):
    """A :class:`TagTable` in an SQLite database: in memory, or the catalogue of an index.

    Parameters
    ----------
    connection : sqlite3.Connection
        Opened with ``check_same_thread=False``; holds the ``tags`` and ``tag_names`` tables
        (an old catalogue without them is an empty table).
    live : ndarray of bool, optional
        ``live[id]`` for every id of an index snapshot: rows of other ids are not this
        table's (added after the snapshot, or removed meanwhile).
    """

    def __init__(self, connection: sqlite3.Connection, live: np.ndarray | None = None) -> None:
        self._connection = connection
        self._live = live
        self._lock = threading.Lock()
        self._words: dict[tuple[str, str], list[str]] | None = None
        self._counts: dict[str, int] | None = None
        with self._lock:
            found = connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'tags'"
            ).fetchone()[0]
        self._empty = not found

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        if self._empty:
            return []
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    @property
    def _id_limit(self) -> int:
        return len(self._live) if self._live is not None else 2**63 - 1

    def _is_live(self, image_id: int) -> bool:
        return self._live is None or (image_id < len(self._live) and bool(self._live[image_id]))

    def of(self, ids: Sequence[int]) -> dict[int, list[Tag]]:
        wanted = [int(i) for i in ids]
        found: dict[int, list[Tag]] = {i: [] for i in wanted}
        rows = self._query(
            "SELECT image_id, source, name, score FROM tags "
            "WHERE image_id IN (SELECT value FROM json_each(?)) ORDER BY image_id, score DESC",
            (json.dumps(wanted),),
        )
        for image_id, source, name, score in rows:
            if self._is_live(image_id):
                found[image_id].append(Tag(source, name, score))
        return found

    def _names(self) -> dict[tuple[str, str], list[str]]:
        """The words of every (source, name), read once."""
        if self._words is None:
            rows = self._query("SELECT source, name, words FROM tag_names")
            self._words = {(source, name): words.split() for source, name, words in rows}
        return self._words

    def _matching(self, text: str, exact: bool) -> dict[str, list[str]]:
        """Names matching ``text`` by source."""
        wanted = text.strip().lower() if exact else words_of(text)
        matched: dict[str, list[str]] = {}
        if not wanted:
            return matched
        for (source, name), words in self._names().items():
            if exact:
                hit = name.lower() == wanted
            else:
                hit = all(any(word.startswith(w) for word in words) for w in wanted)
            if hit:
                matched.setdefault(source, []).append(name)
        return matched

    def search(
        self,
        text: str,
        top: int = 100,
        among: Sequence[int] | None = None,
        *,
        exact: bool = False,
    ) -> list[tuple[int, Tag]]:
        matching = self._matching(text, exact)
        if among is None:
            rows = self._best_rows(matching, max(0, int(top)))
        else:
            rows = self._rows_among(matching, among)
        best: dict[int, Tag] = {}
        for image_id, source, name, score in rows:
            if self._is_live(image_id) and (image_id not in best or score > best[image_id].score):
                best[image_id] = Tag(source, name, score)
        return _ranked(best, top)

    def _best_rows(self, matching: dict[str, list[str]], limit: int) -> list[tuple]:
        """Each matching name's ``limit`` best rows, through the (source, name, score) index:
        the ``limit`` best images of all are among them (an image has one row per name).
        Measured on 1M images x 5 tags: "daisy" 1 ms, "dog" 3-8 ms, "c" 0.1-0.2 s (bench_browse)."""
        return [
            (image_id, source, name, score)
            for source, names in matching.items()
            for name in names
            for image_id, score in self._query(
                "SELECT image_id, score FROM tags WHERE source = ? AND name = ? AND image_id < ? "
                "ORDER BY score DESC LIMIT ?",
                (source, name, self._id_limit, limit),
            )
        ]

    def _rows_among(self, matching: dict[str, list[str]], among: Sequence[int]) -> list[tuple]:
        """The matching rows of the images ``among``, through the primary key."""
        wanted = {(source, name) for source, names in matching.items() for name in names}
        if not wanted:
            return []
        rows = self._query(
            "SELECT image_id, source, name, score FROM tags WHERE image_id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in among]),),
        )
        return [row for row in rows if (row[1], row[2]) in wanted]

    def counts(self) -> dict[str, int]:
        if self._counts is None:
            totals: dict[str, int] = {}
            rows = self._query(
                "SELECT name, count(*) FROM tags WHERE image_id < ? GROUP BY source, name",
                (self._id_limit,),
            )
            for name, count in rows:
                totals[name] = totals.get(name, 0) + count
            self._counts = dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))
        return dict(self._counts)


class CombinedTags(TagTable):
    """Several :class:`TagTable` as one (see :meth:`TagTable.combined`)."""

    def __init__(self, tables: Sequence[TagTable]) -> None:
        self.tables = tuple(tables)

    def of(self, ids: Sequence[int]) -> dict[int, list[Tag]]:
        found: dict[int, list[Tag]] = {int(i): [] for i in ids}
        for table in self.tables:
            for image_id, tags in table.of(ids).items():
                found[image_id] += tags
        return {i: sorted(tags, key=lambda tag: -tag.score) for i, tags in found.items()}

    def search(
        self,
        text: str,
        top: int = 100,
        among: Sequence[int] | None = None,
        *,
        exact: bool = False,
    ) -> list[tuple[int, Tag]]:
        best: dict[int, Tag] = {}
        for table in self.tables:
            for image_id, tag in table.search(text, top, among, exact=exact):
                if image_id not in best or tag.score > best[image_id].score:
                    best[image_id] = tag
        return _ranked(best, top)

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for table in self.tables:
            for name, count in table.counts().items():
                totals[name] = totals.get(name, 0) + count
        return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))


def _ranked(best: Mapping[int, Tag], top: int) -> list[tuple[int, Tag]]:
    ranked = sorted(best.items(), key=lambda item: (-item[1].score, item[0]))
    return ranked[: max(0, int(top))]


def create_tag_tables(connection: sqlite3.Connection) -> None:
    """Create the ``tags`` and ``tag_names`` tables where they are missing."""
    connection.executescript(_TAG_SCHEMA)


def insert_tags(connection: sqlite3.Connection, rows: Iterable[tuple[int, Tag]]) -> None:
    """Add ``(image_id, tag)`` rows and their names' words (within the caller's transaction)."""
    rows = list(rows)
    connection.executemany(
        "INSERT OR REPLACE INTO tags (image_id, source, name, score) VALUES (?, ?, ?, ?)",
        [(int(i), t.source, t.name, float(t.score)) for i, t in rows],
    )
    names = {(t.source, t.name) for _, t in rows}
    connection.executemany(
        "INSERT OR IGNORE INTO tag_names (source, name, words) VALUES (?, ?, ?)",
        [(source, name, tag_words(source, name)) for source, name in sorted(names)],
    )


def _memory_database(rows: Iterable[tuple[int, Tag]]) -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    create_tag_tables(connection)
    with connection:
        insert_tags(connection, rows)
    return connection


# ------------------------------------------------------------------ tags of other runs


def classifier_tags(
    index: Index, run_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None
) -> TagTable:
    """Tags of source ``"model"``: the classes a trained classifier gives the index's images.

    The :data:`MODEL_TOP` best classes of each image (scoring at least :data:`MODEL_FLOOR`,
    the first always; a BoF classifier's only those of a positive margin, so that an image
    no class claims, one unlike every class it was trained on, gets none). Computed once per
    image content, batched through the execution layer, and cached in the cache home
    (``index/``), keyed by the model's manifest and each image's SHA-256: a new snapshot
    (after an add) reads and predicts only the images no snapshot had, and the index
    directory is never written. An image not classified yet whose file is gone, or holds
    other content than was indexed, gets no tags.

    Parameters
    ----------
    index : Index
    run_dir : path-like
        A ``classify train`` run (a :class:`~imagelearn.classify.DeepImageClassifier`) or a
        ``bof train`` run (a :class:`~imagelearn.bof.BofClassifier`: each class's one-vs-rest
        SVM margin ``m`` scored ``1 / (1 + exp(-2 m))``, 0.5 on the SVM's boundary and 0.88
        at its margin: a ranking, not a calibrated probability).
    cache_dir : path-like, optional
        Default ``cache_root("index")``; ``""``: computed at every call.

    Raises
    ------
    BundleError
        ``run_dir`` holds no model, or a model that is not a classifier.
    """
    run_dir = Path(run_dir)
    kind = read_manifest(run_dir)["kind"]
    manifest = member_path(run_dir, MANIFEST_NAME).read_bytes()
    name = f"model-{hashlib.sha256(manifest).hexdigest()[:16]}"
    by_content = _read_content_tags(cache_dir, name)
    records = index.records(index.ids().tolist())
    new_contents = {r.sha256: r for r in records.values() if r.sha256 not in by_content}
    untagged = _unchanged_files(new_contents.values())  # one file of each content
    if untagged:
        model, scores_of, floor, keep_best = _classifier(run_dir, kind)
        prediction = model.predict_images([record.path for record in untagged], strict=False)
        per_image = top_classes(
            scores_of(prediction), list(model.class_names_), "model", MODEL_TOP, floor, keep_best
        )
        for position, tags in zip(prediction.kept, per_image, strict=True):
            by_content[untagged[position].sha256] = tags
        _write_content_tags(cache_dir, name, by_content)
    return TagTable.from_rows(
        (image_id, tag)
        for image_id, record in sorted(records.items())
        for tag in by_content.get(record.sha256, ())
    )


def _classifier(run_dir: Path, kind: str) -> tuple[Any, Any, float, bool]:
    """The model of a run, a function from its prediction to scores (n, n_classes) in [0, 1],
    the score below which a class is not kept, and whether the best class is kept below it
    (a softmax always names a class; a one-vs-rest SVM's margins can all be negative)."""
    from imagelearn.bof.recognition import BofClassifier
    from imagelearn.classify.classifier import DeepImageClassifier

    if kind == DeepImageClassifier.bundle_kind:
        return (
            DeepImageClassifier.load(run_dir),
            lambda prediction: prediction.probabilities,
            MODEL_FLOOR,
            True,
        )
    if kind == BofClassifier.bundle_kind:

        def logistic(prediction: Any) -> np.ndarray:
            return 1.0 / (1.0 + np.exp(-BOF_MARGIN_SCALE * prediction.scores))

        return BofClassifier.load(run_dir), logistic, 0.5, False
    raise BundleError(
        f"{run_dir}: holds a {kind!r}, not a classifier (a 'classify train' or 'bof train' run)"
    )


def cluster_tags(
    index: Index, run_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None
) -> TagTable:
    """Tags of source ``"cluster"``: the cluster of each indexed image in a ``cluster`` run.

    Images are matched by path, then by content (SHA-256) for the paths the index does not
    hold; tags are named ``"cluster N"`` (HDBSCAN noise gets none) and scored
    ``1 / (1 + d / median)``, ``d`` the image's distance to its cluster's centre and
    ``median`` the cluster's median distance (1 at the centre, 0.5 at the median). Cached as
    :func:`classifier_tags` is, keyed by ``clusters.csv``'s content.

    Raises
    ------
    BundleError
        ``run_dir`` holds no ``clusters.csv``, or an unreadable one.
    """
    table = Path(run_dir) / "clusters.csv"
    try:
        content = table.read_bytes()
    except OSError as error:
        raise BundleError(f"{table}: no cluster run here ({error.strerror or error})") from None
    name = f"cluster-{index.fingerprint}-{hashlib.sha256(content).hexdigest()[:16]}"
    cached = _read_cached(cache_dir, name)
    if cached is not None:
        return TagTable.from_rows(cached)
    try:
        assigned = [
            (str(Path(row["path"]).resolve()), int(row["cluster"]), float(row["distance"]))
            for row in csv.DictReader(content.decode("utf-8").splitlines())
        ]
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as error:
        raise BundleError(f"{table}: not a table of path, cluster, distance ({error})") from None
    records = index.records(index.ids().tolist())
    by_path = {record.path: image_id for image_id, record in records.items()}
    by_content = {record.sha256: image_id for image_id, record in records.items()}
    medians = {
        cluster: float(np.median([d for _, c, d in assigned if c == cluster]))
        for cluster in {c for _, c, _ in assigned if c >= 0}
    }
    rows = []
    for path, cluster, distance in assigned:
        image_id = by_path.get(path)
        if image_id is None:
            image_id = by_content.get(_sha256_or_none(path))
        if cluster >= 0 and image_id is not None:
            score = 1.0 / (1.0 + distance / max(medians[cluster], 1e-12))
            rows.append((image_id, Tag("cluster", f"cluster {cluster}", round(score, 6))))
    _write_cached(cache_dir, name, rows)
    return TagTable.from_rows(rows)


def _sha256_or_none(path: str) -> str | None:
    from imagelearn.retrieval.writer import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return None


def _unchanged_files(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    """The ``records`` whose file still holds the indexed content (each file read once)."""
    return [record for record in records if _sha256_or_none(record.path) == record.sha256]


def _cache_file(cache_dir: str | os.PathLike | None, name: str) -> Path | None:
    if cache_dir is not None and not str(cache_dir):
        return None
    from imagelearn.core.cache import cache_root

    return (
        Path(cache_dir) if cache_dir is not None else cache_root("index")
    ) / f"{name}.safetensors"


def _read_cached(cache_dir: str | os.PathLike | None, name: str) -> list[tuple[int, Tag]] | None:
    """The ``(image_id, tag)`` rows a :func:`_write_cached` kept, or None (absent, evicted or
    damaged)."""
    found = _read_cache_file(cache_dir, name)
    if found is None:
        return None
    tensors, metadata = found
    try:
        return list(zip(tensors["ids"].tolist(), _stored_tags(tensors, metadata), strict=True))
    except (KeyError, ValueError, IndexError):  # damaged or foreign: computed again
        return None


def _write_cached(
    cache_dir: str | os.PathLike | None, name: str, rows: Sequence[tuple[int, Tag]]
) -> None:
    """Keep ``rows`` (all of one source) in the cache; a read-only cache is only logged."""
    tensors, metadata = _tag_tensors([tag for _, tag in rows])
    tensors["ids"] = np.array([image_id for image_id, _ in rows], dtype=np.int64)
    _write_cache_file(cache_dir, name, tensors, metadata)


def _read_content_tags(cache_dir: str | os.PathLike | None, name: str) -> dict[str, list[Tag]]:
    """The tags a :func:`_write_content_tags` kept, by image content (SHA-256 hex), every image
    it classified included (``[]``: no class kept); empty when absent, evicted or damaged."""
    found = _read_cache_file(cache_dir, name)
    if found is None:
        return {}
    tensors, metadata = found
    try:
        contents = [bytes(row).hex() for row in tensors["contents"]]
        by_content: dict[str, list[Tag]] = {content: [] for content in contents}
        owners = tensors["owners"].tolist()
        for owner, tag in zip(owners, _stored_tags(tensors, metadata), strict=True):
            by_content[contents[owner]].append(tag)
    except (KeyError, ValueError, IndexError):  # damaged or foreign: computed again
        return {}
    return by_content


def _write_content_tags(
    cache_dir: str | os.PathLike | None, name: str, by_content: Mapping[str, Sequence[Tag]]
) -> None:
    """Keep the tags of every classified image content (SHA-256 hex, stored as 32 bytes)."""
    contents = list(by_content)
    rows = [(owner, tag) for owner, content in enumerate(contents) for tag in by_content[content]]
    tensors, metadata = _tag_tensors([tag for _, tag in rows])
    tensors["owners"] = np.array([owner for owner, _ in rows], dtype=np.int64)
    tensors["contents"] = np.array(
        [list(bytes.fromhex(content)) for content in contents], dtype=np.uint8
    ).reshape(len(contents), 32)
    _write_cache_file(cache_dir, name, tensors, metadata)


def _tag_tensors(tags: Sequence[Tag]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``tags`` (all of one source) as arrays of name numbers and scores, and the metadata
    that names them."""
    names = sorted({tag.name for tag in tags})
    column = {tag_name: c for c, tag_name in enumerate(names)}
    tensors = {
        "names": np.array([column[tag.name] for tag in tags], dtype=np.int32),
        "scores": np.array([tag.score for tag in tags], dtype=np.float64),
    }
    return tensors, {"names": json.dumps(names), "source": tags[0].source if tags else ""}


def _stored_tags(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> list[Tag]:
    """The tags of :func:`_tag_tensors`'s arrays, in order."""
    names, source = json.loads(metadata["names"]), metadata["source"]
    return [
        Tag(source, str(names[c]), float(score))
        for c, score in zip(tensors["names"].tolist(), tensors["scores"].tolist(), strict=True)
    ]


def _read_cache_file(
    cache_dir: str | os.PathLike | None, name: str
) -> tuple[dict[str, np.ndarray], dict[str, str]] | None:
    """The arrays and metadata of the cache file ``name``, marked as used; None when absent or
    unreadable."""
    from safetensors import safe_open

    from imagelearn.core.cache import mark_used

    path = _cache_file(cache_dir, name)
    if path is None or not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as stored:
            tensors = {key: stored.get_tensor(key) for key in stored.keys()}
            metadata = dict(stored.metadata() or {})
    except Exception:  # damaged or foreign: computed again
        return None
    mark_used(path)
    return tensors, metadata


def _write_cache_file(
    cache_dir: str | os.PathLike | None,
    name: str,
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str],
) -> None:
    """Write the cache file ``name`` atomically, counted in the cache's budget; a read-only
    cache is only logged."""
    from safetensors.numpy import save

    from imagelearn.core.bundle import atomic_write_bytes
    from imagelearn.core.cache import CacheBudget

    path = _cache_file(cache_dir, name)
    if path is None:
        return
    data = save(dict(tensors), metadata=dict(metadata))
    try:
        atomic_write_bytes(path, data)
    except OSError as error:
        log.warning("could not keep the tags in %s: %s", path, error)
        return
    budget = CacheBudget.of(path.parent)
    if budget is not None:
        budget.record(len(data))
