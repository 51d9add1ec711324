"""Metrics of every capability, and the evaluation reports classifiers write.

One module per kind of result: :mod:`~imagelearn.evaluation.classification` (labels),
:mod:`~imagelearn.evaluation.clustering` (groups against labels),
:mod:`~imagelearn.evaluation.segmentation` (class maps against reference pixels),
:mod:`~imagelearn.evaluation.ranking` (retrieval rankings) and
:mod:`~imagelearn.evaluation.tracking` (boxes per frame).
"""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.evaluation.classification import (
        classification_metrics,
        plot_confusion_matrix,
        write_evaluation,
    )
    from imagelearn.evaluation.clustering import clustering_agreement, purity
    from imagelearn.evaluation.ranking import (
        QueryTruth,
        average_precision,
        ns_score,
        precision_at_k,
        recall_at_k,
        score_rankings,
    )
    from imagelearn.evaluation.segmentation import accuracy_report, class_areas, cluster_agreement
    from imagelearn.evaluation.tracking import box_iou, success_rate

__all__ = [
    "QueryTruth",
    "accuracy_report",
    "average_precision",
    "box_iou",
    "class_areas",
    "classification_metrics",
    "cluster_agreement",
    "clustering_agreement",
    "ns_score",
    "plot_confusion_matrix",
    "precision_at_k",
    "purity",
    "recall_at_k",
    "score_rankings",
    "success_rate",
    "write_evaluation",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
