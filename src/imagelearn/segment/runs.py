"""The workflows behind ``imagelearn segment``: cluster, train, predict and evaluate runs.

Each run reads its images and sample files, fits or loads a model, writes its outputs (model
bundle, class maps, overlays, legends, area tables, metrics) and returns a frozen result;
none prints. Pixel classification (:class:`PixelClassifier`) and BoF semantic segmentation
(:class:`BofSegmenter`, the ``bof_*`` runs) share the result types.

Outputs of a predict run go into ``out`` for one image and into ``out/<image stem>/`` for
each of several.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagelearn.core.bundle import atomic_write_json
from imagelearn.core.errors import ParameterError
from imagelearn.core.images import DEFAULT_MAX_PIXELS
from imagelearn.core.outputs import check_output_directory
from imagelearn.core.persistence import read_metadata
from imagelearn.evaluation.segmentation import accuracy_report, cluster_agreement
from imagelearn.segment.bof_segmentation import BofSegmenter, iou_report
from imagelearn.segment.classifier import PixelClassifier
from imagelearn.segment.cluster import PixelClusterer
from imagelearn.segment.features import PixelFeatures
from imagelearn.segment.raster import read_raster
from imagelearn.segment.render import Color, write_results
from imagelearn.segment.samples import Samples, parse_classes, read_samples, split_holdout

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
#: File of the accuracy (or IoU) report in a model bundle or an output directory.
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class ClusterResult:
    """What :func:`cluster_run` wrote into ``out``.

    Attributes
    ----------
    out : Path
        Directory with ``classmap.png``, ``overlay.png``, ``legend.png``, ``areas.csv``/``.json``
        (and ``agreement.json`` with ``truth``).
    class_names : tuple of str
        ``cluster1..clusterN``; ISODATA may end with another count than ``n_clusters``.
    areas : tuple of dict
        Pixels, per cent (and square metres) per cluster.
    agreement : dict or None
        Purity, adjusted Rand index... against ``truth``
        (see :func:`~imagelearn.evaluation.segmentation.cluster_agreement`).
    """

    out: Path
    class_names: tuple[str, ...]
    areas: tuple[dict[str, Any], ...]
    agreement: dict[str, Any] | None


@dataclass(frozen=True)
class TrainResult:
    """What a train run saved.

    Attributes
    ----------
    out : Path
        The model bundle directory.
    classifier : str
        Key of :data:`~imagelearn.segment.models.CLASSIFIERS`.
    n_samples_per_class : dict of str to int
        Training samples per class: labelled pixels, or for BoF segmentation superpixels.
    metrics : dict or None
        Accuracy report on the held-out samples (also in ``out/metrics.json``), if any.
    """

    out: Path
    classifier: str
    n_samples_per_class: dict[str, int]
    metrics: dict[str, Any] | None


@dataclass(frozen=True)
class ImageMap:
    """The class map of one image written by a predict run.

    Attributes
    ----------
    image : Path
    out : Path
        Directory with ``classmap.png``, ``overlay.png``, ``legend.png``, ``areas.csv``/``.json``.
    areas : tuple of dict
        Pixels, per cent (and square metres) per class.
    metrics : dict or None
        Pixel classification: accuracy report against this image's reference samples
        (also in ``out/metrics.json``).
    """

    image: Path
    out: Path
    areas: tuple[dict[str, Any], ...]
    metrics: dict[str, Any] | None = None


@dataclass(frozen=True)
class PredictResult:
    """What a predict run wrote.

    Attributes
    ----------
    maps : tuple of ImageMap
        One per image, in input order.
    metrics : dict or None
        BoF segmentation: IoU report over all images with reference masks
        (also in ``out/metrics.json``).
    """

    maps: tuple[ImageMap, ...]
    metrics: dict[str, Any] | None = None


@dataclass(frozen=True)
class EvaluateResult:
    """What an evaluate run wrote.

    Attributes
    ----------
    out : Path
        Directory holding ``metrics.json``.
    metrics : dict
        Accuracy report over the reference pixels of all images (BoF: with ``mean_iou``).
    """

    out: Path
    metrics: dict[str, Any]


# ---------------------------------------------------------------- shared steps


def _paired(
    images: Sequence[PathLike], files: Sequence[PathLike] | None, parameter: str
) -> list[PathLike | None]:
    """``files`` checked to hold one file per image; None for every image when not given."""
    if files is None:
        return [None] * len(images)
    if len(files) != len(images):
        raise ParameterError(
            parameter,
            f"give one file per image ({len(images)} images, {len(files)} files)",
        )
    return list(files)


def _read_samples(
    path: PathLike,
    shape: tuple[int, int],
    names: list[str] | None,
    colors: list[Color] | None,
    parameter: str,
) -> Samples:
    """:func:`read_samples`, a missing colour table reported against the run's ``parameter``."""
    try:
        return read_samples(path, shape, names, colors)
    except ParameterError as error:
        if error.parameter != "class_colors":
            raise
        raise ParameterError(parameter, str(error)) from error


