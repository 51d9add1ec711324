"""Retrieval scores: Oxford/Paris-style mAP with junk images, mP@k, recall@k, UKBench's N-S score.

Ground truth is a list of :class:`QueryTruth` (a query and its positive and junk database
entries, by path); it reads from and writes to JSON as
``{"queries": [{"query": ..., "positives": [...], "junk": [...]}, ...]}``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imagelearn.core.bundle import atomic_write_json
from imagelearn.core.progress import progress


@dataclass(frozen=True)
class QueryTruth:
    """One evaluation query: the image, the database entries that show the same thing, junk.

    Junk entries (partly visible, ambiguous) are removed from the ranking before scoring.
    """

    query: str
    positives: tuple[str, ...]
    junk: tuple[str, ...] = field(default_factory=tuple)


def save_ground_truth(queries: Sequence[QueryTruth], path: str | os.PathLike) -> Path:
    """Write ground truth as JSON (paths as given) atomically."""
    payload = {
        "queries": [
            {"query": q.query, "positives": list(q.positives), "junk": list(q.junk)}
            for q in queries
        ]
    }
    atomic_write_json(path, payload)
    return Path(path)


def load_ground_truth(path: str | os.PathLike) -> list[QueryTruth]:
    """Read ground truth JSON; relative paths are taken relative to the file's folder.

    Raises
    ------
    ValueError
        Unreadable JSON or a missing ``queries`` / ``query`` / ``positives`` entry.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        entries = payload["queries"]
        base = path.parent

        def resolve(name: str) -> str:
            return str(base / name) if not Path(name).is_absolute() else name

        return [
            QueryTruth(
                resolve(entry["query"]),
                tuple(resolve(p) for p in entry["positives"]),
                tuple(resolve(p) for p in entry.get("junk", ())),
            )
            for entry in entries
        ]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a ground-truth file ({error!r})") from error


def _relevance(ranked: Sequence[str], positives: Sequence[str], junk: Sequence[str]) -> np.ndarray:
    """Boolean relevance of each ranked entry after junk is removed."""
    junk_set, positive_set = set(junk), set(positives)
    return np.array([name in positive_set for name in ranked if name not in junk_set], dtype=bool)


def average_precision(
    ranked: Sequence[str], positives: Sequence[str], junk: Sequence[str] = ()
) -> float:
    """Average precision of one ranked list, Oxford Buildings protocol.

    Junk entries are dropped from the ranking; precision is integrated over recall with the
    trapezoid rule (as the Oxford/Paris evaluation does); positives never retrieved count as
    retrieved at infinity (they add no area).

    Parameters
    ----------
    ranked : sequence of str
        Database entries, best first (any length; a truncated list lowers AP).
    positives, junk : sequence of str

    Returns
    -------
    float in [0, 1]; 0 when there are no positives.
    """
    n_positives = len(set(positives))
    if n_positives == 0:
        return 0.0
    relevant = _relevance(ranked, positives, junk)
    hits = np.cumsum(relevant)
    recall = hits / n_positives
    precision = hits / np.arange(1, len(relevant) + 1)
    previous_recall = np.concatenate(([0.0], recall[:-1]))
    previous_precision = np.concatenate(([1.0], precision[:-1]))
    return float(np.sum((recall - previous_recall) * (previous_precision + precision) / 2.0))


def precision_at_k(
    ranked: Sequence[str], positives: Sequence[str], k: int, junk: Sequence[str] = ()
) -> float:
    """Fraction of the first ``k`` non-junk entries that are positives."""
    relevant = _relevance(ranked, positives, junk)[:k]
    return float(relevant.sum() / k)


def recall_at_k(
    ranked: Sequence[str], positives: Sequence[str], k: int, junk: Sequence[str] = ()
) -> float:
    """Fraction of the positives among the first ``k`` non-junk entries."""
    n_positives = len(set(positives))
    if n_positives == 0:
        return 0.0
    return float(_relevance(ranked, positives, junk)[:k].sum() / n_positives)


