"""Grouping unlabelled images: descriptors, clustering algorithms, reports."""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.cluster.algorithms import METHODS, ImageClusterer
    from imagelearn.cluster.descriptors import DESCRIPTORS, describe_images
    from imagelearn.cluster.duplicates import near_duplicate_groups
    from imagelearn.cluster.runs import ClusterResult, EvaluateResult, evaluate_run, fit_run
    from imagelearn.evaluation.clustering import clustering_agreement, purity

__all__ = [
    "DESCRIPTORS",
    "METHODS",
    "ClusterResult",
    "EvaluateResult",
    "ImageClusterer",
    "clustering_agreement",
    "describe_images",
    "evaluate_run",
    "fit_run",
    "near_duplicate_groups",
    "purity",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
