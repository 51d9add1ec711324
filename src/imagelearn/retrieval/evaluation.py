"""Evaluating an index: ground-truth files, UKBench's ground truth, and scoring every query.

Ground truth is a list of :class:`QueryTruth` (a query and its positive and junk database
entries, by path); it reads from and writes to JSON as
``{"queries": [{"query": ..., "positives": [...], "junk": [...]}, ...]}``. The scores are
:mod:`imagelearn.evaluation.ranking`'s.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagelearn.core.bundle import atomic_write_json
from imagelearn.core.progress import progress
from imagelearn.evaluation.ranking import QueryTruth, score_rankings

__all__ = [
    "evaluate_index",
    "load_ground_truth",
    "resolved",
    "save_ground_truth",
    "ukbench_ground_truth",
]


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
