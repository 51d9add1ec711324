"""imagelearn: machine learning on images.

Capabilities live in subpackages: :mod:`imagelearn.data` (reading collections),
:mod:`imagelearn.features` (local features), :mod:`imagelearn.bof` (bag of features),
:mod:`imagelearn.classify` (deep classification), :mod:`imagelearn.cluster`,
:mod:`imagelearn.segment` and :mod:`imagelearn.retrieval`.
"""

__version__ = "0.1.0"
