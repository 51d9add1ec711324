"""Reading an instance-retrieval index: :class:`Index`, one snapshot, searched.

>>> from imagelearn.retrieval import Index
>>> Index.open("photos.index").search("query.jpg", top=20).as_dict()  # doctest: +SKIP

``mode="local"`` ranks by the tf-idf inverted file, ``"global"`` by the FAISS index of GeM
descriptors, ``"hybrid"`` takes the global shortlist and lets local features verify it; the
default is hybrid where the index holds global descriptors (the most accurate mode on
UKBench, ``bench/README.md``), else local. Verification re-ranks the top ``verify_top``
candidates by RANSAC inliers (verified images first); average query expansion (Chum et al.
2007) then re-queries with the mean of the query's bag and the bags of the best verified
images.

A query is described once per search (:class:`Query`: its local features as visual words and
its global descriptor, computed at the same time on two threads), from an image by
:meth:`Index.search` or from what the index stored by :meth:`Index.search_id`. The global
descriptor runs the CNN's cached ONNX export (:meth:`GeMDescriptor.describe`, no PyTorch), its
session opened on the first query that needs it and kept by the :class:`Index`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from imagelearn.bof.vocabulary import Vocabulary
from imagelearn.core.bundle import BundleError
from imagelearn.core.errors import ParameterError
from imagelearn.core.execution import thread_map
from imagelearn.features import extract_features
from imagelearn.features.base import LocalFeatures
from imagelearn.retrieval.catalogue import Catalogue, ImageRecord, catalogue_tags
from imagelearn.retrieval.duplicates import NEAR_DUPLICATE_INLIERS, duplicate_groups
from imagelearn.retrieval.global_descriptors import GeMDescriptor
from imagelearn.retrieval.inverted_file import bag_of_words, score_postings
from imagelearn.retrieval.snapshot import Snapshot
from imagelearn.retrieval.storage import (
    Segment,
    read_global_index,
    read_index_manifest,
    read_removed_ids,
    read_segment,
)
from imagelearn.retrieval.tags import TagTable
from imagelearn.retrieval.verification import (
    Verification,
    batched_pairs_by_words,
    consistent_pairs,
    verify_pairs,
)

if TYPE_CHECKING:
    from scipy import sparse

MODES = ("local", "global", "hybrid")
#: Attempts to open a snapshot whose files a concurrent writer replaced meanwhile.
OPEN_ATTEMPTS = 5

ImageSource = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class Match:
    """One search result.

    Attributes
    ----------
    path : str
    image_id : int
    score : float
        Ranking similarity (tf-idf cosine, or global descriptor inner product).
    inliers : int
        RANSAC inliers of the verified homography; 0 when unverified or failed.
    verification : Verification or None
        The homography (query pixels -> database pixels) and inlier correspondences.
    """

    path: str
    image_id: int
    score: float
    inliers: int = 0
    verification: Verification | None = None

    @property
    def homography(self) -> np.ndarray | None:
        return None if self.verification is None else self.verification.homography

    def as_dict(self) -> dict[str, Any]:
        homography = self.homography
        return {
            "path": self.path,
            "score": round(float(self.score), 6),
            "inliers": int(self.inliers),
            "homography": None if homography is None else np.round(homography, 6).tolist(),
        }


@dataclass(frozen=True)
class Query:
    """A query as a search uses it, described once.

    Attributes
    ----------
    name : str
        The query's file path (an indexed image's, for :meth:`Index.search_id`), or
        ``"<array>"``.
    keypoints : ndarray of float32, shape (n_features, 4)
        x, y, size (query pixels) and angle (degrees) of its local features; empty when the
        search needs none.
    words : ndarray of int64, shape (n_features,)
        Visual word of each local feature.
    descriptor : ndarray of float32, shape (1, d), or None
        The global descriptor, whitened like the indexed ones; None when the search needs none.
    """

    name: str
    keypoints: np.ndarray
    words: np.ndarray
    descriptor: np.ndarray | None = None


@dataclass(frozen=True)
class SearchResult:
    """Ranked matches of one query.

    Attributes
    ----------
    query : str
    matches : list of Match
        Best first.
    timings : dict of str to float
        Milliseconds per stage: ``features_ms`` (local features and their words) and
        ``descriptor_ms`` (the global descriptor), which run at the same time, then
        ``ranking_ms`` and ``verification_ms`` (query expansion included); 0 for a stage the
        search skips.
    mode : str
        The mode searched ("local", "global" or "hybrid"; the default resolved).
    """

    query: str
    matches: list[Match]
    timings: dict[str, float] = field(default_factory=dict)
    mode: str = "local"

    def as_dict(self) -> dict[str, Any]:
        """``{"query", "mode", "timings", "results": [{"path", "score", "inliers",
        "homography"}, ...]}`` (timings in milliseconds, as :attr:`timings`)."""
        return {
            "query": self.query,
            "mode": self.mode,
            "timings": {stage: round(ms, 3) for stage, ms in self.timings.items()},
            "results": [match.as_dict() for match in self.matches],
        }

    def format(self) -> str:
        lines = [f"query: {self.query}"]
        for rank, match in enumerate(self.matches, 1):
            lines.append(
                f"{rank:3d}  score {match.score:.4f}  inliers {match.inliers:4d}  {match.path}"
            )
        return "\n".join(lines)


class Index:
    """A read-only snapshot of an index directory; open with :meth:`open`.

    Searching never blocks a concurrent ``add``/``remove``: the snapshot's files are never
    modified, and memory-mapped files stay readable even after a writer deletes them.
    """

    def __init__(self, snapshot: Snapshot, segments: list[Segment], removed: np.ndarray) -> None:
        self.directory = directory = snapshot.directory
        self._snapshot = snapshot
        self.params = snapshot.params
        self.segments = segments
        content = snapshot.content
        self.n_ids = int(content["next_id"])
        _check_ids(directory, self.n_ids, segments, removed)
        self._removed = np.zeros(self.n_ids, dtype=bool)
        self._removed[removed[removed < self.n_ids].astype(np.int64)] = True
        self._segment_of = np.full(self.n_ids, -1, dtype=np.int32)
        self._row_of = np.full(self.n_ids, -1, dtype=np.int64)
        for number, segment in enumerate(segments):
            ids = np.asarray(segment.ids, dtype=np.int64)
            self._segment_of[ids] = number
            self._row_of[ids] = np.arange(len(ids))
        self._global = None
        if content.get("global"):
            self._global = read_global_index(directory, content)
            if hasattr(self._global, "nprobe"):
                self._global.nprobe = 16
        # a query is described once, so its descriptor never goes into the embedding cache
        self._query_descriptor = GeMDescriptor(
            **{**snapshot.global_descriptor.get_params(), "cache_dir": ""}
        )
        self._catalogue = Catalogue(directory)
        self._detector = self.params.make_detector()

    @classmethod
    def open(cls, directory: str | os.PathLike) -> Index:
        """Open the current snapshot of the index at ``directory``.

        Raises
        ------
        BundleError
            Missing, corrupt, or from a newer imagelearn.
        """
        directory = Path(directory)
        for attempt in range(OPEN_ATTEMPTS):
            content = read_index_manifest(directory)
            try:
                snapshot = Snapshot(directory, content)
                segments = [read_segment(directory, name) for name in content["segments"]]
                return cls(snapshot, segments, read_removed_ids(directory, content))
            except FileNotFoundError as error:  # a writer replaced the snapshot meanwhile
                if attempt == OPEN_ATTEMPTS - 1:
                    raise BundleError(f"{directory}: index files are missing ({error})") from error
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the catalogue connection (so a writer can put the file back at rest);
        the snapshot's arrays stay mapped while the object lives."""
        self._catalogue.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def vocabulary(self) -> Vocabulary:
        """The fitted visual vocabulary the index assigns words with: its kind's fitted half
        (:func:`~imagelearn.bof.vocabulary.words_class`; ``assign``, ``assign_soft``,
        ``n_words_``, ``to_arrays``), read without scikit-learn."""
        return self._snapshot.vocabulary

    @property
    def n_images(self) -> int:
        """Images searchable in this snapshot."""
        return int(self._snapshot.content["n_images"])

    def info(self) -> dict[str, Any]:
        """Counts, parameters and sizes (bytes) of this snapshot."""
        content = self._snapshot.content
        postings_bytes = sum(
            s.postings.images.nbytes + s.postings.weights.nbytes for s in self.segments
        )
        geometry_bytes = sum(s.keypoints.nbytes + s.words.nbytes for s in self.segments)
        on_disk = sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())
        return {
            "path": str(self.directory),
            "images": self.n_images,
            "complete": bool(content["complete"]),
            "generation": int(content["generation"]),
            "segments": len(self.segments),
            "vocabulary": f"{self.params.vocabulary} {self._snapshot.vocabulary.n_words_} words",
            "detector": self.params.detector,
            "global": content["global"]["kind"] if content.get("global") else None,
            "features": int(sum(len(s.words) for s in self.segments)),
            "postings_bytes": int(postings_bytes),
            "geometry_bytes": int(geometry_bytes),
            "bytes_on_disk": int(on_disk),
            "bytes_per_image": int(on_disk / max(1, self.n_images)),
        }

    @property
    def content(self) -> dict[str, Any]:
        """The manifest's content of this snapshot (files, counts, parameters); do not modify."""
        return self._snapshot.content

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming this snapshot (see :attr:`Snapshot.fingerprint`): the key of
        what is computed from it and cached outside the index."""
        return self._snapshot.fingerprint

    def ids(self) -> np.ndarray:
        """Ids of the searchable images of this snapshot, ascending: (n_images,) int64."""
        return np.flatnonzero((self._segment_of >= 0) & ~self._removed)

    def records(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """Catalogue rows (path, content hash, sizes...) of the searchable images among ``ids``."""
        live = [int(i) for i in ids if 0 <= int(i) < self.n_ids and self._segment_of[int(i)] >= 0]
        records = self._catalogue.records([i for i in live if not self._removed[i]])
        return {i: records[i] for i in live if i in records}

    def global_descriptors(self, ids: Sequence[int]) -> np.ndarray | None:
        """The stored global descriptors of ``ids`` (whitened; IVF-PQ codes decoded):
        (len(ids), d) float32; None when the index holds none."""
        if self._global is None:
            return None
        if len(ids) == 0:
            return np.zeros((0, self._global.d), np.float32)
        stored_descriptor(self._global, int(ids[0]))  # gives an IVF index its id map
        return self._global.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def bags(self, ids: Sequence[int]) -> sparse.csr_matrix:
        """The tf-idf bags of visual words of ``ids``, L2-normalized: (len(ids), n_words)."""
        from scipy import sparse  # a search never needs it

        rows = [self._bag(int(i)) for i in ids]
        lengths = [len(words) for words, _ in rows]
        return sparse.csr_matrix(
            (
                np.concatenate([w for _, w in rows]) if rows else np.zeros(0, np.float32),
                np.concatenate([words for words, _ in rows]) if rows else np.zeros(0, np.int64),
                np.concatenate(([0], np.cumsum(lengths))),
            ),
            shape=(len(rows), self._snapshot.vocabulary.n_words_),
        )

    def tag_table(self) -> TagTable:
        """The tags of this snapshot's images in the catalogue (ImageNet classes; see
        :mod:`imagelearn.retrieval.tags`), queried in SQLite, never loaded whole."""
        return catalogue_tags(self.directory, (self._segment_of >= 0) & ~self._removed)

    def duplicate_groups(self, threshold: float = NEAR_DUPLICATE_INLIERS) -> list[list[int]]:
        """Groups of ids of near-duplicate pictures (re-encoded, resized, cropped copies: at
        least ``threshold`` of the smaller image's local features verified, by a change of
        scale and position; see :mod:`imagelearn.retrieval.duplicates`), largest first."""
        return duplicate_groups(self, threshold)

    def features(
        self, source: ImageSource, roi: tuple[int, int, int, int] | None = None
    ) -> LocalFeatures:
        """Local features of a query (file or array), restricted to ``roi`` = (x, y, w, h) pixels."""
        features = extract_features(
            [source], self._detector, n_jobs=1, cache_dir=False, strict=True
        )[0][0]
        if roi is not None:
            x, y, width, height = roi
            points = features.keypoints
            inside = (
                (points[:, 0] >= x)
                & (points[:, 0] < x + width)
                & (points[:, 1] >= y)
                & (points[:, 1] < y + height)
            )
            features = LocalFeatures(
                points[inside], features.descriptors[inside], features.image_shape
            )
        return features

    def _image_features(self, image_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keypoints (k, 4), words (k,), (height, width)) of an indexed image."""
        segment = self.segments[self._segment_of[image_id]]
        row = int(self._row_of[image_id])
        keypoints, words = segment.features(row)
        return np.asarray(keypoints), np.asarray(words), np.asarray(segment.sizes[row])

    def _bag(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        return bag_of_words(self._image_features(image_id)[1], self._snapshot.idf)

    def _local_ranking(
        self, words: np.ndarray, weights: np.ndarray, depth: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``depth`` ids by tf-idf score (images sharing at least one word), and their scores."""
        ids, scores = score_postings([s.postings for s in self.segments], words, weights)
        live = ~self._removed[ids]
        ids, scores = ids[live], scores[live]
        if len(ids) > depth:
            top = np.argpartition(-scores, depth - 1)[:depth]
            ids, scores = ids[top], scores[top]
        order = np.lexsort((ids, -scores))
        return ids[order], scores[order].astype(np.float64)

    def _global_ranking(self, descriptor: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``depth`` live ids by global descriptor inner product, and their similarities."""
        fetch = min(self._global.ntotal, depth + int(self._removed.sum()))
        if fetch == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        similarities, ids = self._global.search(descriptor, fetch)
        keep = (ids[0] >= 0) & ~self._removed[np.clip(ids[0], 0, None)]
        return ids[0][keep][:depth], similarities[0][keep][:depth]

    def _global_part(self, source: ImageSource, roi) -> np.ndarray:
        """The query's global descriptor, whitened like the indexed ones: (1, d) float32."""
        if roi is not None:
            from imagelearn.core.images import load_image

            image = source if isinstance(source, np.ndarray) else load_image(source, "RGB")
            x, y, width, height = roi
            source = image[y : y + height, x : x + width]
        descriptor = self._query_descriptor.describe(source)
        if self._snapshot.whitening is not None:
            descriptor = self._snapshot.whitening.transform(descriptor)
        return descriptor

    def _verify_candidates(
        self, query: Query, ids: list[int], threshold: float, min_inliers: int
    ) -> dict[int, Verification]:
        """Verify each of ``ids`` against ``query``: pairs and weak consistency for all at once,
        then a homography per image with enough consistent pairs."""
        stored = [self._image_features(image_id) for image_id in ids]
        images, query_rows, database_rows = batched_pairs_by_words(
            query.words, [words for _, words, _ in stored]
        )
        lengths = np.array([len(words) for _, words, _ in stored], dtype=np.int64)
        keypoints = (
            np.concatenate([points for points, _, _ in stored])
            if stored
            else np.zeros((0, 4), np.float32)
        )
        database_keypoints = keypoints[np.cumsum(lengths)[images] - lengths[images] + database_rows]
        consistent = consistent_pairs(
            query.keypoints[query_rows], database_keypoints, groups=images
        )
        images, query_rows = images[consistent], query_rows[consistent]
        database_keypoints = database_keypoints[consistent]
        bounds = np.searchsorted(images, np.arange(len(ids) + 1))
        verified = {}
        for position, image_id in enumerate(ids):
            pairs = slice(bounds[position], bounds[position + 1])
            pixels = max(2.0, threshold * float(stored[position][2].max()))
            verified[image_id] = verify_pairs(
                query.keypoints[query_rows[pairs], :2],
                database_keypoints[pairs, :2],
                pixels,
                min_inliers,
            )
        return verified

    def _describe_image(
        self,
        source: ImageSource,
        roi: tuple[int, int, int, int] | None,
        local: bool,
        global_descriptor: bool,
        timings: dict[str, float],
    ) -> Query:
        """An image's :class:`Query`: local features (and words), global descriptor, as asked;
        the two are computed at the same time on two threads (OpenCV and ONNX Runtime release
        the GIL), each part's milliseconds in ``timings``."""
        name = str(source) if not isinstance(source, np.ndarray) else "<array>"
        parts = {}
        if local:
            parts["features_ms"] = self._local_part
        if global_descriptor:
            parts["descriptor_ms"] = self._global_part
        done = thread_map(lambda part: _timed(part, source, roi), parts.values(), len(parts))
        described = {"features_ms": (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))}
        timings.update(features_ms=0.0, descriptor_ms=0.0)
        for key, (value, milliseconds) in zip(parts, done, strict=True):
            described[key], timings[key] = value, milliseconds
        keypoints, words = described["features_ms"]
        return Query(name, keypoints, words, described.get("descriptor_ms"))

    def _local_part(
        self, source: ImageSource, roi: tuple[int, int, int, int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A query's keypoints (n, 4) float32 and visual words (n,) int64."""
        features = self.features(source, roi)
        if not len(features):
            return features.keypoints, np.zeros(0, np.int64)
        return features.keypoints, np.asarray(
            self.vocabulary.assign(features.descriptors), np.int64
        )

    def _describe_stored(
        self, image_id: int, global_descriptor: bool, timings: dict[str, float]
    ) -> Query:
        """An indexed image's :class:`Query` from what the index stored; nothing is extracted."""
        if (
            not (0 <= image_id < self.n_ids and self._segment_of[image_id] >= 0)
            or (self._removed[image_id])
        ):
            raise ParameterError(
                "image_id", f"{self.directory}: no indexed image has id {image_id}"
            )
        started = time.perf_counter()
        keypoints, words, _ = self._image_features(image_id)
        name = self._catalogue.records([image_id])[image_id].path
        timings["features_ms"] = _elapsed(started)
        started = time.perf_counter()
        descriptor = stored_descriptor(self._global, image_id) if global_descriptor else None
        timings["descriptor_ms"] = _elapsed(started)
        return Query(name, keypoints, words.astype(np.int64), descriptor)

    def search(
        self,
        query: ImageSource,
        top: int = 20,
        *,
        mode: str | None = None,
        roi: tuple[int, int, int, int] | None = None,
        verify: bool = True,
        verify_top: int = 50,
        shortlist: int = 100,
        expand: bool = False,
        expand_top: int = 5,
        min_inliers: int = 10,
        ransac_threshold: float = 0.01,
    ) -> SearchResult:
        """Rank the indexed images by similarity to ``query``.

        Parameters
        ----------
        query : path-like or ndarray
            An image file or a uint8 array.
        top : int
            Results returned.
        mode : {"local", "global", "hybrid"} or None
            None: ``"hybrid"`` where the index holds global descriptors, else ``"local"``.
        roi : (x, y, w, h) or None
            Only the query's features inside this rectangle (pixels) are used.
        verify : bool
            Re-rank the top ``verify_top`` by RANSAC homography inliers (hybrid: the whole
            ``shortlist``).
        shortlist : int
            Candidates the global index proposes in hybrid mode.
        expand : bool
            Average query expansion with the ``expand_top`` best verified images (local and
            hybrid modes; implies ``verify``).
        min_inliers : int
            Inliers needed for a verified match.
        ransac_threshold : float
            RANSAC threshold as a fraction of the database image's longer side.

        Returns
        -------
        SearchResult

        Raises
        ------
        ParameterError
            Unknown mode, or global mode on an index without global descriptors.
        ValueError
            A query without local features where local features are needed.
        ImageReadError
            The query file cannot be read.
        """
        mode = self._resolved_mode(mode)
        timings: dict[str, float] = {}
        described = self._describe_image(
            query, roi, mode != "global" or verify or expand, mode != "local", timings
        )
        return self._search(
            described,
            top,
            mode,
            timings,
            verify=verify,
            verify_top=verify_top,
            shortlist=shortlist,
            expand=expand,
            expand_top=expand_top,
            min_inliers=min_inliers,
            ransac_threshold=ransac_threshold,
        )

    def search_id(
        self, image_id: int, top: int = 20, *, mode: str | None = None, **options: Any
    ) -> SearchResult:
        """Rank the indexed images by similarity to the indexed image ``image_id``.

        The query is described from what the index stored (its keypoints and words, its
        global descriptor), so nothing is extracted: the ranking is that of :meth:`search`
        with the image's file, in the time of the ranking and verification alone.

        Parameters
        ----------
        image_id : int
            :attr:`Match.image_id` of an earlier result.
        top : int
            Results returned.
        mode : {"local", "global", "hybrid"} or None
            As in :meth:`search`.
        **options
            ``verify``, ``verify_top``, ``shortlist``, ``expand``, ``expand_top``,
            ``min_inliers``, ``ransac_threshold``, as in :meth:`search`.

        Returns
        -------
        SearchResult
            ``query`` is the image's path.

        Raises
        ------
        ParameterError
            No image of this index has the id (or it was removed), an unknown mode, or global
            mode on an index without global descriptors.
        """
        mode = self._resolved_mode(mode)
        timings: dict[str, float] = {}
        described = self._describe_stored(int(image_id), mode != "local", timings)
        return self._search(described, top, mode, timings, **options)

    def _search(
        self,
        query: Query,
        top: int,
        mode: str,
        timings: dict[str, float],
        *,
        verify: bool = True,
        verify_top: int = 50,
        shortlist: int = 100,
        expand: bool = False,
        expand_top: int = 5,
        min_inliers: int = 10,
        ransac_threshold: float = 0.01,
    ) -> SearchResult:
        """Rank the indexed images against a described query (options as in :meth:`search`)."""
        top = max(1, int(top))
        verify = verify or expand
        if mode == "local" and len(query.words) == 0:
            raise ValueError(f"{query.name}: no local features found (blank, flat or tiny image?)")
        started = time.perf_counter()
        depth = max(top, verify_top if verify else 0)
        if mode == "local":
            ids, scores = self._local_ranking(*bag_of_words(query.words, self._snapshot.idf), depth)
        else:
            ids, scores = self._global_ranking(
                query.descriptor, shortlist if mode == "hybrid" else depth
            )
        timings["ranking_ms"] = _elapsed(started)
        started = time.perf_counter()
        verified: dict[int, Verification] = {}
        if verify and len(query.words):
            checks = (query, verified, ransac_threshold, min_inliers)
            n_verified = len(ids) if mode == "hybrid" else verify_top
            ids, scores = self._verified_ranking(ids, scores, n_verified, *checks)
            if expand and mode != "global":
                ids, scores = self._expanded_ranking(
                    ids,
                    bag_of_words(query.words, self._snapshot.idf),
                    verified,
                    expand_top,
                    depth,
                    min_inliers,
                )
                ids, scores = self._verified_ranking(ids, scores, verify_top, *checks)
        timings["verification_ms"] = _elapsed(started)
        ids, scores = ids[:top], scores[:top]
        records = self._catalogue.records(ids.tolist())
        matches = [
            Match(
                records[int(i)].path,
                int(i),
                float(s),
                verified[int(i)].inliers if int(i) in verified else 0,
                verified.get(int(i)),
            )
            for i, s in zip(ids, scores, strict=True)
        ]
        return SearchResult(query.name, matches, timings, mode)

    def _resolved_mode(self, mode: str | None) -> str:
        """``mode``, checked; None: hybrid where the index holds global descriptors, else local."""
        if mode is None:
            return "local" if self._global is None else "hybrid"
        if mode not in MODES:
            raise ParameterError("mode", f"unknown search mode {mode!r}; choose one of {MODES}")
        if mode != "local" and self._global is None:
            raise ParameterError(
                "mode", f"{self.directory}: built without global descriptors; use mode='local'"
            )
        return mode

    def _verified_ranking(self, ids, scores, n_verified, query, verified, threshold, min_inliers):
        """Verify the first ``n_verified`` ids (reusing ``verified``); verified ones first by inliers."""
        pending = [i for i in ids[:n_verified].tolist() if i not in verified]
        verified.update(self._verify_candidates(query, pending, threshold, min_inliers))
        inliers = np.array([verified[i].inliers if i in verified else 0 for i in ids.tolist()])
        order = np.lexsort((-scores, -inliers))
        return ids[order], scores[order]

    def _expanded_ranking(self, ids, query_bag, verified, expand_top, depth, min_inliers):
        """Re-query with the average of the query's bag and the best verified images' bags."""
        confirmed = [
            i for i in ids.tolist() if i in verified and verified[i].inliers >= min_inliers
        ]
        if not confirmed:
            return ids, np.zeros(len(ids))
        average = np.zeros(self._snapshot.vocabulary.n_words_, dtype=np.float32)
        for words, weights in [query_bag, *(self._bag(i) for i in confirmed[:expand_top])]:
            average[words] += weights
        words = np.flatnonzero(average)
        return self._local_ranking(words, average[words] / np.linalg.norm(average[words]), depth)


def stored_descriptor(global_index: faiss.Index, image_id: int) -> np.ndarray:
    """The descriptor ``global_index`` holds for ``image_id`` (IVF-PQ codes decoded): (1, d).

    An IVF index is given its map from ids to codes on the first call.
    """
    direct_map = getattr(global_index, "direct_map", None)  # IVF indexes only
    if direct_map is not None and direct_map.type == faiss.DirectMap.NoMap:
        global_index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return global_index.reconstruct(int(image_id)).reshape(1, -1)


def _check_ids(directory: Path, n_ids: int, segments: list[Segment], removed: np.ndarray) -> None:
    """Refuse ids beyond the manifest's ``next_id``, and a ``next_id`` beyond the ids stored.

    Tables of ``next_id`` entries are allocated per open index, so a manifest claiming far
    more ids than its files hold would make a small index allocate without bound.
    """
    stored = sum(len(segment.ids) for segment in segments) + len(removed)
    largest = max((int(segment.ids.max()) for segment in segments if len(segment.ids)), default=-1)
    if largest >= n_ids or n_ids > stored:
        raise BundleError(
            f"{directory}: not a valid index: next_id {n_ids} does not match the "
            f"{stored} ids its files hold (largest {largest})"
        )


def _elapsed(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


def _timed(function: Callable[..., Any], *arguments: Any) -> tuple[Any, float]:
    """``function(*arguments)`` and the milliseconds it took."""
    started = time.perf_counter()
    return function(*arguments), _elapsed(started)


__all__ = [
    "MODES",
    "Index",
    "Match",
    "SearchResult",
]
