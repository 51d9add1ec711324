"""Metrics and plots for image classification, written the same way by every classifier."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from imagelearn.core.bundle import atomic_write_json, atomic_write_text
from imagelearn.core.plotting import pyplot, save_figure


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix.

    Parameters
    ----------
    y_true, y_pred : ndarray of int, shape (n_images,)
        Indices into ``class_names``.

    Returns
    -------
    dict with keys ``accuracy``, ``macro_f1``, ``n_images``, ``per_class`` (name -> precision,
    recall, f1, support), ``confusion_matrix`` (rows: true class, columns: predicted) and
    ``class_names``. For two classes, ``sensitivity`` and ``specificity`` treat the second
    class as positive (e.g. ``no``/``yes``).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    labels = np.arange(len(class_names))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    present = support > 0
    metrics: dict[str, Any] = {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n_images": len(y_true),
        "class_names": list(class_names),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": matrix.tolist(),
    }
    if len(class_names) == 2:
        metrics["sensitivity"] = float(recall[1])
        metrics["specificity"] = float(recall[0])
    return metrics


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = ""
) -> Path:
    """Save a confusion matrix (counts, rows normalised for colour) as a PNG."""
    plt = pyplot()
    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.6 * len(class_names) + 2.5)
    figure, axes = plt.subplots(figsize=(size, size * 0.85))
    axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for row, column in np.ndindex(matrix.shape):
        axes.text(
            column,
            row,
            str(matrix[row, column]),
            ha="center",
            va="center",
            color="white" if rates[row, column] > 0.5 else "black",
            fontsize=9,
        )
    axes.set_title(title or f"accuracy {np.trace(matrix) / max(matrix.sum(), 1):.3f}")
    figure.tight_layout()
    return save_figure(figure, path)


#: Most probable classes ``predictions.csv`` lists per image.
TOP_K = 3


def predictions_csv(
    paths: Sequence[str | os.PathLike],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    scores: np.ndarray | None = None,
    score_name: str = "score",
) -> str:
    """One row per image: ``path,true,predicted`` and, with ``scores``, its :data:`TOP_K` best
    classes ``label_1,SCORE_NAME_1,...`` (highest first).

    Parameters
    ----------
    scores : ndarray of float, shape (n_images, n_classes), optional
        Columns in the order of ``class_names``; NaN for a class the model cannot predict.
    score_name : str
        What the scores are (``probability``, ``margin``): the columns' name.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    k = min(TOP_K, len(class_names)) if scores is not None else 0
    ranks = range(1, k + 1)
    writer.writerow(
        ["path", "true", "predicted", *[f"{c}_{r}" for r in ranks for c in ("label", score_name)]]
    )
    for row, (path, truth, guess) in enumerate(zip(paths, y_true, y_pred, strict=True)):
        top = []
        if scores is not None:
            ranked = np.argsort(-np.nan_to_num(scores[row], nan=-np.inf), kind="stable")[:k]
            top = [value for c in ranked for value in (class_names[c], f"{scores[row, c]:.6g}")]
        writer.writerow([str(path), class_names[truth], class_names[guess], *top])
    return buffer.getvalue()


def write_evaluation(
    out_dir: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    extra: dict[str, Any] | None = None,
    scores: np.ndarray | None = None,
    score_name: str = "score",
) -> dict[str, Any]:
    """Write ``metrics.json``, ``confusion_matrix.png``, ``misclassified.csv`` and
    ``predictions.csv`` (every scored image, with its top classes: :func:`predictions_csv`)
    into ``out_dir``.

    ``extra`` entries (split description, skipped files, timings) are merged into the metrics;
    ``scores`` and ``score_name`` are :func:`predictions_csv`'s. Returns the metrics dict.
    """
    out_dir = Path(out_dir)
    metrics = classification_metrics(y_true, y_pred, class_names)
    metrics.update(extra or {})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "true", "predicted"])
    for path, truth, guess in zip(paths, y_true, y_pred, strict=True):
        if truth != guess:
            writer.writerow([str(path), class_names[truth], class_names[guess]])
    atomic_write_text(out_dir / "misclassified.csv", buffer.getvalue())
    atomic_write_text(
        out_dir / "predictions.csv",
        predictions_csv(paths, y_true, y_pred, class_names, scores, score_name),
    )
    plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]), class_names, out_dir / "confusion_matrix.png"
    )
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics
