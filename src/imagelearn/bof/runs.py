"""Train, evaluate, predict and sweep BoF classifiers on image collections, writing run directories.

A run directory is the saved model bundle (``manifest.json`` + ``arrays.safetensors``) plus
``metrics.json``, ``confusion_matrix.png``, ``misclassified.csv`` and ``split.json``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagelearn.bof.recognition import DEFAULT_CHANNELS, BofClassifier
from imagelearn.core.bundle import atomic_write_json, atomic_write_text
from imagelearn.core.plotting import pyplot, save_figure
from imagelearn.core.tables import rows_to_csv
from imagelearn.data import ImageDataset, find_images, load_dataset, load_splits
from imagelearn.data.split import split_record
from imagelearn.evaluation import write_evaluation

log = logging.getLogger(__name__)


def _held_out_scores(
    model: BofClassifier, dataset: ImageDataset, strict: bool
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    features, skipped = model.extract(dataset.paths, strict=strict)
    return model.labels_from_scores(model.decision_function_features(features)), skipped


def _evaluate_into(
    out_dir: Path, model: BofClassifier, dataset: ImageDataset, strict: bool, extra: dict[str, Any]
) -> dict[str, Any]:
    """Predict ``dataset`` and write metrics/plots; unreadable images are reported, not scored."""
    predicted, skipped = _held_out_scores(model, dataset, strict)
    scored = predicted >= 0
    return write_evaluation(
        out_dir,
        [p for p, ok in zip(dataset.paths, scored, strict=True) if ok],
        dataset.labels[scored],
        predicted[scored],
        dataset.class_names,
        {**extra, "skipped": [{"path": p, "reason": r} for p, r in skipped]},
    )


def train_run(
    source: str | os.PathLike,
    out: str | os.PathLike,
    model: BofClassifier,
    test_size: float = 0.3,
    seed: int = 0,
    strict: bool = False,
) -> dict[str, Any]:
    """Fit ``model`` on the training part of ``source``, save it to ``out`` and evaluate on the held-out part.

    Returns the metrics written to ``out/metrics.json`` (``accuracy`` = held-out accuracy).
    """
    out = Path(out)
    train, held_out, how = load_splits(source, test_size=test_size, seed=seed)
    log.info(
        "training on %d images of %d classes; holding out %d (%s)",
        len(train),
        len(train.class_names),
        len(held_out),
        how,
    )
    start = time.perf_counter()
    features, skipped = model.extract(train.paths, strict=strict)
    model.fit_features(features, train.labels)
    model.skipped_ = skipped
    train_s = time.perf_counter() - start
    model.save(out, {"class_names": train.class_names, "source": str(source), "split": how})
    atomic_write_json(out / "split.json", split_record(train, held_out, how))
    extra = {
        "split": how,
        "n_train": len(train),
        "train_skipped": [{"path": p, "reason": r} for p, r in skipped],
        "train_seconds": train_s,
        "timings": model.timings_,
    }
    return _evaluate_into(out, model, held_out, strict, extra)


def evaluate_run(
    model_dir: str | os.PathLike,
    source: str | os.PathLike,
    out: str | os.PathLike | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved model on a labelled collection; writes into ``out`` (default ``MODEL/evaluation``)."""
    model, manifest = BofClassifier.load(model_dir)
    dataset = load_dataset(source, manifest["class_names"])
    dataset.require_classes(1, source)
    return _evaluate_into(
        Path(out or Path(model_dir) / "evaluation"), model, dataset, strict, {"data": str(source)}
    )


def predict_images(
    model_dir: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    strict: bool = False,
    n_jobs: int | None = None,
) -> list[dict[str, Any]]:
    """Label and score for every image in ``inputs`` (files or folders).

    ``n_jobs`` overrides the saved model's extraction processes (None keeps them).

    Returns one dict per image: ``path``, ``label`` (None if unreadable), ``score`` (SVM margin
    of the chosen class) and ``error`` (the reason an image was unreadable, else None).
    """
    model, manifest = BofClassifier.load(model_dir)
    if n_jobs is not None:
        model.set_params(n_jobs=n_jobs)
    names = manifest["class_names"]
    paths = [
        path
        for item in inputs
        for path in (find_images(item) if Path(item).is_dir() else [Path(item)])
    ]
    features, skipped = model.extract(paths, strict=strict)
    scores = model.decision_function_features(features)
    labels = model.labels_from_scores(scores)
    reasons = dict(skipped)
    rows = []
    for index, path in enumerate(paths):
        label = int(labels[index])
        if label < 0:
            rows.append(
                {
                    "path": str(path),
                    "label": None,
                    "score": None,
                    "error": reasons.get(str(path), "no features"),
                }
            )
            continue
        score = (
            scores[index] if scores.ndim == 1 else scores[index, list(model.classes_).index(label)]
        )
        if scores.ndim == 1 and label == model.classes_[0]:
            score = -score
        rows.append(
            {"path": str(path), "label": names[label], "score": float(score), "error": None}
        )
    return rows


def _directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def sweep_vocabulary(
    source: str | os.PathLike,
    out: str | os.PathLike,
    sizes: Sequence[int],
    channels: Sequence[dict[str, Any]] = DEFAULT_CHANNELS[:1],
    test_size: float = 0.3,
    seed: int = 0,
    **classifier_params: Any,
) -> list[dict[str, Any]]:
    """Measure what the vocabulary size buys: accuracy and costs for each size in ``sizes``.

    Features are extracted once; for each size the first channel's ``n_words`` is set to it.
    Writes ``sweep.csv`` and ``sweep.png`` into ``out``.

    Returns
    -------
    list of dict: ``n_words``, ``accuracy``, ``vocabulary_s`` (build time), ``encode_ms_per_image``,
    ``model_bytes`` (saved bundle size).
    """
    out = Path(out)
    train, held_out, how = load_splits(source, test_size=test_size, seed=seed)
    base = BofClassifier(channels=list(channels), **classifier_params)
    train_features, _ = base.extract(train.paths)
    test_features, _ = base.extract(held_out.paths)
    rows = []
    for n_words in sizes:
        model = BofClassifier(
            channels=[{**channels[0], "n_words": int(n_words)}, *channels[1:]], **classifier_params
        )
        model.fit_features(train_features, train.labels)
        start = time.perf_counter()
        predicted = model.labels_from_scores(model.decision_function_features(test_features))
        encode_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as scratch:
            model_bytes = _directory_bytes(model.save(Path(scratch) / "model"))
        accuracy = float(np.mean(predicted == held_out.labels))
        rows.append(
            {
                "n_words": int(n_words),
                "accuracy": accuracy,
                "vocabulary_s": model.timings_["vocabulary_s"],
                "encode_ms_per_image": 1000.0 * encode_s / max(len(held_out), 1),
                "model_bytes": model_bytes,
            }
        )
        log.info(
            "%6d words: accuracy %.3f, vocabulary %.2f s, encoding %.2f ms/image, model %.1f MB",
            n_words,
            accuracy,
            rows[-1]["vocabulary_s"],
            rows[-1]["encode_ms_per_image"],
            model_bytes / 1e6,
        )
    atomic_write_text(out / "sweep.csv", rows_to_csv(rows))
    atomic_write_json(out / "sweep.json", {"split": how, "channels": list(channels), "rows": rows})
    plot_sweep(rows, out / "sweep.png")
    return rows


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
