"""Model review (``imagelearn serve --review RUN_DIR...``): what a run directory shows, as plain data.

A run is recognised by its files, never by its name:

- ``bof`` / ``classify``: a classifier bundle (``manifest.json`` of kind ``bof-classifier`` or
  ``cnn-classifier``) with the held-out report of
  :func:`~imagelearn.evaluation.classification.write_evaluation` (``metrics.json``,
  ``misclassified.csv``, ``predictions.csv`` since that file exists) and, for ``classify``,
  ``history.csv``;
- ``evaluation``: such a report alone (``bof evaluate``, ``classify evaluate``);
- ``transfer``: ``transfer.json`` of ``imagelearn transfer compare``;
- ``cluster``: ``summary.json`` and ``clusters.csv`` of ``imagelearn cluster fit``.

The server is given run directories or folders holding runs (:class:`RunShelf`); a client names
a run by its place below one of them (``runs/bof``), every component a plain name, and the path
(links followed) must stay below it. The images a page shows are those the run lists, by their
number in the run (:attr:`Review.images`): no path from a client reaches the disk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagelearn.core.bundle import BundleError, member_path
from imagelearn.core.errors import ImagelearnError
from imagelearn.core.schema import MEMBER_NAME_PATTERN
from imagelearn.web.security import UploadError

#: Bundle kinds of the classifiers whose runs are reviewed, and the run kind each is.
CLASSIFIER_KINDS = {"bof-classifier": "bof", "cnn-classifier": "classify"}
#: Every run kind, in the order the list of runs shows them.
RUN_KINDS = ("bof", "classify", "evaluation", "transfer", "cluster")
#: How deep below a folder given to the server runs are looked for.
SEARCH_DEPTH = 3
#: Largest file of a run that is read (bytes): a table of a million images is about 100 MB.
MAX_TABLE_BYTES = 256 * 2**20
#: Metrics of a classifier run shown as figures (the others are lists, tables, or long).
CLASSIFIER_FIGURES = (
    "accuracy",
    "macro_f1",
    "sensitivity",
    "specificity",
    "n_images",
    "n_train",
    "split",
    "mode",
    "backbone",
    "train_seconds",
    "fit_seconds",
    "data",
    "source",
)
#: What each arm of a transfer comparison is summarised by (beside its curve).
ARM_FIGURES = (
    "mode",
    "fraction",
    "n_train",
    "start",
    "slope",
    "epochs_to_90",
    "asymptote",
    "seconds",
)
#: Runs kept read (the page reads one at a time; a few more serve clients on other runs).
KEPT_RUNS = 8
#: Figures of a clustering run's ``summary.json`` shown.
CLUSTER_FIGURES = (
    "n_images",
    "n_clusters",
    "descriptor",
    "method",
    "noise",
    "near_duplicate_groups",
    "ari",
    "nmi",
    "purity",
)


class ReviewError(UploadError, ImagelearnError):
    """A review request that cannot be answered; ``status`` is its HTTP status."""


@dataclass(frozen=True)
class Review:
    """One run directory read: what its page shows.

    Attributes
    ----------
    name : str
        How clients name it (``runs/bof``).
    path : Path
    kind : str
        One of :data:`RUN_KINDS`.
    images : tuple of str
        The images the run lists, as written (image ``i`` of the run is ``images[i]``).
    data : dict
        Plain JSON-ready data: see :func:`read_run`.
    cells : dict or None
        ``(true, predicted)`` -> image numbers, for the cells that can be listed (all of
        them with ``predictions.csv``, the off-diagonal ones from ``misclassified.csv``).
    members : dict or None
        Cluster -> image numbers, closest to its centre first.
    """

    name: str
    path: Path
    kind: str
    images: tuple[str, ...]
    data: dict[str, Any]
    cells: dict[tuple[str, str], list[int]] | None = None
    members: dict[int, list[int]] | None = None

    def cell(self, true: str, predicted: str) -> dict[str, Any]:
        """The images of the true class ``true`` predicted ``predicted``.

        Raises
        ------
        ReviewError
            404: not a classifier run, a class it does not have, or a cell the run did not
            store (the diagonal of a run written before ``predictions.csv``).
        """
        if self.cells is None:
            raise ReviewError(404, f"{self.name} is a {self.kind} run: it has no confusion matrix")
        labels = self.data["confusion"]["labels"]
        for role, label in (("true", true), ("predicted", predicted)):
            if label not in labels:
                raise ReviewError(
                    404, f"{self.name}: no class {label!r} ({role}); its classes are {labels}"
                )
        if self.data["confusion"]["listable"] != "all" and true == predicted:
            raise ReviewError(
                404,
                f"{self.name}: the images of cell ({true}, {predicted}) were not stored: the run "
                "has no predictions.csv (written before it existed), only misclassified.csv",
            )
        numbers = self.cells.get((true, predicted), [])
        return {
            "true": true,
            "predicted": predicted,
            "count": len(numbers),
            "images": [self.image(number) for number in numbers],
        }

    def cluster(self, cluster: int) -> dict[str, Any]:
        """The images of ``cluster``, closest to its centre first (404 for no such cluster)."""
        if self.members is None:
            raise ReviewError(404, f"{self.name} is a {self.kind} run: it has no clusters")
        if cluster not in self.members:
            raise ReviewError(
                404, f"{self.name}: no cluster {cluster}; it has {sorted(self.members)}"
            )
        numbers = self.members[cluster]
        return {
            "cluster": cluster,
            "size": len(numbers),
            "images": [self.image(number) for number in numbers],
        }

    def image(self, number: int) -> dict[str, Any]:
        """``{"image": number, "name": file name}`` of image ``number`` of the run."""
        return {"image": number, "name": _file_name(self.images[number])}

    def image_path(self, number: int) -> Path:
        """The file of image ``number`` (relative paths as the run wrote them, from the
        working directory); 404 for a number the run does not list."""
        if not 0 <= number < len(self.images):
            raise ReviewError(
                404, f"{self.name}: no image {number}; the run lists {len(self.images)}"
            )
        return Path(self.images[number])


def _file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def run_kind(directory: Path) -> str:
    """The kind of run ``directory`` holds (one of :data:`RUN_KINDS`).

    Raises
    ------
    BundleError
        Not a directory, or not a run: the message names what is missing.
    """
    if not directory.is_dir():
        raise BundleError(f"{directory}: not a directory")
    if (directory / "transfer.json").is_file():
        return "transfer"
    if (directory / "summary.json").is_file() and (directory / "clusters.csv").is_file():
        return "cluster"
    if (directory / "metrics.json").is_file() and (directory / "misclassified.csv").is_file():
        if not (directory / "manifest.json").is_file():
            return "evaluation"
        kind = _read_json(directory / "manifest.json").get("kind")
        if kind in CLASSIFIER_KINDS:
            return CLASSIFIER_KINDS[kind]
        raise BundleError(
            f"{directory}: not a run directory of a classifier: its manifest.json is of kind "
            f"{kind!r}, not one of {sorted(CLASSIFIER_KINDS)}"
        )
    raise BundleError(
        f"{directory}: not a run directory: it holds no metrics.json with misclassified.csv "
        "(bof train, classify train, evaluate), no transfer.json (transfer compare) and no "
        "summary.json with clusters.csv (cluster fit)"
    )


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise BundleError(f"{path}: {size} bytes, more than the {MAX_TABLE_BYTES} read")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BundleError(f"{path}: unreadable ({error})") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(_read_text(path))
    except (json.JSONDecodeError, RecursionError) as error:
        raise BundleError(f"{path}: not JSON ({error})") from None
    if not isinstance(value, dict):
        raise BundleError(f"{path}: not a JSON object")
    return value


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(_read_text(path))))
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise BundleError(f"{path}: no column {', '.join(missing)}")
    return rows


class _Images:
    """Numbers the images of a run in the order they are first seen."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}

    def number(self, path: str) -> int:
        return self.numbers.setdefault(path, len(self.numbers))

    def paths(self) -> tuple[str, ...]:
        return tuple(self.numbers)


