"""Moved to :mod:`imagelearn.evaluation.segmentation`; kept so that old imports still work."""

from imagelearn.evaluation.segmentation import (
    accuracy_report,
    class_areas,
    cluster_agreement,
    label_counts,
)

__all__ = ["accuracy_report", "class_areas", "cluster_agreement", "label_counts"]
