"""Every estimator of the package by class name, imported only when asked for.

Each one keeps the estimator contract (scikit-learn conventions, ``NotFittedError`` before
``fit``, no state set by ``predict``/``transform``/``track``) and the persistence contract
(``save(directory) -> Path``, ``Cls.load(directory) -> Cls``); see docs/architecture.md.
``tests/test_estimator_contract.py`` checks both over every entry, so a new estimator is
tested by adding it here and a tiny real case to that test's table. Components that learn
nothing (``PixelFeatures``, ``GeMDescriptor``, the detectors) are not estimators and are not
listed: they are saved as the parameters of the estimators that use them.

>>> sorted(all_estimators())[:2]  # doctest: +SKIP
['BagOfFeatures', 'BofClassifier']
"""

from __future__ import annotations

from importlib import import_module

#: Estimator class name -> ``"module:Class"``; the modules are imported by :func:`all_estimators`.
ESTIMATORS: dict[str, str] = {
    "BagOfFeatures": "imagelearn.bof.estimator:BagOfFeatures",
    "BofClassifier": "imagelearn.bof.recognition:BofClassifier",
    "BofSegmenter": "imagelearn.segment.bof_segmentation:BofSegmenter",
    "DeepImageClassifier": "imagelearn.classify.classifier:DeepImageClassifier",
    "ImageClusterer": "imagelearn.cluster.algorithms:ImageClusterer",
    "KMeansVocabulary": "imagelearn.bof.vocabulary.flat:KMeansVocabulary",
    "ObjectTracker": "imagelearn.tracking.tracker:ObjectTracker",
    "PCAWhitening": "imagelearn.retrieval.whitening:PCAWhitening",
    "PixelClassifier": "imagelearn.segment.classifier:PixelClassifier",
    "PixelClusterer": "imagelearn.segment.cluster:PixelClusterer",
    "VocabularyTree": "imagelearn.bof.vocabulary.tree:VocabularyTree",
}


def estimator_class(name: str) -> type:
    """The class registered as ``name`` in :data:`ESTIMATORS` (its module imported now).

    Raises
    ------
    KeyError
        ``name`` is not registered (the message lists the registered names).
    """
    try:
        module, _, attribute = ESTIMATORS[name].partition(":")
    except KeyError:
        raise KeyError(
            f"unknown estimator {name!r}; registered: {', '.join(sorted(ESTIMATORS))}"
        ) from None
    return getattr(import_module(module), attribute)


def all_estimators() -> dict[str, type]:
    """Every registered estimator class by name, in :data:`ESTIMATORS` order."""
    return {name: estimator_class(name) for name in ESTIMATORS}