def _figures(values: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {key: values[key] for key in keys if key in values}


def read_run(directory: str | os.PathLike, name: str | None = None) -> Review:
    """Read a run directory for review.

    ``data`` holds ``name``, ``kind`` and ``figures`` (headline metrics), and by kind:

    - classifier runs: ``per_class`` (precision, recall, f1, support), ``confusion``
      (``labels``, ``matrix`` rows true, columns predicted, ``listable``: ``"all"`` or
      ``"off-diagonal"``), ``misclassified`` (image, name, true, predicted, ``top``: the best
      classes with their ``score``), ``score_name`` and, for ``classify``, ``history`` (one
      dict per epoch: epoch, phase, loss, train_accuracy, val_loss, val_accuracy);
    - ``transfer``: ``arms`` (mode, fraction, n_train, start, slope, epochs_to_90,
      asymptote, seconds, ``curve``: validation accuracy per epoch), ``split``, ``n_held_out``;
    - ``cluster``: ``clusters`` (cluster, size), ``silhouette`` (k -> mean silhouette) and
      ``map`` (``image``, ``x``, ``y``, ``cluster`` per image; None for a run written before
      ``clusters.csv`` had ``x`` and ``y``).

    Raises
    ------
    BundleError
        Not a run directory, or one whose files are unreadable or malformed.
    """
    directory = Path(directory)
    kind = run_kind(directory)
    name = directory.name if name is None else name
    try:
        if kind == "transfer":
            return _read_transfer(directory, name)
        if kind == "cluster":
            return _read_cluster(directory, name)
        return _read_classifier(directory, name, kind)
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise BundleError(f"{directory}: a malformed {kind} run ({error!r})") from None


def _read_classifier(directory: Path, name: str, kind: str) -> Review:
    metrics = _read_json(directory / "metrics.json")
    labels = [str(label) for label in metrics["class_names"]]
    images = _Images()
    cells: dict[tuple[str, str], list[int]] = {}
    top: dict[int, list[dict[str, Any]]] = {}
    score_name = None
    if (directory / "predictions.csv").is_file():
        rows = _read_csv(directory / "predictions.csv", ("path", "true", "predicted"))
        columns = list(rows[0]) if rows else []
        if len(columns) > 4:  # label_1, SCORE_1, label_2, SCORE_2...
            score_name = columns[4].rsplit("_", 1)[0]
        for row in rows:
            number = images.number(row["path"])
            cells.setdefault((row["true"], row["predicted"]), []).append(number)
            top[number] = [
                {"label": row[label], "score": float(row[score])}
                for label, score in zip(columns[3::2], columns[4::2], strict=False)
                if row[label]
            ]
        listable = "all"
    else:
        rows = _read_csv(directory / "misclassified.csv", ("path", "true", "predicted"))
        for row in rows:
            cells.setdefault((row["true"], row["predicted"]), []).append(images.number(row["path"]))
        listable = "off-diagonal"
    for cell in (t for t in cells if t[0] not in labels or t[1] not in labels):
        raise BundleError(f"{directory}: class {cell} of its tables is not in metrics.json")
    paths = images.paths()
    misclassified = sorted(
        (
            {
                "image": number,
                "name": _file_name(paths[number]),
                "true": true,
                "predicted": predicted,
                "top": top.get(number, []),
            }
            for (true, predicted), numbers in cells.items()
            if true != predicted
            for number in numbers
        ),
        key=lambda item: item["image"],
    )
    data: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "figures": _figures(metrics, CLASSIFIER_FIGURES),
        "per_class": metrics.get("per_class", {}),
        "confusion": {
            "labels": labels,
            "matrix": metrics["confusion_matrix"],
            "listable": listable,
        },
        "misclassified": misclassified,
        "score_name": score_name,
        "history": None,
    }
    if (directory / "history.csv").is_file():
        data["history"] = [
            {
                "epoch": int(row["epoch"]),
                "phase": row["phase"],
                **{
                    key: float(row[key]) if row.get(key) not in (None, "") else None
                    for key in ("loss", "train_accuracy", "val_loss", "val_accuracy")
                },
            }
            for row in _read_csv(directory / "history.csv", ("epoch", "phase"))
        ]
    return Review(name, directory, kind, paths, data, cells=cells)


