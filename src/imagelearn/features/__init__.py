"""Local features for Bag of Features and matching: keypoint and dense detectors, cached extraction.

Example::

    from imagelearn.features import make_detector, extract_features

    detector = make_detector("dense_rootsift", step=4, sizes=(16, 24, 32))
    features, skipped = extract_features(paths, detector)  # all cores, cached on disk
"""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.features.base import LocalFeatures
    from imagelearn.features.dense import DenseLab, DenseOpponentRootSIFT, DenseRootSIFT, DenseSIFT
    from imagelearn.features.detectors import AKAZE, ORB, SIFT, Detector, RootSIFT
    from imagelearn.features.extract import default_cache_dir, extract_features
    from imagelearn.features.registry import DETECTORS, make_detector

__all__ = [
    "AKAZE",
    "DETECTORS",
    "ORB",
    "SIFT",
    "DenseLab",
    "DenseOpponentRootSIFT",
    "DenseRootSIFT",
    "DenseSIFT",
    "Detector",
    "LocalFeatures",
    "RootSIFT",
    "default_cache_dir",
    "extract_features",
    "make_detector",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
