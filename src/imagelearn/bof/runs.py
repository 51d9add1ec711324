"""Train, evaluate, predict and sweep BoF classifiers on image collections, writing run directories.

One function per ``imagelearn bof`` verb; each returns a frozen result and prints nothing.
A run directory is the saved model bundle (``manifest.json`` + ``arrays.safetensors``) plus
``metrics.json``, ``confusion_matrix.png``, ``misclassified.csv``, ``predictions.csv`` and
``split.json``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagelearn.bof.inspection import (
    ImageWords,
    channel_encoder,
    draw_image_words,
    image_words,
    load_model,
    rank_words,
    save_png,
    word_montage,
    word_occurrences,
    word_weights,
)
from imagelearn.bof.recognition import DEFAULT_CHANNELS, DEFAULT_MAX_SIDE, BofClassifier
from imagelearn.core.bundle import atomic_write_json, atomic_write_text
from imagelearn.core.errors import ParameterError
from imagelearn.core.outputs import check_output_directory
from imagelearn.core.plotting import pyplot, save_figure
from imagelearn.core.progress import progress
from imagelearn.core.tables import rows_to_csv
from imagelearn.data import ImageDataset, load_dataset, load_splits
from imagelearn.data.inputs import expand_image_inputs
from imagelearn.data.split import split_record
from imagelearn.evaluation import write_evaluation
from imagelearn.evaluation.result import EvaluationResult

log = logging.getLogger(__name__)

#: Vocabulary sizes :func:`sweep_vocabulary` tries when none are given.
DEFAULT_SWEEP_SIZES = (50, 100, 200, 500, 1000, 2000)


@dataclass(frozen=True)
class TrainResult(EvaluationResult):
    """A trained and saved model (in ``out``) and its held-out evaluation.

    Attributes
    ----------
    model : BofClassifier
        The fitted model, as saved in ``out``.
    """

    model: BofClassifier


@dataclass(frozen=True)
class ImagePrediction:
    """The label of one image, or why it has none.

    Attributes
    ----------
    path : str
    label : str or None
        Class name; None when the image is unreadable.
    score : float or None
        SVM margin of the chosen class.
    error : str or None
        Why the image has no label.
    """

    path: str
    label: str | None
    score: float | None
    error: str | None


@dataclass(frozen=True)
class PredictResult:
    """One :class:`ImagePrediction` per input image, in input order."""

    images: tuple[ImagePrediction, ...]

    @property
    def n_labeled(self) -> int:
        """Images that got a label."""
        return sum(image.label is not None for image in self.images)

    def as_records(self) -> list[dict[str, Any]]:
        """One dict per image (``path``, ``label``, ``score``, ``error``), ready for JSON."""
        return [asdict(image) for image in self.images]

    def to_csv(self) -> str:
        """CSV text with the columns ``path,label,score,error``."""
        return rows_to_csv(self.as_records())


@dataclass(frozen=True)
class SweepRow:
    """What one vocabulary size buys and costs.

    Attributes
    ----------
    n_words : int
    accuracy : float
        Held-out accuracy.
    vocabulary_s : float
        Vocabulary build time, seconds.
    encode_ms_per_image : float
        Encoding and scoring time per held-out image, milliseconds.
    model_bytes : int
        Size of the saved bundle.
    """

    n_words: int
    accuracy: float
    vocabulary_s: float
    encode_ms_per_image: float
    model_bytes: int


@dataclass(frozen=True)
class SweepResult:
    """The rows of a sweep, in the order of the sizes tried; ``sweep.csv``, ``sweep.json`` and
    ``sweep.png`` are in ``out``."""

    out: Path
    rows: tuple[SweepRow, ...]


def make_channels(
    detector: str = "dense_rootsift",
    n_words: int | None = None,
    color_n_words: int | None = None,
    vocabulary: str = "kmeans",
    pyramid: Sequence[int] = (1, 2),
    assignment: str | None = "soft",
    step: int | None = 4,
    sample_size: int | None = 200_000,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> list[dict[str, Any]]:
    """The ``channels`` of a :class:`BofClassifier`: ``detector`` words, then Lab color words.

    Parameters
    ----------
    detector : str
        Local feature detector of the first channel (see :mod:`imagelearn.features`).
    n_words : int or None
        Vocabulary size of the detector channel; None: the default model's
        (:data:`~imagelearn.bof.recognition.DEFAULT_CHANNELS`, 2000) for k-means, the tree's
        own ``branching ** depth`` for the tree.
    color_n_words : int or None
        Vocabulary size of a ``dense_lab`` color channel added beside it; 0: none; None: the
        default model's (256).
    vocabulary : {"kmeans", "tree"}
        Vocabulary of the detector channel.
    pyramid : sequence of int
        Spatial pyramid grid sizes of every channel.
    assignment : {"hard", "soft"} or None
    step : int or None
        Grid spacing of dense detectors, pixels.
    max_side : int or None
        Longer side, pixels, to which dense detectors shrink an image first; None: the
        original size. Given only with ``step``.
    sample_size : int or None
        Descriptors sampled to build each vocabulary.

    ``assignment``, ``step`` and ``sample_size`` None leave the
    :class:`~imagelearn.bof.estimator.BagOfFeatures` (or detector) default.
    """
    gray, color = DEFAULT_CHANNELS
    shared = {"pyramid": tuple(pyramid), "assignment": assignment, "sample_size": sample_size}
    shared = {key: value for key, value in shared.items() if value is not None}
    channels = [
        {
            "detector": detector,
            "n_words": gray["n_words"] if n_words is None and vocabulary == "kmeans" else n_words,
            "vocabulary": vocabulary,
            **shared,
        }
    ]
    dense_params = {"step": step, "max_side": max_side}
    if step is not None:
        channels[0]["detector_params"] = dense_params if detector.startswith("dense") else None
    color_n_words = color["n_words"] if color_n_words is None else color_n_words
    if color_n_words > 0:
        channels.append({"detector": "dense_lab", "n_words": color_n_words, **shared})
        if step is not None:
            channels[1]["detector_params"] = dense_params
    return channels


def _evaluate_into(
    out_dir: Path, model: BofClassifier, dataset: ImageDataset, strict: bool, extra: dict[str, Any]
) -> dict[str, Any]:
    """Predict ``dataset`` and write metrics/plots; unreadable images are reported, not scored."""
    prediction = model.predict_images(dataset.paths, strict=strict)
    margins = np.full((len(prediction.kept), len(dataset.class_names)), np.nan)
    margins[:, prediction.classes] = prediction.scores
    return write_evaluation(
        out_dir,
        [dataset.paths[index] for index in prediction.kept],
        dataset.labels[prediction.kept],
        prediction.labels,
        dataset.class_names,
        {**extra, "skipped": [{"path": p, "reason": r} for p, r in prediction.failures]},
        scores=margins,
        score_name="margin",
    )


def train_run(
    source: str | os.PathLike,
    out: str | os.PathLike,
    model: BofClassifier | None = None,
    test_size: float = 0.3,
    random_state: int = 0,
    strict: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Fit ``model`` on the training part of ``source``, save it to ``out`` and evaluate on the held-out part.

    Parameters
    ----------
    source : path
        A collection :func:`~imagelearn.data.load_splits` reads: given split folders, or a
        seeded stratified split holding out ``test_size`` of every class.
    out : path
        The run directory.
    model : BofClassifier, optional
        Fitted in place; None: ``BofClassifier(random_state=random_state)``.
    random_state : int
        Seed of the split.
    strict : bool
        Unreadable images raise instead of being skipped (and reported in the metrics).
    overwrite : bool
        Replace a finished run at ``out``; without it, one there raises
        :class:`~imagelearn.core.errors.OutputExistsError`.

    Returns
    -------
    TrainResult
        ``metrics`` as written to ``out/metrics.json`` (``accuracy`` = held-out accuracy).
    """
    out = check_output_directory(out, overwrite)
    model = BofClassifier(random_state=random_state) if model is None else model
    train, held_out, how = load_splits(source, test_size=test_size, random_state=random_state)
    log.info(
        "training on %d images of %d classes; holding out %d (%s)",
        len(train),
        len(train.class_names),
        len(held_out),
        how,
    )
    start = time.perf_counter()
    model.fit(train.paths, train.labels, class_names=train.class_names, strict=strict)
    train_s = time.perf_counter() - start
    model.save(out, metadata={"source": str(source), "split": how})
    atomic_write_json(out / "split.json", split_record(train, held_out, how))
    extra = {
        "split": how,
        "n_train": len(train),
        "train_skipped": [{"path": p, "reason": r} for p, r in model.skipped_],
        "train_seconds": train_s,
        "timings": model.timings_,
    }
    return TrainResult(out, _evaluate_into(out, model, held_out, strict, extra), model)