def ns_score(ranked_lists: Sequence[Sequence[str]], truths: Sequence[QueryTruth]) -> float:
    """UKBench's N-S score: mean number of positives (the query itself included) in the top 4.

    Best is 4.0 with groups of four images.
    """
    counts = [
        len(set(ranked[:4]) & set(truth.positives))
        for ranked, truth in zip(ranked_lists, truths, strict=True)
    ]
    return float(np.mean(counts)) if counts else 0.0


def score_rankings(
    ranked_lists: Sequence[Sequence[str]],
    truths: Sequence[QueryTruth],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """mAP, mP@k, recall@k and the N-S score of many rankings (one per query, in order)."""
    scores = {
        "mAP": float(
            np.mean(
                [
                    average_precision(r, t.positives, t.junk)
                    for r, t in zip(ranked_lists, truths, strict=True)
                ]
            )
        ),
        "N-S": ns_score(ranked_lists, truths),
    }
    for k in ks:
        scores[f"mP@{k}"] = float(
            np.mean(
                [
                    precision_at_k(r, t.positives, k, t.junk)
                    for r, t in zip(ranked_lists, truths, strict=True)
                ]
            )
        )
        scores[f"recall@{k}"] = float(
            np.mean(
                [
                    recall_at_k(r, t.positives, k, t.junk)
                    for r, t in zip(ranked_lists, truths, strict=True)
                ]
            )
        )
    return scores


def ukbench_ground_truth(paths: Sequence[str | os.PathLike]) -> list[QueryTruth]:
    """Every UKBench image is a query; its positives are the four images of its object.

    The object of ``ukbenchNNNNN.jpg`` is ``NNNNN // 4``.

    Raises
    ------
    ValueError
        A file name that is not ``ukbench<number>.<ext>``.
    """
    groups: dict[int, list[str]] = {}
    objects = []
    for path in paths:
        stem = Path(path).stem
        if not stem.startswith("ukbench") or not stem[7:].isdigit():
            raise ValueError(f"{path}: not a UKBench file name (ukbenchNNNNN.jpg)")
        objects.append(int(stem[7:]) // 4)
        groups.setdefault(objects[-1], []).append(str(path))
    return [
        QueryTruth(str(path), tuple(groups[obj])) for path, obj in zip(paths, objects, strict=True)
    ]


def evaluate_index(
    index: Any, truths: Sequence[QueryTruth], depth: int = 100, **search_options: Any
) -> dict[str, float]:
    """Search every query of ``truths`` in ``index`` and score the rankings.

    Parameters
    ----------
    index : imagelearn.retrieval.Index
    truths : sequence of QueryTruth
    depth : int
        Results retrieved per query (AP is computed on these).
    **search_options
        Passed to :meth:`Index.search` (``mode``, ``verify``, ``expand``...).

    Returns
    -------
    dict with ``mAP``, ``N-S``, ``mP@k``, ``recall@k`` and ``median_ms`` / ``p95_ms`` (latency
    per query).
    """
    truths = [resolved(truth) for truth in truths]  # the index stores resolved paths
    rankings, latencies = [], []
    for truth in progress(truths, "queries", unit="query"):
        started = time.perf_counter()
        result = index.search(truth.query, top=depth, **search_options)
        latencies.append((time.perf_counter() - started) * 1000.0)
        rankings.append([match.path for match in result.matches])
    scores = score_rankings(rankings, truths)
    scores["median_ms"] = float(np.median(latencies)) if latencies else 0.0
    scores["p95_ms"] = float(np.percentile(latencies, 95)) if latencies else 0.0
    return scores


def resolved(truth: QueryTruth) -> QueryTruth:
    """The same ground truth with absolute, symlink-free paths."""

    def resolve(path: str) -> str:
        return str(Path(path).resolve())

    return QueryTruth(
        resolve(truth.query),
        tuple(resolve(p) for p in truth.positives),
        tuple(resolve(p) for p in truth.junk),
    )
