"""``imagelearn data check``: what is in a collection, what is wrong with it, and how much the
caches on this machine hold."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from imagelearn.core.cache import CacheInfo, cache_info
from imagelearn.core.execution import map_images
from imagelearn.core.images import ImageReadError, load_image
from imagelearn.data.collection import SPLIT_NAMES, load_dataset
from imagelearn.data.dataset import ImageDataset

#: Ratio of the largest to the smallest class above which a collection is called imbalanced.
IMBALANCE_RATIO = 3.0


@dataclass
class CollectionReport:
    """Summary of a collection: per-class counts, unreadable files, duplicates, sizes."""

    n_images: int
    class_counts: dict[str, int]
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    duplicate_groups: list[list[str]] = field(default_factory=list)
    sizes: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 2), dtype=np.int64)
    )  # (n_readable, 2) width, height
    warnings: list[str] = field(default_factory=list)

    @property
    def n_usable(self) -> int:
        return self.n_images - len(self.unreadable)

    def as_dict(self) -> dict:
        sizes = self.sizes
        size_summary = {}
        if len(sizes):
            for axis, name in enumerate(("width", "height")):
                size_summary[name] = {
                    "min": int(sizes[:, axis].min()),
                    "median": float(np.median(sizes[:, axis])),
                    "max": int(sizes[:, axis].max()),
                }
        return {
            "n_images": self.n_images,
            "n_usable": self.n_usable,
            "class_counts": self.class_counts,
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
            "duplicate_groups": self.duplicate_groups,
            "image_size": size_summary,
            "warnings": self.warnings,
        }

    def format(self) -> str:
        """A human-readable multi-line summary."""
        lines = [f"images: {self.n_images} ({self.n_usable} usable)"]
        if self.class_counts:
            lines.append(f"classes: {len(self.class_counts)}")
            width = max(len(name) for name in self.class_counts)
            lines.extend(f"  {name:<{width}}  {count}" for name, count in self.class_counts.items())
        summary = self.as_dict()["image_size"]
        if summary:
            w, h = summary["width"], summary["height"]
            lines.append(
                f"size (w x h): min {w['min']}x{h['min']}, median {w['median']:.0f}x{h['median']:.0f}, max {w['max']}x{h['max']}"
            )
        if self.unreadable:
            lines.append(f"unreadable: {len(self.unreadable)}")
            lines.extend(f"  {path}: {reason}" for path, reason in self.unreadable)
        if self.duplicate_groups:
            lines.append(f"exact duplicates: {len(self.duplicate_groups)} group(s)")
            lines.extend("  " + " = ".join(group) for group in self.duplicate_groups)
        lines.extend(f"warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)


class _Inspection(NamedTuple):
    digest: str
    size: tuple[int, int] | None  # (width, height); None when the file does not decode
    reason: str  # why it does not decode; "" when it does


def _inspect(path: Path) -> _Inspection:
    """Content hash and size of one file; a file that does not decode still has a hash (an
    exact duplicate of a broken file is still a duplicate).

    Raises
    ------
    ImageReadError
        The file's bytes cannot be read.
    """
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise ImageReadError(path, f"cannot read file ({error.strerror or error})") from error
    try:
        image = load_image(path, "L")
    except ImageReadError as error:
        return _Inspection(digest, None, error.reason)
    return _Inspection(digest, (int(image.shape[1]), int(image.shape[0])), "")


def check_collection(
    source: str | os.PathLike | ImageDataset,
    n_jobs: int | None = -1,
    engine: str | None = None,
) -> CollectionReport:
    """Decode every image of ``source`` once (on ``n_jobs`` worker processes) and summarise
    the collection."""
    dataset = source if isinstance(source, ImageDataset) else load_dataset(source)
    inspected = map_images(
        _inspect, list(dataset.paths), n_jobs=n_jobs, description="checking", engine=engine
    )
    by_hash: dict[str, list[str]] = defaultdict(list)
    sizes: list[tuple[int, int]] = []
    unreadable = dict(zip(inspected.failed.tolist(), inspected.failures, strict=True))
    for index, inspection in zip(inspected.kept.tolist(), inspected.values, strict=True):
        path = str(dataset.paths[index])
        by_hash[inspection.digest].append(path)
        if inspection.size is None:
            unreadable[index] = (path, inspection.reason)
        else:
            sizes.append(inspection.size)
    counts = dataset.class_counts()
    report = CollectionReport(
        n_images=len(dataset),
        class_counts=counts,
        unreadable=[unreadable[index] for index in sorted(unreadable)],
        duplicate_groups=[group for group in by_hash.values() if len(group) > 1],
        sizes=np.asarray(sizes, dtype=np.int64).reshape(-1, 2),
    )
    nonzero = [count for count in counts.values() if count > 0]
    if nonzero and max(nonzero) > IMBALANCE_RATIO * min(nonzero):
        report.warnings.append(
            f"class imbalance: largest class has {max(nonzero)} images, smallest {min(nonzero)} "
            f"(ratio {max(nonzero) / min(nonzero):.1f}); consider class weights"
        )
    if len(counts) == 1:
        report.warnings.append("only one class: a classifier needs at least two")
    if report.n_usable == 0:
        report.warnings.append("no usable images")
    return report


@dataclass(frozen=True)
class CheckResult:
    """What ``imagelearn data check`` found.

    Attributes
    ----------
    reports : dict of str to CollectionReport
        One per split folder (``train``, ``val``, ``test``) when ``source`` has them, else one
        named by ``source``.
    cache : CacheInfo
        Where the caches are and what they hold (:func:`imagelearn.core.cache.cache_info`).
    """

    reports: dict[str, CollectionReport]
    cache: CacheInfo

    @property
    def n_usable(self) -> int:
        return sum(report.n_usable for report in self.reports.values())


def check_run(
    source: str | os.PathLike, n_jobs: int | None = -1, engine: str | None = None
) -> CheckResult:
    """Check every split folder of ``source`` (or ``source`` itself, when it has none) with
    :func:`check_collection`, and measure the caches."""
    source = Path(source)
    splits = [source / name for name in SPLIT_NAMES if (source / name).is_dir()]
    reports = {split.name: check_collection(split, n_jobs, engine) for split in splits} or {
        str(source): check_collection(source, n_jobs, engine)
    }
    return CheckResult(reports, cache_info())
