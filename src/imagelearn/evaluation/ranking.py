"""Ranking scores: Oxford/Paris-style mAP with junk entries, mP@k, recall@k, UKBench's N-S score.

A ranking is a sequence of database entries (paths), best first; its ground truth is a
:class:`QueryTruth`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class QueryTruth:
    """One evaluation query: the image, the database entries that show the same thing, junk.

    Junk entries (partly visible, ambiguous) are removed from the ranking before scoring.
    """

    query: str
    positives: tuple[str, ...]
    junk: tuple[str, ...] = field(default_factory=tuple)


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