def evaluate_run(
    model_dir: str | os.PathLike,
    source: str | os.PathLike,
    out: str | os.PathLike | None = None,
    strict: bool = False,
) -> EvaluationResult:
    """Evaluate a saved model on a labelled collection; writes into ``out`` (default ``MODEL/evaluation``)."""
    model = BofClassifier.load(model_dir)
    dataset = load_dataset(source, model.class_names_)
    dataset.require_classes(1, source)
    out = Path(out or Path(model_dir) / "evaluation")
    return EvaluationResult(out, _evaluate_into(out, model, dataset, strict, {"data": str(source)}))


def predict_images(
    model_dir: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    strict: bool = False,
    n_jobs: int | None = None,
) -> PredictResult:
    """Label and score for every image in ``inputs`` (files or folders).

    ``n_jobs``: processes for feature extraction (None: the estimator's default, all cores);
    a runtime setting, never saved with the model.
    Unreadable images get no label and the reason in ``error``.
    """
    model = BofClassifier.load(model_dir)
    if n_jobs is not None:
        model.set_params(n_jobs=n_jobs)
    names = model.class_names_
    paths = expand_image_inputs(inputs)
    prediction = model.predict_images(paths, strict=strict)
    images = [ImagePrediction(str(path), None, None, None) for path in paths]
    for index, (_, reason) in zip(prediction.failed, prediction.failures, strict=True):
        images[index] = ImagePrediction(str(paths[index]), None, None, reason)
    for index, label, scores in zip(
        prediction.kept, prediction.labels, prediction.scores, strict=True
    ):
        images[index] = ImagePrediction(str(paths[index]), names[label], float(scores.max()), None)
    return PredictResult(tuple(images))