def _classifier_params(
    classifier: str, n_estimators: int | None, classifier_params: dict[str, Any] | None
) -> dict[str, Any]:
    params = dict(classifier_params or {})
    if n_estimators is not None:
        if classifier != "random_forest":
            raise ParameterError("n_estimators", "applies to the random_forest classifier only")
        params["n_estimators"] = n_estimators
    return params


def _training_metadata(
    images: Sequence[PathLike], samples: Sequence[PathLike], colors: list[Color] | None
) -> dict[str, Any]:
    """What a model bundle records of its training run: the source files and class colours."""
    return {
        "images": [os.fspath(image) for image in images],
        "samples": [os.fspath(sample) for sample in samples],
        "class_colors": colors,
    }


def _metrics_file(metrics: dict[str, Any] | None) -> dict[str, bytes] | None:
    """The held-out report as an extra file of a model bundle, if any."""
    if metrics is None:
        return None
    return {METRICS_FILE: (json.dumps(metrics, indent=2) + "\n").encode()}


def _model_colors(model_dir: PathLike) -> list[Color] | None:
    """The class colours a model was trained with, if any."""
    colors = read_metadata(model_dir).get("class_colors")
    return None if colors is None else [tuple(color) for color in colors]


def _image_out(out: PathLike, image: PathLike, n_images: int) -> Path:
    """``out`` itself for one image; ``out/STEM`` for each of several."""
    return Path(out) if n_images == 1 else Path(out) / Path(image).stem


def _labelled_rasters(
    images: Sequence[PathLike],
    samples: Sequence[PathLike],
    classes: Sequence[str] | None,
    max_pixels: int | None,
    samples_parameter: str,
) -> tuple[list[np.ndarray], list[Samples], list[Color] | None]:
    """Each image and its samples (the run's ``samples_parameter``) in the classes of the first.

    Returns the rasters, the samples and the class colours parsed from ``classes``.
    """
    names, colors = parse_classes(classes)
    rasters, labelled = [], []
    for image, sample in zip(images, _paired(images, samples, samples_parameter), strict=True):
        raster = read_raster(image, max_pixels=max_pixels)
        labelled.append(_read_samples(sample, raster.shape[:2], names, colors, "classes"))
        names = labelled[-1].class_names
        rasters.append(raster)
        log.info("%s: %s labelled pixels per class", sample, labelled[-1].counts())
    return rasters, labelled, colors


def _references(
    images: Sequence[PathLike],
    references: Sequence[PathLike] | None,
    class_names: list[str],
    colors: list[Color] | None,
    max_pixels: int | None,
    parameter: str,
) -> Iterator[tuple[PathLike, np.ndarray, np.ndarray | None]]:
    """Each image with its reference mask (None where ``references`` is not given)."""
    for image, reference in zip(images, _paired(images, references, parameter), strict=True):
        raster = read_raster(image, max_pixels=max_pixels)
        mask = None
        if reference is not None:
            mask = _read_samples(reference, raster.shape[:2], class_names, colors, parameter).mask
        yield image, raster, mask


