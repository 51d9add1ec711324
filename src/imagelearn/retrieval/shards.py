"""Sharded index building on a distributed engine: one shard per block, one merge, one commit.

When the engine's workers are other machines (``engine="ray"``), :meth:`IndexWriter.add
<imagelearn.retrieval.writer.IndexWriter.add>` hands its new images to :func:`add_sharded`:

1. The images are cut into blocks (:func:`shard_images` per block, fixed by their number, so a
   rerun cuts the same blocks). Each block runs on a worker (:class:`ShardBuilder`, through
   :func:`~imagelearn.core.execution.map_images`): it reads the index's vocabulary once per
   process, extracts the local features (through the feature cache), assigns the words, and
   writes **one shard**, ``INDEX/shards/<key>.safetensors`` (atomically: a temporary file and a
   rename), holding the tf-idf bags, keypoints and words of the readable images (plus their
   raw global descriptors when the index has them), and in its header the path, content hash
   (SHA-256 of the bytes the worker read) and size of every image, and the reason of every
   unreadable one. ``<key>`` is the SHA-256 of the block's paths and the index parameters.
   With ImageNet tags (``IndexParams.tags``), the same network pass gives each image its tags,
   kept in the header too. The network runs on the inference engine chosen for the whole
   build, not for the block (:func:`build_engine`).
2. A block whose shard is already there is not computed again: a driver killed mid-build and
   run again with the same command does only the rest; a block retried after its worker died
   rewrites the same shard.
3. The driver first checks, from the shards' headers and by content hash, that every new
   image is in exactly one shard (or reported unreadable) and nothing else is: otherwise
   :class:`ShardMismatchError`, and the shards that disagree are deleted so that the next run
   recomputes them. Then it streams the shards, in block order and one at a time, into
   segments of at most :data:`~imagelearn.retrieval.writer.SEGMENT_POSTINGS` postings, each
   written (with its catalogue rows, and its global descriptors added to the in-memory global
   index) as soon as it is full, and commits them all in one manifest swap: the driver's
   memory holds one shard and one segment, not the collection's features (the per-image
   bookkeeping, paths and hashes, and the global index itself do grow with it). A crash
   before the swap leaves only unnamed segments and uncommitted catalogue rows, which the
   next writer deletes. The shards are deleted after the commit.

Ids follow the images' order, as the local build gives them, so the same collection indexed
on either engine has the same catalogue and the same search results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from imagelearn.core.bundle import BundleError, member_path
from imagelearn.core.execution import Failed, map_images
from imagelearn.core.progress import progress
from imagelearn.retrieval.catalogue import ImageRecord, now
from imagelearn.retrieval.inverted_file import Postings, bag_of_words
from imagelearn.retrieval.storage import VOCABULARY_NAME, Segment, read_index_manifest
from imagelearn.retrieval.tags import Tag

if TYPE_CHECKING:
    from imagelearn.retrieval.global_descriptors import GeMDescriptor
    from imagelearn.retrieval.snapshot import Snapshot
    from imagelearn.retrieval.writer import AddReport, IndexWriter

SHARDS_DIR = "shards"
#: Blocks a build is cut into, at least (each at most the index's ``batch_size`` images).
MIN_BLOCKS = 64
#: Version of the shard layout, part of each shard's key.
SHARD_VERSION = 1

logger = logging.getLogger(__name__)


class ShardMismatchError(BundleError):
    """The shards of a build do not hold every new image exactly once (by content hash): an
    image changed while the build ran, or a shard is stale. The disagreeing shards were
    deleted; running the same build again recomputes them."""


class ShardRow(NamedTuple):
    """What a worker returns for one readable image of its block: its shard and row there."""

    shard: str
    row: int


def shard_images(n_images: int, batch_size: int) -> int:
    """Images per block: at least :data:`MIN_BLOCKS` blocks, at most ``batch_size`` each."""
    return max(1, min(batch_size, math.ceil(n_images / MIN_BLOCKS)))


def shard_key(paths: Sequence[str], params: dict[str, Any]) -> str:
    """The name of the shard of ``paths`` under the index parameters ``params``."""
    digest = hashlib.sha256(json.dumps([SHARD_VERSION, params], sort_keys=True).encode())
    for path in paths:
        digest.update(path.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


_SNAPSHOTS: dict[tuple[str, int, int, int], Snapshot] = {}


def worker_snapshot(directory: Path) -> Snapshot:
    """The index's snapshot (vocabulary, idf, global descriptor), loaded once per process and
    vocabulary file."""
    from imagelearn.retrieval.snapshot import Snapshot

    status = member_path(directory, VOCABULARY_NAME, what="index").stat()
    key = (str(directory), status.st_ino, status.st_size, status.st_mtime_ns)
    if key not in _SNAPSHOTS:
        _SNAPSHOTS.clear()  # one index at a time per worker
        _SNAPSHOTS[key] = Snapshot(directory, read_index_manifest(directory))
    return _SNAPSHOTS[key]


@dataclass(frozen=True)
class ShardBuilder:
    """The batch function of a block: features, words, bags, one shard written (see the
    module docstring). Picklable; holds only paths and settings (``n_images``: the whole
    build's, for the choice of the network's inference engine)."""

    directory: str
    cache_dir: Any
    n_images: int

    def __call__(self, paths: list[str]) -> list[ShardRow | Failed]:
        snapshot = worker_snapshot(Path(self.directory))
        key = shard_key(paths, snapshot.params.to_dict())
        path = shard_path(Path(self.directory), key)
        if not path.is_file():
            _write_shard(path, self._compute(snapshot, paths))
        return _outcomes(key, read_shard_table(path), paths)

    def _compute(self, snapshot: Snapshot, paths: list[str]) -> dict[str, Any]:
        from imagelearn.features.extract import map_features
        from imagelearn.retrieval.writer import assign_words, file_sha256

        result = map_features(
            paths,
            snapshot.params.make_detector(),
            n_jobs=1,
            cache_dir=self.cache_dir,
            description="shard features",
            engine="local",
        )
        kept = [paths[index] for index in result.kept]
        features = result.values
        counts = np.array([len(f) for f in features], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(counts)))
        words = assign_words(snapshot.vocabulary, features, "shard words")
        bags = [
            bag_of_words(words[offsets[i] : offsets[i + 1]], snapshot.idf)
            for i in range(len(features))
        ]
        arrays = {
            "sizes": np.array([f.image_shape for f in features], np.int32).reshape(-1, 2),
            "keypoint_offsets": offsets,
            "keypoints": (
                np.concatenate([f.keypoints for f in features]).astype(np.float32).reshape(-1, 4)
                if features
                else np.zeros((0, 4), np.float32)
            ),
            "words": words.astype(np.uint32),
            "bag_offsets": np.concatenate(([0], np.cumsum([len(w) for w, _ in bags]))).astype(
                np.int64
            ),
            "bag_words": (np.concatenate([w for w, _ in bags]) if bags else np.zeros(0)).astype(
                np.int64
            ),
            "bag_weights": (np.concatenate([v for _, v in bags]) if bags else np.zeros(0)).astype(
                np.float32
            ),
        }
        table: dict[str, Any] = {
            "paths": kept,
            "sha256": [file_sha256(p) for p in kept],
            "failures": [list(failure) for failure in result.failures],
        }
        tagging = bool(snapshot.content["params"].get("tags"))
        if kept and (tagging or snapshot.content.get("global")):
            build_engine(snapshot.global_descriptor, self.n_images)
        if kept and tagging:
            from imagelearn.retrieval.tags import describe_with_classes

            descriptors, tags = describe_with_classes(snapshot.global_descriptor, kept)
            table["tags"] = [[[t.source, t.name, t.score] for t in image] for image in tags]
        elif kept and snapshot.content.get("global"):
            descriptors = snapshot.global_descriptor.transform(kept, "shard global descriptors")
        if kept and snapshot.content.get("global"):
            arrays["global"] = np.asarray(descriptors, np.float32)
        return {"arrays": arrays, "table": table}


def build_engine(descriptor: GeMDescriptor, n_images: int) -> None:
    """Put ``descriptor`` (a worker's, kept with its snapshot) on the inference engine that
    ``backend="auto"`` picks for the whole build's ``n_images``: a block of fewer than
    ``EXPORT_MIN_IMAGES`` would otherwise keep PyTorch (slower on the CPU) where the local
    build of the same images runs ONNX Runtime. Descriptors still differ from the local
    build's by rounding (network batches of other sizes): 1.4e-7 at most on 40 UKBench photos,
    2.4e-7 on PyTorch."""
    from imagelearn.classify.runtime import EXPORT_MIN_IMAGES, configure_torch, resolve_backend

    if descriptor.backend == "auto" and n_images >= EXPORT_MIN_IMAGES:
        descriptor.backend = resolve_backend("auto", configure_torch(descriptor.device))


def shard_path(directory: Path, key: str) -> Path:
    return member_path(directory, SHARDS_DIR, f"{key}.safetensors", what="index")


def _write_shard(path: Path, shard: dict[str, Any]) -> None:
    """Write a shard atomically; one already there (another worker's run of the same block)
    is kept."""
    path.parent.mkdir(exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(
            {name: np.ascontiguousarray(array) for name, array in shard["arrays"].items()},
            temporary,
            metadata={"table": json.dumps(shard["table"])},
        )
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def read_shard_table(path: Path) -> dict[str, Any]:
    """A shard's header: ``paths``, ``sha256`` of its readable images, ``failures``."""
    try:
        with safe_open(str(path), "numpy") as stream:
            return json.loads(stream.metadata()["table"])
    except Exception as error:  # safetensors has its own error types for corrupt files
        raise BundleError(f"{path}: corrupt shard ({error})") from error


def _outcomes(key: str, table: dict[str, Any], paths: list[str]) -> list[ShardRow | Failed]:
    rows = {path: row for row, path in enumerate(table["paths"])}
    reasons = {path: reason for path, reason in table["failures"]}
    missing = [path for path in paths if path not in rows and path not in reasons]
    if missing:
        raise ShardMismatchError(f"shard {key} does not hold {missing[0]} of its block")
    return [ShardRow(key, rows[path]) if path in rows else Failed(reasons[path]) for path in paths]


def add_sharded(writer: IndexWriter, pending: list[tuple[str, str]], report: AddReport) -> None:
    """Index ``pending`` ``(path, sha256)`` in blocks on the current engine's workers, merge
    their shards into one segment and commit it (see the module docstring).

    Raises
    ------
    ShardMismatchError
        The shards do not hold every readable image of ``pending`` exactly once.
    """
    if not pending:
        return
    directory = writer.directory
    paths = [path for path, _ in pending]
    existing = _existing_shards(directory)
    result = map_images(
        ShardBuilder(str(directory), writer.cache_dir, len(paths)),
        paths,
        batched=True,
        batch_size=shard_images(len(paths), int(writer.snapshot.params.batch_size)),
        n_jobs=writer.n_jobs,
        description="indexing blocks",
    )
    report.skipped += result.failures
    keys = list(dict.fromkeys(row.shard for row in result.values))
    reused = len(existing & set(keys))
    if reused:
        logger.info("reused %d of %d shards written before", reused, len(keys))
    if result.values:
        _merge_and_commit(writer, pending, result.kept, result.values, keys, report)
    remove_shards(directory)


def remove_shards(directory: Path) -> None:
    """Delete the index's shards: after their merge, or after a local ``add`` indexed the
    images of a distributed build interrupted before (its shards would never be merged)."""
    shutil.rmtree(member_path(directory, SHARDS_DIR, what="index"), ignore_errors=True)


def _existing_shards(directory: Path) -> set[str]:
    folder = member_path(directory, SHARDS_DIR, what="index")
    return {path.stem for path in folder.glob("*.safetensors")} if folder.is_dir() else set()


class _Image(NamedTuple):
    """One readable image of a shard, copied out of it, as the merge writes it."""

    size: np.ndarray
    keypoints: np.ndarray
    words: np.ndarray
    bag: tuple[np.ndarray, np.ndarray]
    descriptor: np.ndarray | None
    tags: list[Tag] | None


def _merge_and_commit(
    writer: IndexWriter,
    pending: list[tuple[str, str]],
    kept: np.ndarray,
    rows: list[ShardRow],
    keys: list[str],
    report: AddReport,
) -> None:
    """Check the shards' headers, then stream their images, in order, into segments of at
    most :data:`~imagelearn.retrieval.writer.SEGMENT_POSTINGS` postings, each written (with
    its catalogue rows and global descriptors) as soon as it is full; commit them all in one
    manifest swap. The driver holds one shard and one segment at a time."""
    from imagelearn.retrieval.storage import read_global_index, write_segment
    from imagelearn.retrieval.writer import SEGMENT_POSTINGS

    directory = writer.directory
    tables = {key: _read_table(shard_path(directory, key)) for key in progress(keys, "checking")}
    _check_exactly_once(directory, pending, kept, rows, tables)
    first_id = int(writer.content["next_id"])
    generation = writer.content["generation"] + 1
    wants_global = bool(writer.content.get("global"))
    global_index = read_global_index(directory, writer.content) if wants_global else None
    kept_paths = [pending[index][0] for index in kept]
    n_words = writer.snapshot.vocabulary.n_words_
    names: list[str] = []
    start = first_id
    added = now()
    images = _images(directory, progress(rows, "merging", unit="image"))
    for part, group in enumerate(_groups(images, SEGMENT_POSTINGS)):
        ids = np.arange(start, start + len(group), dtype=np.uint32)
        segment = _segment(f"g{generation:06d}{part:04d}", ids, group, n_words)
        write_segment(directory, segment)
        if global_index is not None:
            descriptors = np.stack([image.descriptor for image in group])
            writer._add_to_global(global_index, ids, descriptors)
        paths = kept_paths[start - first_id : start - first_id + len(group)]
        writer.catalogue.insert(  # rows of ids past next_id until the commit: see reconcile
            [
                ImageRecord(
                    int(image_id),
                    path,
                    pending[kept[image_id - first_id]][1],
                    Path(path).stat().st_size,
                    int(image.size[0]),
                    int(image.size[1]),
                    len(image.words),
                    added,
                    segment.name,
                )
                for image_id, path, image in zip(ids.tolist(), paths, group, strict=True)
            ],
            tags=[
                (image_id, tag)
                for image_id, image in zip(ids.tolist(), group, strict=True)
                for tag in image.tags or ()
            ],
        )
        names.append(segment.name)
        start += len(group)
    changes = {"global": writer._write_global(global_index)} if global_index is not None else {}
    writer._commit(
        segments=[*writer.content["segments"], *names],
        next_id=start,
        n_images=writer.content["n_images"] + len(rows),
        **changes,
    )
    report.added += kept_paths


def _images(directory: Path, rows: Iterable[ShardRow]) -> Iterator[_Image]:
    """The images of ``rows``, read from their shards one shard at a time (a block's rows are
    consecutive)."""
    key, shard = None, None
    for row in rows:
        if row.shard != key:
            key, shard = row.shard, _read_shard(shard_path(directory, row.shard))
        start, stop = shard["keypoint_offsets"][row.row : row.row + 2]
        bag_start, bag_stop = shard["bag_offsets"][row.row : row.row + 2]
        tags = shard["table"].get("tags")
        yield _Image(
            shard["sizes"][row.row].copy(),
            shard["keypoints"][start:stop].copy(),
            shard["words"][start:stop].copy(),
            (
                shard["bag_words"][bag_start:bag_stop].copy(),
                shard["bag_weights"][bag_start:bag_stop].copy(),
            ),
            shard["global"][row.row].copy() if "global" in shard else None,
            [Tag(*tag) for tag in tags[row.row]] if tags is not None else None,
        )


def _groups(images: Iterable[_Image], max_postings: int) -> Iterator[list[_Image]]:
    """``images`` in consecutive groups of at most ``max_postings`` postings (an image with
    more is a group alone)."""
    group: list[_Image] = []
    held = 0
    for image in images:
        if group and held + len(image.bag[0]) > max_postings:
            yield group
            group, held = [], 0
        group.append(image)
        held += len(image.bag[0])
    if group:
        yield group


def _segment(name: str, ids: np.ndarray, group: list[_Image], n_words: int) -> Segment:
    """One segment of ``group``, given ``ids``."""
    counts = np.array([len(image.words) for image in group], dtype=np.int64)
    return Segment(
        name=name,
        ids=ids,
        sizes=np.asarray([image.size for image in group], np.int32).reshape(-1, 2),
        keypoint_offsets=np.concatenate(([0], np.cumsum(counts))),
        keypoints=np.concatenate([image.keypoints for image in group])
        .astype(np.float32)
        .reshape(-1, 4),
        words=np.concatenate([image.words for image in group]).astype(np.uint32),
        postings=Postings.from_bags(ids, [image.bag for image in group], n_words),
    )


def _read_table(path: Path) -> dict[str, list[str]]:
    """The ``paths`` and ``sha256`` of a shard's header, which the exactly-once check needs."""
    if not path.is_file():
        raise ShardMismatchError(f"{path}: shard missing after its block ran")
    table = read_shard_table(path)
    return {"paths": table["paths"], "sha256": table["sha256"]}


def _read_shard(path: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
    except FileNotFoundError:
        raise ShardMismatchError(f"{path}: shard missing after its block ran") from None
    except Exception as error:
        raise BundleError(f"{path}: corrupt shard ({error})") from error
    return {**arrays, "table": read_shard_table(path)}


def _check_exactly_once(
    directory: Path,
    pending: list[tuple[str, str]],
    kept: np.ndarray,
    rows: list[ShardRow],
    tables: dict[str, dict[str, Any]],
) -> None:
    """Every kept image of ``pending`` is in exactly one shard row, with its content hash,
    and the shards hold nothing else (``tables``: the shards' headers, by key)."""
    expected = {pending[index][1]: pending[index][0] for index in kept}
    counts: dict[str, int] = {}
    for table in tables.values():
        for digest in table["sha256"]:
            counts[digest] = counts.get(digest, 0) + 1
    problems = []
    bad_shards = set()
    for (path, digest), row in zip((pending[index] for index in kept), rows, strict=True):
        found = tables[row.shard]
        if found["paths"][row.row] != path or found["sha256"][row.row] != digest:
            problems.append(f"{path}: content changed while it was indexed (sha256 {digest[:12]})")
            bad_shards.add(row.shard)
        elif counts.get(digest, 0) != 1:
            problems.append(f"{path}: in {counts.get(digest, 0)} shard rows, not one")
    extra = sorted(set(counts) - set(expected))
    problems += [f"a shard holds an image not asked for (sha256 {digest[:12]})" for digest in extra]
    wrong = set(extra) | {digest for digest, count in counts.items() if count > 1}
    bad_shards |= {key for key, table in tables.items() if set(table["sha256"]) & wrong}
    if problems:
        for key in bad_shards:
            shard_path(directory, key).unlink(missing_ok=True)
        raise ShardMismatchError(
            f"{directory}: the shards do not hold every new image exactly once "
            f"({len(problems)} problems; first: {'; '.join(problems[:3])}); nothing was "
            f"committed, the {len(bad_shards)} disagreeing shards were deleted: run the same "
            "build again"
        )
