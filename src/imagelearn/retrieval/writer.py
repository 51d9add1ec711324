"""Writing an instance-retrieval index: build, add, remove, merge; each commit a new snapshot.

>>> from imagelearn.retrieval import add_images, build_index
>>> build_index(paths, "photos.index")  # doctest: +SKIP
>>> add_images("photos.index", more_paths)  # doctest: +SKIP

The local path: RootSIFT features -> a large visual vocabulary (vocabulary tree by default,
assignment by tree descent) -> tf-idf inverted file; keypoints and words are kept per image
for spatial verification. The optional global path: GeM CNN descriptors, PCA-whitened, in a
FAISS index; with ``tags``, the same network pass gives each image its ImageNet tags, written
with its catalogue row (:mod:`imagelearn.retrieval.tags`). Every ``add`` (and ``tag``) ends by
keeping the index's 2-D map up to date (:mod:`imagelearn.retrieval.image_map`). See
:mod:`imagelearn.retrieval.storage` for the directory layout and
:class:`imagelearn.retrieval.Index` for searching.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from safetensors.numpy import save_file

from imagelearn.bof.vocabulary import Vocabulary
from imagelearn.core.bundle import (
    BundleError,
    clean_leftovers,
    replace_directory,
    staging_directory,
)
from imagelearn.core.execution import get_backend
from imagelearn.core.kmeans import chunks
from imagelearn.core.progress import progress, progress_bar
from imagelearn.features import extract_features
from imagelearn.features.base import LocalFeatures
from imagelearn.retrieval.catalogue import Catalogue, ImageRecord, now
from imagelearn.retrieval.global_descriptors import make_global_index
from imagelearn.retrieval.image_map import ImageMap, stored_map, updated_map
from imagelearn.retrieval.inverted_file import Postings, bag_of_words, inverse_document_frequency
from imagelearn.retrieval.params import IndexParams
from imagelearn.retrieval.snapshot import VOCABULARY_PREFIX, Snapshot
from imagelearn.retrieval.storage import (
    VOCABULARY_NAME,
    IndexExistsError,
    Segment,
    WriteLock,
    collect_garbage,
    read_global_index,
    read_index_manifest,
    read_removed_ids,
    read_segment,
    write_array,
    write_index_manifest,
    write_segment,
)
from imagelearn.retrieval.tags import Tag, describe_with_classes
from imagelearn.retrieval.whitening import PCAWhitening

#: Small segments (under half :data:`SEGMENT_POSTINGS` postings) beyond this many are merged
#: by the next ``add``.
MAX_SEGMENTS = 16
#: Postings an automatic merge (and a sharded build's merge, :mod:`.shards`) writes into one
#: segment, at most: what the writer holds in memory for it is bounded by this (about 130
#: bytes per posting at the peak, keypoints and words included: ~2.2 GB), not by the
#: collection.
SEGMENT_POSTINGS = 2**24
#: Whitening is learned only on collections with at least this many images.
MIN_IMAGES_FOR_WHITENING = 256
#: Descriptors assigned to words at once: one step of the progress bar.
ASSIGN_ROWS = 2**16


@dataclass
class AddReport:
    """What an ``add`` (or ``build``) did.

    Attributes
    ----------
    added : list of str
        Paths indexed now.
    duplicates : list of (path, indexed_path)
        Files whose content was already indexed (under ``indexed_path``); not added again.
    skipped : list of (path, reason)
        Unreadable files.
    """

    added: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"added: {len(self.added)}"]
        resumed = sum(1 for path, existing in self.duplicates if path == existing)
        if resumed:
            lines.append(f"already indexed: {resumed}")
        for path, existing in self.duplicates:
            if path != existing:
                lines.append(f"duplicate: {path} (same content as {existing})")
        lines += [f"skipped: {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


@dataclass
class TagReport:
    """What :meth:`IndexWriter.tag` did.

    Attributes
    ----------
    tagged : int
        Images given their ImageNet tags now.
    skipped : list of (path, reason)
        Images whose file is gone or holds other content than was indexed.
    mapped : int
        Images on the index's 2-D map.
    """

    tagged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    mapped: int = 0

    def format(self) -> str:
        lines = [f"tagged: {self.tagged}"]
        lines += [f"skipped: {path}: {reason}" for path, reason in self.skipped]
        lines.append(f"on the map: {self.mapped}")
        return "\n".join(lines)


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


class IndexWriter:
    """Adds and removes images under the index's write lock; each commit swaps the manifest.

    Use as a context manager; :func:`build_index`, :func:`add_images` and
    :func:`remove_images` are the usual entry points.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        n_jobs: int | None = -1,
        cache_dir: Any = None,
        known: dict[str, tuple[np.ndarray, list[Tag] | None]] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir
        self.known = known or {}

    def __enter__(self) -> IndexWriter:
        self._lock = WriteLock(self.directory).__enter__()
        try:
            self.content = read_index_manifest(self.directory)
            self.snapshot = Snapshot(self.directory, self.content)
            self.catalogue = Catalogue(self.directory, writable=True)
            removed = self._removed_ids()
            self.catalogue.reconcile(self.content["next_id"], removed)
            collect_garbage(self.directory, self.content)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.catalogue.close()
        self._lock.__exit__(*exc_info)

    def _removed_ids(self) -> np.ndarray:
        return read_removed_ids(self.directory, self.content)

    def _commit(self, **changes: Any) -> None:
        self.content = {**self.content, **changes, "generation": self.content["generation"] + 1}
        write_index_manifest(self.directory, self.content)

    def add(self, paths: Sequence[str | os.PathLike]) -> AddReport:
        """Index image files not indexed yet, one committed segment per ``batch_size`` images."""
        report = AddReport()
        pending: list[tuple[str, str]] = []
        seen: dict[str, str] = {}
        for source in progress(paths, "hashing"):
            path = str(Path(source).resolve())
            try:
                digest = file_sha256(path)
            except OSError as error:
                report.skipped.append((path, f"cannot read the file ({error.strerror or error})"))
                continue
            if digest in seen:
                report.duplicates.append((path, seen[digest]))
                continue
            seen[digest] = path
            pending.append((path, digest))
        indexed = self.catalogue.live_hashes([digest for _, digest in pending])
        report.duplicates += [
            (path, indexed[digest]) for path, digest in pending if digest in indexed
        ]
        pending = [(path, digest) for path, digest in pending if digest not in indexed]
        if get_backend().distributed:  # workers elsewhere: one shard per block, one commit
            from imagelearn.retrieval.shards import add_sharded

            add_sharded(self, pending, report)
        else:
            batch_size = max(1, int(self.snapshot.params.batch_size))
            for start in range(0, len(pending), batch_size):
                self._add_batch(pending[start : start + batch_size], report)
            from imagelearn.retrieval.shards import remove_shards

            remove_shards(self.directory)  # of a distributed build interrupted before: done now
        self._merge_small_segments()
        self.update_map()
        return report

    @property
    def tagging(self) -> bool:
        """Whether this index tags its images (``IndexParams.tags``, which ``tag`` turns on)."""
        return bool(self.content["params"].get("tags"))

    def _add_batch(self, batch: list[tuple[str, str]], report: AddReport) -> None:
        params = self.snapshot.params
        features, skipped = extract_features(
            [path for path, _ in batch],
            params.make_detector(),
            n_jobs=self.n_jobs,
            cache_dir=self.cache_dir,
            description="local features",
        )
        report.skipped += skipped
        kept = [(p, d, f) for (p, d), f in zip(batch, features, strict=True) if f is not None]
        if not kept:
            return
        first_id = int(self.content["next_id"])
        ids = np.arange(first_id, first_id + len(kept), dtype=np.uint32)
        segment = self._segment(ids, [f for _, _, f in kept])
        write_segment(self.directory, segment)
        changes: dict[str, Any] = {}
        descriptors, tags = self._network_pass([p for p, _, _ in kept])
        if descriptors is not None:
            index = read_global_index(self.directory, self.content)
            self._add_to_global(index, ids, descriptors)
            changes["global"] = self._write_global(index)
        added = now()
        self.catalogue.insert(
            [
                ImageRecord(
                    int(i),
                    p,
                    d,
                    Path(p).stat().st_size,
                    f.image_shape[0],
                    f.image_shape[1],
                    len(f),
                    added,
                    segment.name,
                )
                for i, (p, d, f) in zip(ids, kept, strict=True)
            ],
            tags=[
                (int(i), tag) for i, image_tags in zip(ids, tags, strict=True) for tag in image_tags
            ]
            if tags is not None
            else (),
        )
        self._commit(
            segments=[*self.content["segments"], segment.name],
            next_id=first_id + len(kept),
            n_images=self.content["n_images"] + len(kept),
            **changes,
        )
        report.added += [p for p, _, _ in kept]

    def _segment(self, ids: np.ndarray, features: list[LocalFeatures]) -> Segment:
        """Quantise the features of a batch and lay them out as a segment."""
        counts = np.array([len(f) for f in features], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(counts)))
        words = assign_words(self.snapshot.vocabulary, features, "assigning words")
        bags = [
            bag_of_words(words[offsets[i] : offsets[i + 1]], self.snapshot.idf)
            for i in range(len(features))
        ]
        return Segment(
            name=f"g{self.content['generation'] + 1:06d}",
            ids=ids,
            sizes=np.array([f.image_shape for f in features], dtype=np.int32).reshape(-1, 2),
            keypoint_offsets=offsets,
            keypoints=np.concatenate([f.keypoints for f in features])
            .astype(np.float32)
            .reshape(-1, 4),
            words=words.astype(np.uint32),
            postings=Postings.from_bags(ids, bags, self.snapshot.vocabulary.n_words_),
        )

    def _network_pass(self, paths: list[str]) -> tuple[np.ndarray | None, list[list[Tag]] | None]:
        """Global descriptors (where the index holds them) and ImageNet tags (where it tags)
        of ``paths``, from one network pass; those of the training sample were computed."""
        wants_global = bool(self.content.get("global"))
        if not (wants_global or self.tagging):
            return None, None
        missing = [
            p for p in paths if p not in self.known or (self.tagging and self.known[p][1] is None)
        ]
        described = dict(self.known)
        if missing:
            descriptor = self.snapshot.global_descriptor
            if self.tagging:
                descriptors, tags = describe_with_classes(descriptor, missing)
            else:
                descriptors, tags = descriptor.transform(missing), [None] * len(missing)
            described.update(zip(missing, zip(descriptors, tags, strict=True), strict=True))
        return (
            np.stack([described[p][0] for p in paths]) if wants_global else None,
            [described[p][1] for p in paths] if self.tagging else None,
        )

    def _add_to_global(self, index: faiss.Index, ids: np.ndarray, descriptors: np.ndarray) -> None:
        """Add the (unwhitened) global descriptors of ``ids`` to ``index`` (the global index)."""
        if self.snapshot.whitening is not None:
            descriptors = self.snapshot.whitening.transform(descriptors)
        index.add_with_ids(descriptors, ids.astype(np.int64))

    def _write_global(self, index: faiss.Index) -> dict[str, Any]:
        """Write the global index for the next commit; returns the manifest's entry."""
        current = self.content["global"]
        name = f"global-{self.content['generation'] + 1:06d}.faiss"
        temporary = self.directory / f".{name}.tmp"
        faiss.write_index(index, str(temporary))
        os.replace(temporary, self.directory / name)
        return {**current, "file": name}

    def tag(self) -> TagReport:
        """Give the indexed images without ImageNet tags theirs, and turn tagging on for the
        images added later (``IndexParams.tags``); then update the map.

        One transaction per ``batch_size`` images: an interrupted ``tag`` keeps what it did.
        Images whose file is gone or changed since it was indexed are skipped.

        Raises
        ------
        ParameterError
            The global backbone has no ImageNet classifier of one linear layer.
        FileNotFoundError
            Its ImageNet weights are not on this machine and cannot be fetched.
        """
        report = TagReport()
        pending = self.catalogue.untagged("imagenet", int(self.content["next_id"]))
        batch_size = max(1, int(self.snapshot.params.batch_size))
        descriptor = self.snapshot.global_descriptor
        for start in progress(range(0, len(pending), batch_size), "tagging", unit="batch"):
            batch = []
            for image_id, path, digest in pending[start : start + batch_size]:
                try:
                    same = file_sha256(path) == digest
                except OSError as error:
                    report.skipped.append(
                        (path, f"cannot read the file ({error.strerror or error})")
                    )
                    continue
                if not same:
                    report.skipped.append((path, "changed since it was indexed"))
                    continue
                batch.append((image_id, path))
            if not batch:
                continue
            _, tags = describe_with_classes(descriptor, [path for _, path in batch])
            self.catalogue.insert_tags(
                [
                    (image_id, t)
                    for (image_id, _), image_tags in zip(batch, tags, strict=True)
                    for t in image_tags
                ]
            )
            report.tagged += len(batch)
        if not self.tagging:
            self._commit(params={**self.content["params"], "tags": True})
        report.mapped = len(self.update_map().ids)
        return report

    def update_map(self) -> ImageMap:
        """Bring the index's 2-D map up to date with its images (see
        :func:`~imagelearn.retrieval.image_map.updated_map`); commits when it changed."""
        from imagelearn.retrieval.index import Index

        with Index.open(self.directory) as reader:  # this writer's last commit: it holds the lock
            previous = stored_map(reader)
            current = updated_map(reader, previous)
        if previous is not None and np.array_equal(previous.ids, current.ids):
            return current
        name = f"map-{self.content['generation'] + 1:06d}.safetensors"
        current.save(self.directory / name)
        self._commit(map=name)
        return current

    def remove(self, paths: Sequence[str | os.PathLike]) -> tuple[list[str], list[str]]:
        """Remove images by path; returns (removed paths, paths not in the index)."""
        wanted = [str(Path(p).resolve()) for p in paths]
        found = self.catalogue.ids_of(wanted)
        ids = [i for path in wanted for i in found[path]]
        missing = [path for path in wanted if not found[path]]
        if ids:
            removed = np.union1d(self._removed_ids(), np.asarray(ids, np.uint32)).astype(np.uint32)
            name = f"removed-{self.content['generation'] + 1:06d}.npy"
            write_array(self.directory / name, removed)
            self._commit(removed=name, n_images=self.content["n_images"] - len(ids))
            self.catalogue.mark_removed(ids)
        return [path for path in wanted if found[path]], missing

    def _merge_small_segments(self) -> None:
        """Past :data:`MAX_SEGMENTS` small segments (under half :data:`SEGMENT_POSTINGS`
        postings), merge the smallest of them into one of at most ``SEGMENT_POSTINGS``."""
        sizes = {
            name: len(read_segment(self.directory, name).postings.images)
            for name in self.content["segments"]
        }
        small = sorted(
            (n for n, size in sizes.items() if size < SEGMENT_POSTINGS // 2), key=sizes.get
        )
        if len(small) <= MAX_SEGMENTS:
            return
        chosen, total = [], 0
        for name in small:  # any two small ones fit
            if total + sizes[name] > SEGMENT_POSTINGS:
                break
            chosen.append(name)
            total += sizes[name]
        self.merge(chosen)

    def merge(self, names: Sequence[str] | None = None) -> None:
        """Rewrite segments (``names``; default all) as one, in the place of the first of them,
        dropping removed images' postings and keypoints."""
        removed = set(self._removed_ids().tolist())
        wanted = set(self.content["segments"] if names is None else names)
        chosen = [n for n in self.content["segments"] if n in wanted]
        if not chosen:
            return
        segments = [read_segment(self.directory, name) for name in chosen]
        ids, sizes, bags, keypoints, words = [], [], [], [], []
        for segment in progress(segments, "merging segments", unit="segment"):
            for row, image_id in enumerate(segment.ids.tolist()):
                if image_id in removed:
                    continue
                image_keypoints, image_words = segment.features(row)
                ids.append(image_id)
                sizes.append(segment.sizes[row])
                keypoints.append(np.asarray(image_keypoints))
                words.append(np.asarray(image_words))
                bags.append(bag_of_words(words[-1], self.snapshot.idf))
        counts = np.array([len(w) for w in words], dtype=np.int64)
        merged = Segment(
            name=f"g{self.content['generation'] + 1:06d}",
            ids=np.asarray(ids, np.uint32),
            sizes=np.asarray(sizes, np.int32).reshape(-1, 2),
            keypoint_offsets=np.concatenate(([0], np.cumsum(counts))),
            keypoints=np.concatenate(keypoints) if keypoints else np.zeros((0, 4), np.float32),
            words=np.concatenate(words) if words else np.zeros(0, np.uint32),
            postings=Postings.from_bags(ids, bags, self.snapshot.vocabulary.n_words_),
        )
        write_segment(self.directory, merged)
        first = self.content["segments"].index(chosen[0])
        kept = [n for n in self.content["segments"] if n not in chosen]
        # removed ids stay listed: the global index holds them
        self._commit(segments=[*kept[:first], merged.name, *kept[first:]])
        collect_garbage(self.directory, self.content)

    def finish(self) -> None:
        """Mark an interrupted-resumable build as complete."""
        self._commit(complete=True)


def assign_words(
    vocabulary: Vocabulary, features: Sequence[LocalFeatures], description: str
) -> np.ndarray:
    """Word of every descriptor of ``features``, image after image: (n_descriptors,) int64.

    Assigned :data:`ASSIGN_ROWS` descriptors at a time, counted by a progress bar (a batch of
    an index build holds hundreds of thousands).
    """
    described = [f.descriptors for f in features if len(f)]
    if not described:
        return np.zeros(0, np.int64)
    descriptors = np.concatenate(described)
    with progress_bar(description, len(descriptors), " descriptors", unit_scale=True) as bar:
        words = []
        for rows in chunks(len(descriptors), ASSIGN_ROWS):
            words.append(vocabulary.assign(descriptors[rows]))
            bar.update(rows.stop - rows.start)
    return np.concatenate(words)


def _training_sample(
    paths: Sequence[str], params: IndexParams, n_jobs: int | None, cache_dir: Any
) -> tuple[list[str], list[LocalFeatures]]:
    """A seeded sample of readable training images and their features."""
    rng = np.random.default_rng(0)
    chosen = sorted(rng.permutation(len(paths))[: params.train_images].tolist())
    sample = [paths[i] for i in chosen]
    features, _ = extract_features(
        sample,
        params.make_detector(),
        n_jobs=n_jobs,
        cache_dir=cache_dir,
        description="training features",
    )
    kept = [(p, f) for p, f in zip(sample, features, strict=True) if f is not None and len(f)]
    return [p for p, _ in kept], [f for _, f in kept]


def _create(
    directory: Path, paths: Sequence[str], params: IndexParams, n_jobs: int | None, cache_dir: Any
) -> dict[str, tuple[np.ndarray, list[Tag] | None]]:
    """Train the vocabulary (and global whitening) on a sample; write an empty index.

    Returns the global descriptors (and tags, with ``params.tags``) computed for the sample,
    by path (empty without global descriptors).
    """
    sample_paths, sample = _training_sample(paths, params, n_jobs, cache_dir)
    if not sample:
        raise ValueError(
            f"none of the {min(len(paths), params.train_images)} training images gave "
            f"{params.detector} features (unreadable, or too small or flat)"
        )
    rng = np.random.default_rng(0)
    descriptors = np.concatenate(
        [
            f.descriptors[rng.permutation(len(f))[: params.train_descriptors_per_image]]
            for f in sample
        ]
    )
    vocabulary = params.make_vocabulary().fit(descriptors)
    word_lists = np.split(
        assign_words(vocabulary, sample, "assigning words (training)"),
        np.cumsum([len(f) for f in sample])[:-1],
    )
    arrays = {
        f"{VOCABULARY_PREFIX}{name}": np.asarray(array)
        for name, array in vocabulary.to_arrays().items()
    }
    arrays["idf"] = inverse_document_frequency(word_lists, vocabulary.n_words_)
    global_content, known = None, {}
    if params.global_descriptor:
        global_content, whitening, known = _create_global(
            directory, sample_paths, len(paths), params
        )
        if whitening is not None:
            arrays.update(whitening.to_arrays())
    save_file(
        {k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(directory / VOCABULARY_NAME)
    )
    write_index_manifest(
        directory,
        {
            "params": params.to_dict(),
            "complete": False,
            "generation": 0,
            "next_id": 0,
            "n_images": 0,
            "segments": [],
            "removed": None,
            "global": global_content,
            "n_words": vocabulary.n_words_,
        },
    )
    return known


def _create_global(
    directory: Path, sample_paths: list[str], expected_size: int, params: IndexParams
) -> tuple[dict[str, Any], PCAWhitening | None, dict[str, tuple[np.ndarray, list[Tag] | None]]]:
    if params.tags:
        descriptors, tags = describe_with_classes(params.make_global(), sample_paths)
    else:
        descriptors = params.make_global().transform(sample_paths, "global descriptors (training)")
        tags = [None] * len(sample_paths)
    known = dict(zip(sample_paths, zip(descriptors, tags, strict=True), strict=True))
    whitening = None
    if params.whiten_dimensions and len(descriptors) >= MIN_IMAGES_FOR_WHITENING:
        whitening = PCAWhitening(params.whiten_dimensions).fit(descriptors)
        descriptors = whitening.transform(descriptors)
    index = make_global_index(descriptors.shape[1], expected_size, descriptors)
    name = "global-000000.faiss"
    faiss.write_index(index, str(directory / name))
    content = {"file": name, "dimension": int(descriptors.shape[1]), "kind": type(index).__name__}
    return content, whitening, known


def build_index(
    images: Sequence[str | os.PathLike],
    directory: str | os.PathLike,
    params: IndexParams | None = None,
    *,
    overwrite: bool = False,
    n_jobs: int | None = -1,
    cache_dir: Any = None,
) -> AddReport:
    """Build an index of ``images`` in ``directory``, or resume an interrupted build there.

    Parameters
    ----------
    images : sequence of path-like
    directory : path-like
        The index directory. An unfinished build there is resumed (its own parameters win);
        a finished index is refused unless ``overwrite``.
    params : IndexParams, optional
    overwrite : bool
        Replace a finished index at ``directory``: the new one is built in a sibling staging
        directory and swapped in atomically (:func:`~imagelearn.core.bundle.replace_directory`),
        so the old one stays whole and searchable until then, and a crash leaves it there.
    n_jobs : int or None
        Processes for feature extraction (-1: all cores).
    cache_dir : path-like, None or False
        Feature cache (see :func:`imagelearn.features.extract_features`).

    Returns
    -------
    AddReport

    Raises
    ------
    ValueError
        No images, or none with features.
    IndexExistsError
        ``directory`` holds a finished index (without ``overwrite``); a :class:`BundleError`.
    BundleError
        ``directory`` holds something other than an index, or a corrupt index.
    """
    directory = Path(directory)
    paths = [str(Path(p).resolve()) for p in images]
    if not paths:
        raise ValueError("no images to index")
    params = params or IndexParams()
    known: dict[str, tuple[np.ndarray, list[Tag] | None]] = {}
    clean_leftovers(directory)
    with WriteLock(directory):
        if (directory / "manifest.json").exists():
            content = read_index_manifest(directory)
            if content["complete"] and not overwrite:
                raise IndexExistsError(directory)
            if content["complete"]:
                return _rebuild_beside(directory, paths, params, n_jobs, cache_dir)
        elif directory.exists():
            _clear_unfinished_creation(directory)
        if not (directory / "manifest.json").exists():
            known = _create(directory, paths, params, n_jobs, cache_dir)
    with IndexWriter(directory, n_jobs, cache_dir, known) as writer:
        report = writer.add(paths)
        writer.finish()
    return report


def _clear_unfinished_creation(directory: Path) -> None:
    """Delete what an interrupted :func:`_create` left; refuse a folder holding anything else."""
    ours = [
        p for p in directory.iterdir() if p.name == VOCABULARY_NAME or p.name.startswith("global-")
    ]
    others = [p for p in directory.iterdir() if p.name != ".lock" and p not in ours]
    if others:
        raise BundleError(f"{directory}: exists and is not an index; choose another output folder")
    for path in ours:
        path.unlink()


def _rebuild_beside(
    directory: Path, paths: list[str], params: IndexParams, n_jobs: int | None, cache_dir: Any
) -> AddReport:
    """Build a new index in a staging sibling of ``directory``, then swap it in atomically.

    Called under ``directory``'s write lock, so no writer changes the old index meanwhile.
    """
    staging = staging_directory(directory)
    try:
        report = build_index(paths, staging, params, n_jobs=n_jobs, cache_dir=cache_dir)
        replace_directory(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def add_images(
    directory: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    *,
    n_jobs: int | None = -1,
    cache_dir: Any = None,
) -> AddReport:
    """Add images to an existing index (duplicates by content are detected and skipped)."""
    with IndexWriter(directory, n_jobs, cache_dir) as writer:
        return writer.add(images)


def remove_images(
    directory: str | os.PathLike, paths: Sequence[str | os.PathLike]
) -> tuple[list[str], list[str]]:
    """Remove images by path; returns (removed paths, paths not in the index)."""
    with IndexWriter(directory) as writer:
        return writer.remove(paths)


def tag_index(directory: str | os.PathLike) -> TagReport:
    """Tag the images of an index built without tags, and keep tagging the images added to
    it; also give it its 2-D map (see :meth:`IndexWriter.tag`)."""
    with IndexWriter(directory) as writer:
        return writer.tag()