def _directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def sweep_vocabulary(
    source: str | os.PathLike,
    out: str | os.PathLike,
    n_words: Sequence[int] = DEFAULT_SWEEP_SIZES,
    channels: Sequence[dict[str, Any]] = DEFAULT_CHANNELS[:1],
    test_size: float = 0.3,
    random_state: int = 0,
    kernel: str = "chi2",
    C: float = 1.0,
    n_jobs: int = -1,
    cache_dir: str | os.PathLike | bool | None = None,
    overwrite: bool = False,
) -> SweepResult:
    """Measure what the vocabulary size buys: accuracy and costs for each size in ``n_words``.

    Features are extracted once; for each size the first channel's ``n_words`` is set to it.
    ``kernel``, ``C``, ``n_jobs``, ``cache_dir`` and ``random_state`` (also the seed of the
    split) are the :class:`BofClassifier`'s. Writes ``sweep.csv``, ``sweep.json`` and
    ``sweep.png`` into ``out``; a finished sweep there (its ``sweep.json``) is replaced only
    with ``overwrite`` (else :class:`~imagelearn.core.errors.OutputExistsError`).
    """
    if channels[0].get("vocabulary", "kmeans") != "kmeans":
        raise ParameterError(
            "vocabulary",
            "a sweep varies n_words, the size of a flat k-means vocabulary; a vocabulary "
            "tree's size is branching ** depth",
        )
    out = check_output_directory(out, overwrite, "sweep.json")
    train, held_out, how = load_splits(source, test_size=test_size, random_state=random_state)
    classifier_params = {
        "kernel": kernel,
        "C": C,
        "n_jobs": n_jobs,
        "cache_dir": cache_dir,
        "random_state": random_state,
    }
    base = BofClassifier(channels=list(channels), **classifier_params)
    train_features, _ = base.extract(train.paths)
    test_features, _ = base.extract(held_out.paths)
    rows = []
    for size in n_words:
        model = BofClassifier(
            channels=[{**channels[0], "n_words": int(size)}, *channels[1:]], **classifier_params
        )
        model.fit_features(train_features, train.labels, train.class_names)
        start = time.perf_counter()
        prediction = model.predict_features(test_features)
        encode_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as scratch:
            model_bytes = _directory_bytes(model.save(Path(scratch) / "model"))
        row = SweepRow(
            n_words=int(size),
            accuracy=float(np.mean(prediction.labels == held_out.labels[prediction.kept])),
            vocabulary_s=model.timings_["vocabulary_s"],
            encode_ms_per_image=1000.0 * encode_s / max(len(held_out), 1),
            model_bytes=model_bytes,
        )
        rows.append(row)
        log.info(
            "%6d words: accuracy %.3f, vocabulary %.2f s, encoding %.2f ms/image, model %.1f MB",
            row.n_words,
            row.accuracy,
            row.vocabulary_s,
            row.encode_ms_per_image,
            model_bytes / 1e6,
        )
    records = [asdict(row) for row in rows]
    # the first channel's n_words is what the rows vary
    swept = [{k: v for k, v in channels[0].items() if k != "n_words"}, *channels[1:]]
    atomic_write_text(out / "sweep.csv", rows_to_csv(records))
    atomic_write_json(out / "sweep.json", {"split": how, "channels": swept, "rows": records})
    plot_sweep(records, out / "sweep.png")
    return SweepResult(out, tuple(rows))


