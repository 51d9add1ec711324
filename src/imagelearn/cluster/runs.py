"""Clustering a collection: describe it, group it, and write what a person needs to look at."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagelearn.cluster.algorithms import ImageClusterer
from imagelearn.cluster.descriptors import map_descriptors
from imagelearn.cluster.duplicates import near_duplicate_groups
from imagelearn.cluster.report import (
    embedding_map,
    html_report,
    map_points,
    montage,
    silhouette_plot,
)
from imagelearn.core.bundle import atomic_write_json, atomic_write_text
from imagelearn.core.errors import ParameterError
from imagelearn.core.outputs import check_output_directory
from imagelearn.core.tables import rows_to_csv
from imagelearn.data import DatasetError, load_dataset
from imagelearn.evaluation.clustering import clustering_agreement

ORGANIZE = (None, "link", "move")

#: Keys of the summary copied into ``metrics.json`` beside ``ari``, ``nmi`` and ``purity``.
_RUN_KEYS = ("n_images", "n_clusters", "descriptor", "method")


@dataclass(frozen=True)
class ClusterResult:
    """What :func:`fit_run` found and wrote.

    Attributes
    ----------
    out : Path
        The run directory (``report.html``, ``clusters.csv``, ``summary.json``...).
    summary : dict
        What ``summary.json`` holds: ``n_images``, ``n_clusters``, ``descriptor``, ``method``,
        ``noise``, ``skipped``, ``near_duplicate_groups``, ``silhouette_curve`` (k "auto")
        and, with ``evaluate``, ``ari``, ``nmi`` and ``purity``.
    model : ImageClusterer
        The fitted clusterer; ``model.labels_[i]`` is the cluster of ``paths[i]``.
    paths : tuple of Path
        The clustered (readable) images.
    """

    out: Path
    summary: dict[str, Any]
    model: ImageClusterer
    paths: tuple[Path, ...]

    @property
    def metrics(self) -> dict[str, float] | None:
        """``ari``, ``nmi`` and ``purity`` against the class sub-folders; None without ``evaluate``."""
        if "ari" not in self.summary:
            return None
        return {key: self.summary[key] for key in ("ari", "nmi", "purity")}

    @property
    def report(self) -> Path:
        """The HTML page linking everything."""
        return self.out / "report.html"


@dataclass(frozen=True)
class EvaluateResult:
    """What :func:`evaluate_run` measured.

    Attributes
    ----------
    path : Path
        The ``metrics.json`` written into the run directory.
    metrics : dict
        ``ari``, ``nmi`` and ``purity`` of the clusters against the labels.
    n_images : int
        Images scored: those both clustered and labelled.
    """

    path: Path
    metrics: dict[str, float]
    n_images: int


def _write_agreement(
    out: Path, truth: np.ndarray, labels: np.ndarray, summary: dict[str, Any]
) -> dict[str, float]:
    """``ari``, ``nmi`` and ``purity`` of ``labels`` against ``truth``, also written to ``out/metrics.json``."""
    metrics = clustering_agreement(truth, labels)
    atomic_write_json(out / "metrics.json", {**metrics, **{key: summary[key] for key in _RUN_KEYS}})
    return metrics


def _exact_duplicates(paths: list[Path]) -> list[list[str]]:
    by_hash: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        by_hash[hashlib.sha256(path.read_bytes()).hexdigest()].append(str(path))
    return [group for group in by_hash.values() if len(group) > 1]


def organize_into_folders(paths: list[Path], labels: np.ndarray, out: Path, how: str) -> None:
    """Symlink (``link``) or move (``move``) each image into ``out/cluster_XX/`` (HDBSCAN noise: ``out/noise/``)."""
    for path, label in zip(paths, labels, strict=True):
        folder = out / ("noise" if label < 0 else f"cluster_{label:02d}")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        suffix = 1
        while target.exists() or target.is_symlink():
            target = folder / f"{path.stem}_{suffix}{path.suffix}"
            suffix += 1
        if how == "link":
            target.symlink_to(path.resolve())
        else:
            shutil.move(str(path), target)


def fit_run(
    source: str | os.PathLike,
    out: str | os.PathLike,
    descriptor: str = "cnn",
    clusterer: ImageClusterer | None = None,
    evaluate: bool = False,
    organize: str | None = None,
    duplicate_threshold: float = 0.95,
    n_jobs: int = -1,
    overwrite: bool = False,
) -> ClusterResult:
    """Cluster the images under ``source`` and write the results into ``out``.

    Writes ``clusters.csv`` (path, cluster, distance, x and y on the 2-D map),
    ``montage_XX.png`` per cluster,
    ``map.png``, ``silhouette.png`` (k auto), ``duplicates.json``, ``summary.json``,
    ``report.html`` and, with ``evaluate``, ``metrics.json`` with ``ari``, ``nmi``, ``purity``.

    Parameters
    ----------
    source : path
        A folder of images, a folder of class sub-folders or a CSV of path[,label].
    out : path
        The run directory.
    descriptor : {"cnn", "bof", "color"}
        The vector describing each image (see :func:`~imagelearn.cluster.descriptors.map_descriptors`).
    clusterer : ImageClusterer, optional
        Unfitted (default: ``ImageClusterer()``).
    evaluate : bool
        Compare the clusters with the labels (class sub-folders or the CSV's labels).
    organize : {None, "link", "move"}
        Symlink or move every image into ``out/cluster_XX/`` (HDBSCAN noise: ``out/noise/``).
    duplicate_threshold : float
        Cosine similarity above which images are near duplicates.
    n_jobs : int
        Parallel workers describing the images (-1: one per core).
    overwrite : bool
        Replace a finished run in ``out`` (its ``summary.json``).

    Raises
    ------
    OutputExistsError
        A finished run is in ``out`` and not ``overwrite``.
    DatasetError
        Fewer than 2 images.
    ParameterError
        ``evaluate`` on unlabelled images, or an unknown ``organize``.
    """
    if organize not in ORGANIZE:
        raise ParameterError("organize", f"must be one of {ORGANIZE}, got {organize!r}")
    out = check_output_directory(out, overwrite, "summary.json")
    dataset = load_dataset(source)
    if len(dataset) < 2:
        raise DatasetError(f"{source}: found {len(dataset)} image(s); clustering needs at least 2")
    if evaluate and not dataset.is_labeled:
        raise ParameterError(
            "evaluate",
            f"{source}: the images are unlabelled; evaluating the clusters needs class "
            "sub-folders (or a CSV with labels)",
        )
    described = map_descriptors(dataset.paths, descriptor, n_jobs)  # logs each failure
    paths = [dataset.paths[i] for i in described.kept]
    skipped = described.failures
    model = (clusterer or ImageClusterer()).fit(described.vectors)
    points, map_method = map_points(model.reduced_)
    rows = [
        {
            "path": str(path),
            "cluster": int(label),
            "distance": float(distance),
            "x": float(x),
            "y": float(y),
        }
        for path, label, distance, (x, y) in zip(
            paths, model.labels_, model.distances_, points, strict=True
        )
    ]
    atomic_write_text(out / "clusters.csv", rows_to_csv(rows))
    sizes = [int(np.sum(model.labels_ == c)) for c in range(model.n_clusters_)]
    for cluster in range(model.n_clusters_):
        members = np.flatnonzero(model.labels_ == cluster)
        closest_first = members[np.argsort(model.distances_[members])]
        montage([paths[i] for i in closest_first], out / f"montage_{cluster:02d}.png")
    images = {"2-D map": "map.png"}
    embedding_map(points, model.labels_, out / "map.png", map_method)
    summary: dict[str, Any] = {
        "n_images": len(paths),
        "n_clusters": model.n_clusters_,
        "descriptor": descriptor,
        "method": model.method,
        "noise": int(np.sum(model.labels_ < 0)),
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
    }
    if hasattr(model, "silhouette_curve_"):
        silhouette_plot(model.silhouette_curve_, model.n_clusters_, out / "silhouette.png")
        images["silhouette against k"] = "silhouette.png"
        summary["silhouette_curve"] = {str(k): v for k, v in model.silhouette_curve_.items()}
    duplicates = {
        "exact": _exact_duplicates(paths),
        "near": [
            [str(paths[i]) for i in group]
            for group in near_duplicate_groups(model.reduced_, duplicate_threshold)
        ],
        "near_threshold_cosine": duplicate_threshold,
    }
    atomic_write_json(out / "duplicates.json", duplicates)
    summary["near_duplicate_groups"] = len(duplicates["near"])
    if evaluate:
        summary.update(
            _write_agreement(out, dataset.labels[described.kept], model.labels_, summary)
        )
    atomic_write_json(out / "summary.json", summary)
    html_report(
        out, {k: v for k, v in summary.items() if not isinstance(v, list | dict)}, sizes, images
    )
    if organize:
        organize_into_folders(paths, model.labels_, out, organize)
    return ClusterResult(out, summary, model, tuple(paths))


def evaluate_run(run_dir: str | os.PathLike, source: str | os.PathLike) -> EvaluateResult:
    """Compare the clusters of a :func:`fit_run` directory with the labels of ``source``.

    Images are matched by their resolved paths; those in only one of the two are left out.
    Writes ``metrics.json`` into ``run_dir`` (as :func:`fit_run` does with ``evaluate``).

    Parameters
    ----------
    run_dir : path
        Written by :func:`fit_run` (``clusters.csv``, ``summary.json``).
    source : path
        The same images, labelled: class sub-folders or a CSV of path,label.

    Raises
    ------
    DatasetError
        ``source`` is unlabelled, or none of its images were clustered.
    """
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    with (run_dir / "clusters.csv").open(newline="", encoding="utf-8") as stream:
        clusters = {
            str(Path(row["path"]).resolve()): int(row["cluster"]) for row in csv.DictReader(stream)
        }
    dataset = load_dataset(source)
    if not dataset.is_labeled:
        raise DatasetError(
            f"{source}: the images are unlabelled; evaluating clusters needs class sub-folders "
            "(or a CSV with labels)"
        )
    pairs = [
        (int(label), clusters[key])
        for path, label in zip(dataset.paths, dataset.labels, strict=True)
        if (key := str(path.resolve())) in clusters
    ]
    if not pairs:
        raise DatasetError(f"{source}: none of its images are in {run_dir / 'clusters.csv'}")
    truth, labels = (np.array(column) for column in zip(*pairs, strict=True))
    metrics = _write_agreement(run_dir, truth, labels, {**summary, "n_images": len(pairs)})
    return EvaluateResult(run_dir / "metrics.json", metrics, len(pairs))
