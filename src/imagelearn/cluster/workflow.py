"""Moved to :mod:`imagelearn.cluster.runs`; kept so that old imports still work."""

from __future__ import annotations

from typing import Any

from imagelearn.cluster.runs import ORGANIZE, fit_run, organize_into_folders

__all__ = ["ORGANIZE", "cluster_collection", "organize_into_folders"]


def cluster_collection(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`~imagelearn.cluster.runs.fit_run`'s ``summary`` (the old name and return type)."""
    return fit_run(*args, **kwargs).summary