def _pixel_features(
    sigmas: Sequence[float], color_space: str, texture: bool, cnn: str | None
) -> PixelFeatures:
    return PixelFeatures(sigmas=tuple(sigmas), color_space=color_space, texture=texture, cnn=cnn)


def _pooled_report(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], class_names: list[str]
) -> dict[str, Any]:
    """Accuracy report over the labelled reference pixels of ``(reference, map)`` pairs."""
    return accuracy_report(
        np.concatenate([reference[reference > 0] for reference, _ in pairs]),
        np.concatenate([np.asarray(mapped)[reference > 0] for reference, mapped in pairs]),
        class_names,
    )


# ---------------------------------------------------------------- pixel clustering


def cluster_run(
    image: PathLike,
    out: PathLike,
    *,
    n_clusters: int = 5,
    method: str = "kmeans",
    sigmas: Sequence[float] = (1.0,),
    color_space: str = "lab",
    texture: bool = False,
    cnn: str | None = None,
    truth: PathLike | None = None,
    tile_size: int | None = 1024,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    pixel_size: float | None = None,
    random_state: int = 0,
) -> ClusterResult:
    """Cluster the pixels of ``image`` and write the cluster map, overlay, legend and areas.

    Parameters
    ----------
    image : path-like
        Any image :func:`~imagelearn.segment.read_raster` reads (multi-band TIFFs too).
    out : path-like
        Output directory.
    n_clusters : int
        Number of clusters (ISODATA: the target; it ends between ``n_clusters / 2`` and
        ``2 n_clusters``).
    method : {"kmeans", "isodata"}
    sigmas, color_space, texture, cnn
        The per-pixel features (see :class:`~imagelearn.segment.PixelFeatures`).
    truth : path-like, optional
        Reference label image (0 unlabelled, 1..K): writes ``agreement.json``.
    tile_size : int or None
        Tile side in pixels that prediction streams through (None: whole image).
    max_pixels : int or None
        Refuse larger images; None lifts the limit.
    pixel_size : float, optional
        Side of a pixel in metres: adds square metres to the areas.
    random_state : int
    """
    raster = read_raster(image, max_pixels=max_pixels)
    clusterer = PixelClusterer(
        n_clusters=n_clusters,
        method=method,
        features=_pixel_features(sigmas, color_space, texture, cnn),
        tile_size=tile_size,
        random_state=random_state,
    )
    clusters = clusterer.fit_predict(raster)
    names = [f"cluster{index}" for index in range(1, clusterer.n_clusters_ + 1)]
    areas = write_results(out, raster, clusters, names, pixel_size=pixel_size, title="clusters")
    agreement = None
    if truth is not None:
        reference = read_samples(truth, raster.shape[:2]).mask
        agreement = cluster_agreement(np.asarray(clusters), reference)
        atomic_write_json(Path(out) / "agreement.json", agreement)
    return ClusterResult(Path(out), tuple(names), tuple(areas), agreement)


# ---------------------------------------------------------------- pixel classification


def train_run(
    images: Sequence[PathLike],
    samples: Sequence[PathLike],
    out: PathLike,
    *,
    classes: Sequence[str] | None = None,
    classifier: str = "random_forest",
    n_estimators: int | None = None,
    classifier_params: dict[str, Any] | None = None,
    sigmas: Sequence[float] = (1.0, 2.0, 4.0, 8.0),
    color_space: str = "lab",
    texture: bool = True,
    cnn: str | None = None,
    test_size: float = 0.0,
    test_samples: Sequence[PathLike] | None = None,
    tile_size: int | None = 1024,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    random_state: int = 0,
    n_jobs: int | None = -1,
    overwrite: bool = False,
) -> TrainResult:
    """Train a :class:`PixelClassifier` from samples drawn inside ``images`` and save it to ``out``.

    Parameters
    ----------
    images : sequence of path-like
        Training images (the same band count).
    samples : sequence of path-like
        One sample file per image: a label image (0 = unlabelled), GeoJSON polygons/points or
        a CSV of ``x,y,class``.
    out : path-like
        Model bundle directory to write.
    classes : sequence of str, optional
        Class names in label order; ``"name=#RRGGBB"`` reads colour-coded label images.
    classifier : {"random_forest", "svm", "mlp"}
    n_estimators : int, optional
        Trees of the random forest (default 50).
    classifier_params : dict, optional
        Further keyword arguments of the scikit-learn classifier.
    sigmas, color_space, texture, cnn
        The per-pixel features (see :class:`~imagelearn.segment.PixelFeatures`).
    test_size : float
        Fraction of the labelled pixels held out (per class, at random) for the accuracy
        report; 0 for none.
    test_samples : sequence of path-like, optional
        Separate held-out samples, one file per image (instead of ``test_size``).
    tile_size : int or None
        Tile side in pixels that feature extraction and prediction stream through.
    max_pixels : int or None
        Refuse larger images; None lifts the limit.
    random_state : int
        Seed of the held-out split, the sample subsampling and the classifier.
    n_jobs : int or None
        Threads (-1: all cores).
    overwrite : bool
        Replace a model already saved at ``out``; without it, one there raises
        :class:`~imagelearn.core.errors.OutputExistsError` before any training.
    """
    check_output_directory(out, overwrite)
    params = _classifier_params(classifier, n_estimators, classifier_params)
    if test_samples is not None and test_size > 0:
        raise ParameterError("test_size", "give test_size or test_samples, not both")
    rasters, labelled, colors = _labelled_rasters(images, samples, classes, max_pixels, "samples")
    names = labelled[-1].class_names
    train_masks, test_masks = [], []
    for raster, sample, test_path in zip(
        rasters, labelled, _paired(images, test_samples, "test_samples"), strict=True
    ):
        mask, held_out = sample.mask, None
        if test_path is not None:
            held_out = _read_samples(test_path, raster.shape[:2], names, colors, "classes").mask
        elif test_size > 0:
            mask, held_out = split_holdout(mask, test_size, random_state)
        train_masks.append(mask)
        test_masks.append(held_out)
    model = PixelClassifier(
        features=_pixel_features(sigmas, color_space, texture, cnn),
        classifier=classifier,
        classifier_params=params,
        tile_size=tile_size,
        random_state=random_state,
        n_jobs=n_jobs,
    ).fit(rasters, train_masks, names)
    pairs = [
        (held_out, model.predict(raster))
        for raster, held_out in zip(rasters, test_masks, strict=True)
        if held_out is not None
    ]
    metrics = _pooled_report(pairs, model.class_names_) if pairs else None
    saved = model.save(out, _training_metadata(images, samples, colors), _metrics_file(metrics))
    return TrainResult(Path(saved), classifier, dict(model.n_samples_per_class_), metrics)


def _load_pixel_classifier(
    model_dir: PathLike, tile_size: int | None, n_jobs: int | None
) -> PixelClassifier:
    return PixelClassifier.load(model_dir).set_params(tile_size=tile_size, n_jobs=n_jobs)


