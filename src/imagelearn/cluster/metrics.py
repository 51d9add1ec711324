"""Moved to :mod:`imagelearn.evaluation.clustering`; kept so that old imports still work."""

from imagelearn.evaluation.clustering import clustering_agreement, purity

__all__ = ["clustering_agreement", "purity"]