def _read_transfer(directory: Path, name: str) -> Review:
    report = _read_json(directory / "transfer.json")
    arms = [
        {
            **_figures(arm, ARM_FIGURES),
            "curve": [float(value) for value in arm["curve"]],
        }
        for arm in report["arms"]
    ]
    largest = max((arm["n_train"] for arm in arms), default=0)
    figures = {
        "split": report.get("split"),
        "n_held_out": report.get("n_held_out"),
        "arms": len(arms),
        **{f"best {arm['mode']}": arm["asymptote"] for arm in arms if arm["n_train"] == largest},
    }
    data = {"name": name, "kind": "transfer", "figures": figures, "arms": arms}
    return Review(name, directory, "transfer", (), data)


def _read_cluster(directory: Path, name: str) -> Review:
    summary = _read_json(directory / "summary.json")
    rows = _read_csv(directory / "clusters.csv", ("path", "cluster", "distance"))
    images = _Images()
    assigned = [
        (images.number(row["path"]), int(row["cluster"]), float(row["distance"])) for row in rows
    ]
    members: dict[int, list[int]] = {}
    for number, cluster, _ in sorted(assigned, key=lambda item: item[2]):
        members.setdefault(cluster, []).append(number)
    members = dict(sorted(members.items()))
    has_map = bool(rows) and "x" in rows[0] and "y" in rows[0]
    data = {
        "name": name,
        "kind": "cluster",
        "figures": _figures(summary, CLUSTER_FIGURES),
        "clusters": [{"cluster": c, "size": len(numbers)} for c, numbers in members.items()],
        "silhouette": summary.get("silhouette_curve"),
        "map": {
            "image": [number for number, _, _ in assigned],
            "x": [float(row["x"]) for row in rows],
            "y": [float(row["y"]) for row in rows],
            "cluster": [cluster for _, cluster, _ in assigned],
        }
        if has_map
        else None,
    }
    return Review(name, directory, "cluster", images.paths(), data, members=members)


