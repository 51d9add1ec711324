"""Accuracy of class maps against reference pixels, and areas per class.

The accuracy report is the remote-sensing one (Congalton and Green): the confusion matrix
with reference classes in rows and mapped classes in columns, overall accuracy, Cohen's
kappa, and per class the producer's accuracy (recall: how much of the reference class was
mapped as it) and the user's accuracy (precision: how much of what was mapped as the class
really is it), plus F1 and IoU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Rows of a class map counted at a time (bounded memory on memory-mapped maps).
_ROWS_PER_CHUNK = 1024


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def accuracy_report(
    reference: np.ndarray,
    mapped: np.ndarray,
    class_names: Sequence[str],
    labels: Sequence[int] | None = None,
) -> dict:
    """Compare mapped labels with reference labels at the same pixels.

    Parameters
    ----------
    reference, mapped : int ndarrays of the same shape
        Reference pixels with 0 (unlabelled) are ignored.
    class_names : list of str
        Name of label ``k`` at index ``k - 1``.
    labels : list of int, optional
        Labels to report (default ``1..len(class_names)``).

    Returns
    -------
    dict with ``n_pixels``, ``accuracy``, ``kappa``, ``labels``, ``classes``,
    ``confusion_matrix`` (rows: reference, columns: mapped), and per class name
    ``producers_accuracy``, ``users_accuracy``, ``f1``, ``iou``, ``support``
    (None where undefined).
    """
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    reference, mapped = np.asarray(reference).ravel(), np.asarray(mapped).ravel()
    if reference.shape != mapped.shape:
        raise ValueError(f"reference has {reference.size} pixels but the map {mapped.size}")
    labels = list(labels) if labels is not None else list(range(1, len(class_names) + 1))
    labelled = reference > 0
    if not labelled.any():
        raise ValueError("no labelled reference pixels to evaluate on")
    reference, mapped = reference[labelled], mapped[labelled]
    matrix = confusion_matrix(reference, mapped, labels=labels)
    names = [class_names[label - 1] for label in labels]
    diagonal = np.diag(matrix)
    rows, columns = matrix.sum(axis=1), matrix.sum(axis=0)
    kappa = (
        cohen_kappa_score(reference, mapped, labels=labels)
        if len(np.unique(reference)) > 1
        else None
    )
    return {
        "n_pixels": int(labelled.sum()),
        "accuracy": float(np.mean(reference == mapped)),
        "kappa": None if kappa is None or np.isnan(kappa) else float(kappa),
        "labels": labels,
        "classes": names,
        "confusion_matrix": matrix.tolist(),
        "producers_accuracy": {name: _ratio(diagonal[i], rows[i]) for i, name in enumerate(names)},
        "users_accuracy": {name: _ratio(diagonal[i], columns[i]) for i, name in enumerate(names)},
        "f1": {name: _ratio(2 * diagonal[i], rows[i] + columns[i]) for i, name in enumerate(names)},
        "iou": {
            name: _ratio(diagonal[i], rows[i] + columns[i] - diagonal[i])
            for i, name in enumerate(names)
        },
        "support": {name: int(rows[i]) for i, name in enumerate(names)},
    }


def label_counts(label_map: np.ndarray, n_labels: int) -> np.ndarray:
    """Pixels of each label ``0..n_labels`` in a (possibly memory-mapped) label map."""
    counts = np.zeros(n_labels + 1, dtype=np.int64)
    for start in range(0, label_map.shape[0], _ROWS_PER_CHUNK):
        chunk = np.asarray(label_map[start : start + _ROWS_PER_CHUNK]).ravel()
        counts += np.bincount(chunk, minlength=n_labels + 1)[: n_labels + 1]
    return counts


def class_areas(
    label_map: np.ndarray, class_names: Sequence[str], pixel_size: float | None = None
) -> list[dict]:
    """Area of each class in a class map.

    Parameters
    ----------
    label_map : int ndarray ``(H, W)`` with values ``0..K`` (0: no class)
    class_names : list of str, name of label ``k`` at ``k - 1``
    pixel_size : float, optional
        Side of one pixel in metres; adds ``square_metres``.

    Returns
    -------
    list of dict, one per class: ``label``, ``class``, ``pixels``, ``percent``
    (of all pixels) and optionally ``square_metres``.
    """
    counts = label_counts(label_map, len(class_names))
    total = max(1, int(label_map.shape[0]) * int(label_map.shape[1]))
    rows = []
    for label, name in enumerate(class_names, start=1):
        row = {
            "label": label,
            "class": name,
            "pixels": int(counts[label]),
            "percent": 100.0 * counts[label] / total,
        }
        if pixel_size is not None:
            row["square_metres"] = float(counts[label]) * pixel_size**2
        rows.append(row)
    return rows


def cluster_agreement(clusters: np.ndarray, reference: np.ndarray) -> dict:
    """How well unsupervised clusters match reference classes (reference 0 is ignored).

    Returns
    -------
    dict with ``adjusted_rand``, ``normalized_mutual_info``, ``purity`` (accuracy when each
    cluster is named after its most frequent reference class), ``cluster_to_class``
    (that naming) and ``majority_baseline`` (the most frequent class's share).
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    clusters, reference = np.asarray(clusters).ravel(), np.asarray(reference).ravel()
    labelled = reference > 0
    clusters, reference = clusters[labelled], reference[labelled]
    table = np.zeros(
        (int(clusters.max(initial=0)) + 1, int(reference.max(initial=0)) + 1), dtype=np.int64
    )
    np.add.at(table, (clusters, reference), 1)
    return {
        "n_pixels": int(labelled.sum()),
        "adjusted_rand": float(adjusted_rand_score(reference, clusters)),
        "normalized_mutual_info": float(normalized_mutual_info_score(reference, clusters)),
        "purity": float(table.max(axis=1).sum() / max(1, clusters.size)),
        "cluster_to_class": {int(c): int(table[c].argmax()) for c in np.unique(clusters)},
        "majority_baseline": float(table.sum(axis=0).max() / max(1, clusters.size)),
    }
