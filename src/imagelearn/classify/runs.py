"""Train, predict, evaluate and export deep classifiers on image collections, writing run directories.

One function per ``imagelearn classify`` verb (and :func:`compare_transfer` for ``imagelearn
transfer compare``); each returns a frozen result and prints nothing. A run directory is the
saved model bundle (``manifest.json`` + ``arrays.safetensors``) plus ``history.csv``,
``curves.png``, ``metrics.json``, ``confusion_matrix.png``, ``misclassified.csv`` and
``predictions.csv``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imagelearn.classify.backbones import BACKBONES, DEFAULT_BACKBONE
from imagelearn.classify.classifier import DeepImageClassifier, Prediction
from imagelearn.classify.training import history_csv, plot_curves
from imagelearn.classify.transfer import TransferReport, compare_transfer
from imagelearn.classify.weights import offline_candidates
from imagelearn.core.errors import ParameterError
from imagelearn.core.outputs import check_output_directory
from imagelearn.data import ImageDataset, load_dataset, load_splits
from imagelearn.data.collection import SPLIT_NAMES
from imagelearn.data.inputs import expand_image_inputs
from imagelearn.evaluation import write_evaluation
from imagelearn.evaluation.result import EvaluationResult

if TYPE_CHECKING:
    from imagelearn.classify.onnx_export import ExportCheck

__all__ = [
    "BACKENDS",
    "BackboneInfo",
    "EvaluationResult",
    "ExportResult",
    "ImagePrediction",
    "PredictResult",
    "TrainResult",
    "TransferReport",
    "compare_transfer",
    "evaluate_run",
    "export_run",
    "list_backbones",
    "predict_images",
    "train_run",
]

log = logging.getLogger(__name__)

#: What runs a saved model: PyTorch, or ONNX Runtime on an export.
BACKENDS = ("torch", "onnx")
#: Most images an export is checked on when none are given.
MAX_CHECK_IMAGES = 32


@dataclass(frozen=True)
class TrainResult(EvaluationResult):
    """A trained and saved model (in ``out``) and its held-out evaluation.

    ``metrics`` adds ``split``, ``mode``, ``backbone``, ``n_train``, ``fit_seconds`` and
    ``skipped`` (unreadable training and held-out images) to the evaluation's.

    Attributes
    ----------
    model : DeepImageClassifier
        The fitted model, as saved in ``out``.
    """

    model: DeepImageClassifier


@dataclass(frozen=True)
class ImagePrediction:
    """The most probable classes of one image, or why it has none.

    Attributes
    ----------
    path : str
    top : tuple of (class name, probability)
        Most probable first; empty when the image is unreadable.
    error : str or None
        Why the image could not be read.
    """

    path: str
    top: tuple[tuple[str, float], ...]
    error: str | None = None


@dataclass(frozen=True)
class PredictResult:
    """Top-``top_k`` classes of images: the readable ones in input order, then the unreadable.

    Attributes
    ----------
    images : tuple of ImagePrediction
    top_k : int
        Classes per image (at most the model's class count).
    """

    images: tuple[ImagePrediction, ...]
    top_k: int

    @property
    def n_labeled(self) -> int:
        """Images that got classes."""
        return sum(image.error is None for image in self.images)

    def as_records(self) -> list[dict[str, Any]]:
        """One dict per image, ready for JSON: ``path``, ``predictions`` (``label``,
        ``probability`` rounded to 6 digits) and, for an unreadable image, ``error``."""
        return [
            {
                "path": image.path,
                "predictions": [
                    {"label": label, "probability": round(probability, 6)}
                    for label, probability in image.top
                ],
            }
            | ({"error": image.error} if image.error else {})
            for image in self.images
        ]

    def to_csv(self) -> str:
        """CSV text: ``path``, ``label_1``, ``probability_1``... ``label_K``, ``probability_K``, ``error``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        ranks = range(1, self.top_k + 1)
        writer.writerow(
            [
                "path",
                *[f"{name}_{rank}" for rank in ranks for name in ("label", "probability")],
                "error",
            ]
        )
        for image in self.images:
            cells = [value for label, p in image.top for value in (label, f"{p:.6f}")]
            writer.writerow(
                [image.path, *cells, *[""] * (2 * self.top_k - len(cells)), image.error or ""]
            )
        return buffer.getvalue()


@dataclass(frozen=True)
class ExportResult:
    """An ONNX export and its check against PyTorch.

    Attributes
    ----------
    onnx : Path
        The written file.
    check : ExportCheck
        See :class:`~imagelearn.classify.onnx_export.ExportCheck`.
    """

    onnx: Path
    check: ExportCheck


@dataclass(frozen=True)
class BackboneInfo:
    """A registered backbone as ``imagelearn classify backbones`` lists it.

    Attributes
    ----------
    name : str
    weights : str
        Where its ImageNet weights come from, or ``"none (train from scratch)"``.
    offline_weights : bool
        Its weights are installed in a package (no download needed).
    default : bool
        It is :data:`~imagelearn.classify.DEFAULT_BACKBONE`.
    """

    name: str
    weights: str
    offline_weights: bool
    default: bool


def _held_out_splits(
    source: str | os.PathLike, test_size: float, random_state: int
) -> tuple[ImageDataset, ImageDataset, ImageDataset, str]:
    """Training, validation (early stopping) and test (metrics) sets; validation may be the test set."""
    source = Path(source)
    train, held_out, how = load_splits(source, test_size, random_state)
    if how == "given:test" and (source / "val").is_dir():
        return train, load_dataset(source / "val", train.class_names), held_out, "given:val+test"
    return train, held_out, held_out, how


def _write_evaluation(
    out: Path, dataset: ImageDataset, prediction: Prediction, extra: dict[str, Any]
) -> dict[str, Any]:
    """Metrics and plots of ``prediction`` on the labelled ``dataset``, written into ``out``."""
    return write_evaluation(
        out,
        [dataset.paths[i] for i in prediction.kept],
        dataset.labels[prediction.kept],
        prediction.probabilities.argmax(1),
        dataset.class_names,
        extra,
        scores=prediction.probabilities,
        score_name="probability",
    )


def train_run(
    source: str | os.PathLike,
    out: str | os.PathLike,
    model: DeepImageClassifier | None = None,
    test_size: float = 0.3,
    random_state: int = 0,
    overwrite: bool = False,
) -> TrainResult:
    """Fit ``model`` on the training part of ``source``, save it with its learning curves to ``out``
    and evaluate it on the held-out part.

    Parameters
    ----------
    source : path
        A collection :func:`~imagelearn.data.load_splits` reads. With ``train/``, ``val/`` and
        ``test/`` folders, ``val/`` drives early stopping and ``test/`` the metrics; otherwise
        the held-out part (a given ``val/``, or a seeded stratified split of ``test_size``)
        serves both.
    out : path
        The run directory.
    model : DeepImageClassifier, optional
        Fitted in place; None: ``DeepImageClassifier(random_state=random_state, checkpoint_dir=out)``.
    random_state : int
        Seed of the split.
    overwrite : bool
        Replace a finished run at ``out``; without it, one there raises
        :class:`~imagelearn.core.errors.OutputExistsError`. An unfinished run there (killed
        before saving its model) is continued by a ``model`` with ``resume=True`` and
        ``checkpoint_dir=out``, else trained afresh.

    Returns
    -------
    TrainResult
        ``metrics`` as written to ``out/metrics.json`` (``accuracy`` = held-out accuracy).
    """
    out = check_output_directory(out, overwrite)
    if model is None:
        model = DeepImageClassifier(random_state=random_state, checkpoint_dir=out)
    train, validation, test, how = _held_out_splits(source, test_size, random_state)
    log.info(
        "training %s (%s) on %d images, %d classes; held out: %s",
        model.mode,
        model.backbone,
        len(train),
        len(train.class_names),
        how,
    )
    started = time.perf_counter()
    model.fit(
        train.paths,
        train.labels,
        validation=(validation.paths, validation.labels),
        class_names=train.class_names,
    )
    fit_seconds = time.perf_counter() - started
    model.save(
        out,
        metadata={"source": str(source), "split": how},
        files={"history.csv": history_csv(model.history_).encode()},
    )
    plot_curves(model.history_, out / "curves.png", f"{model.mode} / {model.backbone_name_}")
    prediction = model.predict_images(test.paths)
    extra = {
        "split": how,
        "mode": model.mode,
        "backbone": model.backbone_name_,
        "n_train": len(train),
        "fit_seconds": round(fit_seconds, 2),
        "skipped": [
            {"path": path, "reason": reason}
            for path, reason in model.skipped_ + prediction.failures
        ],
    }
    return TrainResult(out, _write_evaluation(out, test, prediction, extra), model)


def _load_predictor(
    model: str | os.PathLike,
    backend: str,
    device: str | None,
    cache_dir: str | os.PathLike | None,
):
    """Something with ``class_names_`` and ``predict_images(images, strict)``."""
    if backend not in BACKENDS:
        raise ParameterError("backend", f"backend must be one of {BACKENDS}, got {backend!r}")
    model = Path(model)
    if backend == "onnx":
        from imagelearn.classify.onnx_export import OnnxClassifier

        return OnnxClassifier(model / "model.onnx" if model.is_dir() else model)
    return DeepImageClassifier.load(model).set_params(device=device, cache_dir=cache_dir)


def predict_images(
    model: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    top_k: int = 3,
    backend: str = "torch",
    device: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    strict: bool = False,
) -> PredictResult:
    """The ``top_k`` most probable classes of every image in ``images`` (files or folders).

    Parameters
    ----------
    model : path
        A run directory, or (with ``backend="onnx"``) an ``.onnx`` file or a run directory
        holding ``model.onnx``.
    backend : {"torch", "onnx"}
    device : str or None
        PyTorch device (None: the GPU when there is one).
    cache_dir : path or None
        Embedding cache of frozen-backbone models (None: the default, ``""``: none).
    strict : bool
        Raise on the first unreadable image instead of reporting it.

    Raises
    ------
    FileNotFoundError
        ``images`` name no image.
    """
    paths = expand_image_inputs(images)
    if not paths:
        raise FileNotFoundError(f"no images in {' '.join(map(str, images))}")
    predictor = _load_predictor(model, backend, device, cache_dir)
    prediction = predictor.predict_images(paths, strict=strict)
    names = predictor.class_names_
    k = max(1, min(top_k, len(names)))
    readable = []
    for row, index in enumerate(prediction.kept):
        order = np.argsort(-prediction.probabilities[row], kind="stable")[:k]
        top = tuple((names[c], float(prediction.probabilities[row, c])) for c in order)
        readable.append(ImagePrediction(str(paths[index]), top))
    unreadable = [ImagePrediction(path, (), reason) for path, reason in prediction.failures]
    return PredictResult(tuple(readable + unreadable), k)


def evaluate_run(
    model: str | os.PathLike,
    source: str | os.PathLike,
    out: str | os.PathLike | None = None,
    backend: str = "torch",
    device: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    strict: bool = False,
) -> EvaluationResult:
    """Score a saved model on a labelled collection; writes the report into ``out``.

    Parameters
    ----------
    model : path
        As in :func:`predict_images`.
    source : path
        Class folders or a CSV; a split folder is scored on its ``test/``, else its ``val/``.
    out : path or None
        Default: ``evaluation/`` in the run directory (beside the ``.onnx`` file).
    backend, device, cache_dir, strict
        As in :func:`predict_images`.

    Returns
    -------
    EvaluationResult
        ``metrics`` adds ``source``, ``backend``, ``predict_seconds`` and ``skipped``.
    """
    predictor = _load_predictor(model, backend, device, cache_dir)
    source = Path(source)
    split = next(
        (source / name for name in reversed(SPLIT_NAMES) if (source / name).is_dir()), source
    )
    dataset = load_dataset(split, predictor.class_names_)
    dataset.require_classes(1, split)
    started = time.perf_counter()
    prediction = predictor.predict_images(dataset.paths, strict=strict)
    seconds = time.perf_counter() - started
    model = Path(model)
    out = Path(out) if out else (model if model.is_dir() else model.parent) / "evaluation"
    extra = {
        "source": str(split),
        "backend": backend,
        "predict_seconds": round(seconds, 2),
        "skipped": [{"path": path, "reason": reason} for path, reason in prediction.failures],
    }
    return EvaluationResult(out, _write_evaluation(out, dataset, prediction, extra))


def _default_check_images(model_dir: Path, model: DeepImageClassifier) -> list[Path]:
    """The run's held-out images it got wrong, then a few it was trained on (those still there)."""
    misclassified = model_dir / "misclassified.csv"
    candidates: list[Path] = []
    if misclassified.is_file():
        with misclassified.open(newline="", encoding="utf-8") as stream:
            candidates = [Path(row["path"]) for row in csv.DictReader(stream)]
    candidates += [Path(path) for path in model.example_images_]
    return [path for path in candidates if path.is_file()][:MAX_CHECK_IMAGES]


def export_run(
    model: str | os.PathLike,
    onnx: str | os.PathLike | None = None,
    check_images: Sequence[str | os.PathLike] | None = None,
) -> ExportResult:
    """Export a run's model to ONNX, checked against PyTorch on real images.

    Parameters
    ----------
    model : path
        A run directory.
    onnx : path or None
        The file to write; default ``MODEL/model.onnx``.
    check_images : sequence of paths (files or folders), optional
        Default: the run's misclassified held-out images, then a few training images (at
        most :data:`MAX_CHECK_IMAGES`).

    Raises
    ------
    ValueError
        ONNX Runtime disagrees with PyTorch; nothing is written.
    """
    from imagelearn.classify.onnx_export import export_onnx

    model_dir = Path(model)
    classifier = DeepImageClassifier.load(model_dir)
    images = (
        _default_check_images(model_dir, classifier)
        if check_images is None
        else expand_image_inputs(check_images)
    )
    target = Path(onnx) if onnx else model_dir / "model.onnx"
    return ExportResult(target, export_onnx(classifier, target, images))


def list_backbones() -> tuple[BackboneInfo, ...]:
    """Every registered backbone, sorted by name."""
    return tuple(
        BackboneInfo(
            name=name,
            weights=spec.weights or spec.weights_file or "none (train from scratch)",
            offline_weights=bool(offline_candidates(spec)),
            default=name == DEFAULT_BACKBONE,
        )
        for name, spec in sorted(BACKBONES.items())
    )