def plot_sweep(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Four panels against vocabulary size: accuracy, build time, encoding time, model size."""
    plt = pyplot()
    sizes = [row["n_words"] for row in rows]
    panels = [
        ("accuracy", "held-out accuracy", 1.0),
        ("vocabulary_s", "vocabulary build (s)", 1.0),
        ("encode_ms_per_image", "encoding (ms / image)", 1.0),
        ("model_bytes", "model size (MB)", 1e-6),
    ]
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for axis, (key, label, scale) in zip(axes, panels, strict=True):
        axis.plot(sizes, [row[key] * scale for row in rows], marker="o")
        axis.set_xscale("log")
        axis.set_xlabel("vocabulary size (words)")
        axis.set_title(label)
        axis.grid(alpha=0.3)
    figure.suptitle("Vocabulary size: detail against cost")
    figure.tight_layout()
    save_figure(figure, path)


@dataclass(frozen=True)
class WordsResult:
    """The montages of the chosen words of one channel, and ``words.json``, in ``out``.

    Attributes
    ----------
    out : Path
    words : tuple of int
        The words drawn, in the order chosen.
    montages : tuple of Path
        One PNG per word (``word_WORD.png``).
    n_images : int
        Images read (the unreadable ones are in ``words.json``).
    seconds : float
        The pass over the images (features, words), without the montages.
    """

    out: Path
    words: tuple[int, ...]
    montages: tuple[Path, ...]
    n_images: int
    seconds: float


def words_run(
    model_dir: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    words: Sequence[int] | None = None,
    top: int = 16,
    per_word: int = 24,
    channel: int | str = 0,
    by: str = "weight",
    n_jobs: int | None = None,
    overwrite: bool = False,
) -> WordsResult:
    """What the visual words of a saved BoF model look like on the images ``inputs`` (files or
    folders): one montage of the ``per_word`` patches nearest to each word
    (:mod:`imagelearn.bof.inspection`) and ``words.json`` (every drawn word's occurrences,
    SVM weight and patches, with the image paths).

    Parameters
    ----------
    words : sequence of int, optional
        The words to draw; None: the ``top`` first by ``by`` (:func:`~imagelearn.bof.inspection.rank_words`:
        ``"weight"``, the SVM's, or ``"frequency"``) among the words that occur.
    channel : int or str
        Index or detector name of the channel.
    n_jobs : int, optional
        Processes for feature extraction (None: the model's default, all cores).
    overwrite : bool
        Replace a finished pass at ``out`` (its ``words.json``).
    """
    model = load_model(model_dir)
    index, encoder = channel_encoder(model, channel)
    if n_jobs is not None:
        encoder.set_params(n_jobs=n_jobs)
    paths = expand_image_inputs(inputs)
    out = check_output_directory(out, overwrite, "words.json")
    start = time.perf_counter()
    occurrences = word_occurrences(model, paths, index, per_word)
    seconds = time.perf_counter() - start
    chosen = (
        rank_words(model, index, by, occurrences)[: int(top)]
        if words is None
        else np.asarray([int(word) for word in words], dtype=np.int64)
    )
    for word in chosen:
        occurrences.of(int(word))  # an unknown word fails before anything is written
    weights = word_weights(model, index) if isinstance(model, BofClassifier) else None
    out.mkdir(parents=True, exist_ok=True)
    montages, records = [], []
    for word in progress(chosen.tolist(), "word montages", unit="word"):
        montages.append(save_png(word_montage(occurrences, word), out / f"word_{word}.png"))
        patches = occurrences.of(word).records()
        for patch in patches:
            patch["image"] = occurrences.images[patch["image"]]
        records.append(
            {
                "word": word,
                "occurrences": int(occurrences.counts[word]),
                "svm_weight": None if weights is None else float(weights[word]),
                "montage": montages[-1].name,
                "patches": patches,
            }
        )
    atomic_write_json(
        out / "words.json",
        {
            "model": str(model_dir),
            "channel": index,
            "detector": occurrences.detector,
            "n_words": occurrences.n_words,
            "ranked_by": by if words is None else "given",
            "n_images": len(paths) - len(occurrences.failures),
            "skipped": [{"path": p, "reason": r} for p, r in occurrences.failures],
            "seconds": seconds,
            "words": records,
        },
    )
    return WordsResult(
        out,
        tuple(chosen.tolist()),
        tuple(montages),
        len(paths) - len(occurrences.failures),
        seconds,
    )


def explain_image(
    model_dir: str | os.PathLike,
    image: str | os.PathLike,
    out: str | os.PathLike,
    channel: int | str = 0,
    top: int = 5,
) -> ImageWords:
    """The ``top`` strongest words of one image under a saved BoF model's ``channel``, their
    patches outlined on it, saved as the PNG ``out``; returns the
    :class:`~imagelearn.bof.inspection.ImageWords` (its histogram as the model encodes it)."""
    found = image_words(model_dir, image, channel, top)
    save_png(draw_image_words(found), out)
    return found