def predict_run(
    model_dir: PathLike,
    images: Sequence[PathLike],
    out: PathLike,
    *,
    samples: Sequence[PathLike] | None = None,
    tile_size: int | None = 1024,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    pixel_size: float | None = None,
    n_jobs: int | None = -1,
) -> PredictResult:
    """Class map, ``classmap.npy`` (written tile by tile), overlay, legend and areas per image.

    Parameters
    ----------
    model_dir : path-like
        A bundle written by :func:`train_run` (or :meth:`PixelClassifier.save`).
    images : sequence of path-like
    out : path-like
        Output directory (``out/<image stem>/`` for each of several images).
    samples : sequence of path-like, optional
        Held-out reference samples, one file per image: adds ``metrics.json`` per image.
    tile_size : int or None
        Tile side in pixels that prediction streams through (None: whole image).
    max_pixels : int or None
        Refuse larger images; None lifts the limit.
    pixel_size : float, optional
        Side of a pixel in metres: adds square metres to the areas.
    n_jobs : int or None
        Threads (-1: all cores).
    """
    model = _load_pixel_classifier(model_dir, tile_size, n_jobs)
    colors = _model_colors(model_dir)
    maps = []
    for image, raster, reference in _references(
        images, samples, model.class_names_, None, max_pixels, "samples"
    ):
        image_out = _image_out(out, image, len(images))
        image_out.mkdir(parents=True, exist_ok=True)
        classmap = model.predict(raster, out=image_out / "classmap.npy")
        areas = write_results(image_out, raster, classmap, model.class_names_, colors, pixel_size)
        metrics = None
        if reference is not None:
            metrics = accuracy_report(reference, classmap, model.class_names_)
            atomic_write_json(image_out / METRICS_FILE, metrics)
        maps.append(ImageMap(Path(image), image_out, tuple(areas), metrics))
    return PredictResult(tuple(maps))


def evaluate_run(
    model_dir: PathLike,
    images: Sequence[PathLike],
    samples: Sequence[PathLike],
    out: PathLike | None = None,
    *,
    tile_size: int | None = 1024,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    n_jobs: int | None = -1,
) -> EvaluateResult:
    """Accuracy report of a saved :class:`PixelClassifier` over the reference pixels of ``images``.

    Parameters
    ----------
    model_dir : path-like
    images : sequence of path-like
    samples : sequence of path-like
        Reference samples, one file per image (label image, GeoJSON or CSV).
    out : path-like, optional
        Where to write ``metrics.json`` (default ``MODEL/evaluation``).
    tile_size, max_pixels, n_jobs
        As for :func:`predict_run`.
    """
    model = _load_pixel_classifier(model_dir, tile_size, n_jobs)
    pairs = [
        (reference, model.predict(raster))
        for _, raster, reference in _references(
            images, samples, model.class_names_, None, max_pixels, "samples"
        )
    ]
    return _write_evaluation(model_dir, out, _pooled_report(pairs, model.class_names_))


def _write_evaluation(
    model_dir: PathLike, out: PathLike | None, metrics: dict[str, Any]
) -> EvaluateResult:
    out = Path(out) if out is not None else Path(model_dir) / "evaluation"
    atomic_write_json(out / METRICS_FILE, metrics)
    return EvaluateResult(out, metrics)


# ---------------------------------------------------------------- BoF semantic segmentation


def bof_train_run(
    images: Sequence[PathLike],
    masks: Sequence[PathLike],
    out: PathLike,
    *,
    classes: Sequence[str] | None = None,
    n_words: int = 200,
    color_n_words: int = 32,
    superpixel_size: float = 16,
    compactness: float = 10.0,
    neighbor_context: bool = True,
    max_side: int | None = 512,
    classifier: str = "random_forest",
    n_estimators: int | None = None,
    classifier_params: dict[str, Any] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    random_state: int = 0,
    n_jobs: int | None = -1,
    overwrite: bool = False,
) -> TrainResult:
    """Train a :class:`BofSegmenter` on images with dense label masks and save it to ``out``.

    Parameters
    ----------
    images : sequence of path-like
    masks : sequence of path-like
        One label mask per image (0 = unlabelled, 1..K; colour-coded with ``classes``).
    out : path-like
        Model bundle directory to write.
    classes : sequence of str, optional
        Class names in label order; ``"name=#RRGGBB"`` reads colour-coded masks.
    n_words, color_n_words : int
        Words of the texture vocabulary and of the Lab colour one (0: none).
    superpixel_size, compactness : float
        SLIC superpixel side in working pixels, and its compactness.
    neighbor_context : bool
        Add the histograms of adjacent superpixels.
    max_side : int or None
        Working size: the longer side is brought down to it (None: full size).
    classifier, n_estimators, classifier_params
        As for :func:`train_run`.
    max_pixels : int or None
        Refuse larger images; None lifts the limit.
    random_state : int
    n_jobs : int or None
        Threads (-1: all cores).
    overwrite : bool
        Replace a model already saved at ``out``; without it, one there raises
        :class:`~imagelearn.core.errors.OutputExistsError` before any training.
    """
    check_output_directory(out, overwrite)
    params = _classifier_params(classifier, n_estimators, classifier_params)
    rasters, labelled, colors = _labelled_rasters(images, masks, classes, max_pixels, "masks")
    model = BofSegmenter(
        n_words=n_words,
        color_n_words=color_n_words,
        superpixel_size=superpixel_size,
        compactness=compactness,
        neighbor_context=neighbor_context,
        max_side=max_side,
        classifier=classifier,
        classifier_params=params or None,
        random_state=random_state,
        n_jobs=n_jobs,
    ).fit(rasters, [sample.mask for sample in labelled], labelled[-1].class_names)
    saved = model.save(out, _training_metadata(images, masks, colors))
    return TrainResult(Path(saved), classifier, dict(model.n_superpixels_per_class_), None)


