"""Classifying the pixels of an image: unsupervised clusters or a classifier from samples.

- :class:`PixelFeatures`: multi-scale per-pixel features (colour, gradients, texture).
- :class:`PixelClassifier`: random forest / SVM / MLP trained from sparse samples
  (label images, GeoJSON polygons, CSV points), tiled prediction, saved without pickle.
- :class:`PixelClusterer`: k-means or ISODATA clusters of pixels.
- :class:`BofSegmenter`: Bag-of-Features semantic segmentation over SLIC superpixels.
- :func:`accuracy_report`, :func:`class_areas`: the remote-sensing accuracy report and
  the area of each class.
- :mod:`imagelearn.segment.runs`: the whole workflows behind ``imagelearn segment`` (cluster,
  train, predict, evaluate; ``bof_*`` for BoF segmentation), returning frozen results.
"""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.evaluation.segmentation import accuracy_report, class_areas, cluster_agreement
    from imagelearn.segment.bof_segmentation import BofSegmenter, iou_report
    from imagelearn.segment.classifier import PixelClassifier
    from imagelearn.segment.cluster import METHODS, PixelClusterer
    from imagelearn.segment.features import COLOR_SPACES, TEXTURE_FILTERS, PixelFeatures
    from imagelearn.segment.models import CLASSIFIERS
    from imagelearn.segment.raster import ImageTooLargeError, read_raster
    from imagelearn.segment.render import write_results
    from imagelearn.segment.samples import (
        Samples,
        labels_from_colors,
        read_samples,
        simulate_scribbles,
        split_holdout,
    )

__all__ = [
    "CLASSIFIERS",
    "COLOR_SPACES",
    "METHODS",
    "TEXTURE_FILTERS",
    "BofSegmenter",
    "ImageTooLargeError",
    "PixelClassifier",
    "PixelClusterer",
    "PixelFeatures",
    "Samples",
    "accuracy_report",
    "class_areas",
    "cluster_agreement",
    "iou_report",
    "labels_from_colors",
    "read_raster",
    "read_samples",
    "simulate_scribbles",
    "split_holdout",
    "write_results",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
