"""Evaluation shared by every classifier: metrics, confusion matrices, reports."""

from imagelearn.evaluation.classification import (
    classification_metrics,
    plot_confusion_matrix,
    write_evaluation,
)

__all__ = ["classification_metrics", "plot_confusion_matrix", "write_evaluation"]