def _bof_maps(
    model: BofSegmenter,
    colors: list[Color] | None,
    images: Sequence[PathLike],
    masks: Sequence[PathLike] | None,
    max_pixels: int | None,
) -> Iterator[tuple[PathLike, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Each image, its raster, its class map and its reference mask (or None)."""
    for image, raster, reference in _references(
        images, masks, model.class_names_, colors, max_pixels, "masks"
    ):
        yield image, raster, model.predict(raster), reference


def _iou_report(pairs: Sequence[tuple[np.ndarray, np.ndarray]], class_names: list[str]) -> dict:
    references, predictions = zip(*pairs, strict=True)
    return iou_report(references, predictions, class_names)


def bof_predict_run(
    model_dir: PathLike,
    images: Sequence[PathLike],
    out: PathLike,
    *,
    masks: Sequence[PathLike] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    pixel_size: float | None = None,
    n_jobs: int | None = -1,
) -> PredictResult:
    """Class map, overlay, legend and areas per image from a saved :class:`BofSegmenter`.

    Parameters
    ----------
    model_dir : path-like
        A bundle written by :func:`bof_train_run`.
    images : sequence of path-like
    out : path-like
        Output directory (``out/<image stem>/`` for each of several images).
    masks : sequence of path-like, optional
        Reference masks, one per image: writes the IoU report ``out/metrics.json``.
    max_pixels : int or None
    pixel_size : float, optional
        Side of a pixel in metres: adds square metres to the areas.
    n_jobs : int or None
    """
    model = BofSegmenter.load(model_dir).set_params(n_jobs=n_jobs)
    colors = _model_colors(model_dir)
    maps, pairs = [], []
    for image, raster, classmap, reference in _bof_maps(model, colors, images, masks, max_pixels):
        image_out = _image_out(out, image, len(images))
        areas = write_results(image_out, raster, classmap, model.class_names_, colors, pixel_size)
        maps.append(ImageMap(Path(image), image_out, tuple(areas)))
        if reference is not None:
            pairs.append((reference, classmap))
    metrics = None
    if pairs:
        metrics = _iou_report(pairs, model.class_names_)
        atomic_write_json(Path(out) / METRICS_FILE, metrics)
    return PredictResult(tuple(maps), metrics)


def bof_evaluate_run(
    model_dir: PathLike,
    images: Sequence[PathLike],
    masks: Sequence[PathLike],
    out: PathLike | None = None,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    n_jobs: int | None = -1,
) -> EvaluateResult:
    """IoU report of a saved :class:`BofSegmenter` against reference ``masks``, one per image.

    ``out`` receives ``metrics.json`` (default ``MODEL/evaluation``).
    """
    model = BofSegmenter.load(model_dir).set_params(n_jobs=n_jobs)
    maps = _bof_maps(model, _model_colors(model_dir), images, masks, max_pixels)
    pairs = [(reference, classmap) for _, _, classmap, reference in maps]
    return _write_evaluation(model_dir, out, _iou_report(pairs, model.class_names_))
