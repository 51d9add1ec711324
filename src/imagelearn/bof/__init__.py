"""Bag of Features: visual vocabularies, histogram encoding and the ``BagOfFeatures`` transformer.

>>> from imagelearn.bof import BagOfFeatures
>>> bof = BagOfFeatures(detector="dense_rootsift", n_words=500, pyramid=(1, 2))
>>> histograms = bof.fit(train_paths).transform(test_paths)  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.bof.encoding import (
        NORMALIZATIONS,
        compute_idf,
        encode_histograms,
        normalize_histograms,
        pyramid_cells,
    )
    from imagelearn.bof.estimator import BagOfFeatures, DescriptorSample, sample_descriptors
    from imagelearn.bof.recognition import BofClassifier
    from imagelearn.bof.vocabulary import (
        VOCABULARIES,
        KMeansVocabulary,
        Vocabulary,
        VocabularyTree,
        make_vocabulary,
    )

__all__ = [
    "NORMALIZATIONS",
    "VOCABULARIES",
    "BagOfFeatures",
    "BofClassifier",
    "DescriptorSample",
    "KMeansVocabulary",
    "Vocabulary",
    "VocabularyTree",
    "compute_idf",
    "encode_histograms",
    "make_vocabulary",
    "normalize_histograms",
    "pyramid_cells",
    "sample_descriptors",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