class RunShelf:
    """The run directories one server reviews: each given directory is a run or a folder of
    runs (looked for :data:`SEARCH_DEPTH` levels down).

    Parameters
    ----------
    paths : sequence of path-like
        Run directories or folders holding runs.

    Raises
    ------
    BundleError
        A path that is not a directory, or neither a run nor a folder holding one.
    """

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self._lock = threading.Lock()
        self._read: OrderedDict[tuple[str, tuple[int, ...]], Review] = OrderedDict()
        self._digests: dict[tuple[Path, int, int], str] = {}
        self.roots: dict[str, Path] = {}
        for given in paths:
            path = Path(given)
            if not path.is_dir():
                raise BundleError(f"{path}: not a directory (expected a run directory or runs)")
            name = _root_name(path, self.roots)
            self.roots[name] = path
            if not self.runs(name):
                try:
                    run_kind(path)
                except BundleError as error:
                    raise BundleError(f"{error}; nor does any folder below it") from None

    def runs(self, only: str | None = None) -> list[dict[str, Any]]:
        """``name``, ``kind`` and ``figures`` of every run below the roots (or below ``only``)."""
        found = []
        for root_name, root in self.roots.items():
            if only is not None and root_name != only:
                continue
            for directory in _below(root, SEARCH_DEPTH):
                try:
                    kind = run_kind(directory)
                except BundleError:
                    continue
                relative = directory.relative_to(root).parts
                found.append({"name": "/".join((root_name, *relative)), "kind": kind})
        return found

    def _names(self) -> str:
        return ", ".join(self.roots)

    def open(self, name: str) -> Review:
        """The run named ``name`` (read again when one of its files changed).

        Raises
        ------
        ReviewError
            403: a name that is not plain names below a root, or that leads out of it;
            404: no such directory; 422: a directory that is not a run (the message says why).
        """
        root_name, *parts = name.split("/")
        if not all(re.fullmatch(MEMBER_NAME_PATTERN, part) for part in (root_name, *parts)):
            raise ReviewError(
                403, f"{name!r}: refused, a run is named by plain names below {self._names()}"
            )
        if root_name not in self.roots:
            raise ReviewError(404, f"no run {name!r} here: this server reviews {self._names()}")
        try:
            directory = member_path(self.roots[root_name], *parts, what="runs folder")
        except BundleError:
            raise ReviewError(403, f"{name!r}: refused, it leads out of {root_name}") from None
        if not directory.is_dir():
            raise ReviewError(404, f"no run directory {name!r}")
        stamp = _stamp(directory)
        with self._lock:
            cached = self._read.get((name, stamp))
            if cached is not None:
                self._read.move_to_end((name, stamp))
                return cached
        try:
            review = read_run(directory, name)
        except BundleError as error:  # named as the client names it, not by the server's path
            raise ReviewError(422, str(error).replace(str(directory), name)) from None
        with self._lock:
            self._read[(name, stamp)] = review
            while len(self._read) > KEPT_RUNS:
                self._read.popitem(last=False)
        return review

    def digest(self, path: Path) -> str:
        """The sha256 of the file's bytes (names its thumbnail in the cache), computed once
        per version of the file.

        Raises
        ------
        OSError
            The file cannot be read.
        """
        status = path.stat()
        key = (path, status.st_mtime_ns, status.st_size)
        with self._lock:
            known = self._digests.get(key)
        if known is not None:
            return known
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(2**20), b""):
                digest.update(block)
        with self._lock:
            self._digests[key] = digest.hexdigest()
        return digest.hexdigest()


def _root_name(path: Path, taken: dict[str, Path]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", path.resolve().name).lstrip("._-") or "runs"
    name, suffix = base, 2
    while name in taken:
        name, suffix = f"{base}-{suffix}", suffix + 1
    return name


def _below(root: Path, depth: int) -> list[Path]:
    """``root`` and its sub-folders down to ``depth`` levels (no hidden ones, no links)."""
    found = [root]
    level = [root]
    for _ in range(depth):
        level = [
            child
            for folder in level
            for child in sorted(_children(folder))
            if child.is_dir() and not child.is_symlink() and not child.name.startswith(".")
        ]
        found += level
    return found


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _stamp(directory: Path) -> tuple[int, ...]:
    """Modification times of the files a review reads (0 for a missing one)."""
    names = (
        "metrics.json",
        "misclassified.csv",
        "predictions.csv",
        "history.csv",
        "transfer.json",
        "summary.json",
        "clusters.csv",
    )
    stamps = []
    for file_name in names:
        try:
            stamps.append((directory / file_name).stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return tuple(stamps)
