"""imagelearn: machine learning on images.

Capabilities live in subpackages: :mod:`imagelearn.data` (reading collections),
:mod:`imagelearn.features` (local features), :mod:`imagelearn.bof` (bag of features),
:mod:`imagelearn.classify` (deep classification), :mod:`imagelearn.cluster`,
:mod:`imagelearn.segment` and :mod:`imagelearn.retrieval`. Bulk work over images runs
through :mod:`imagelearn.core.execution`; native threads follow :mod:`imagelearn.core.threads`.
"""

from imagelearn.core.threads import configure_environment

configure_environment()  # before any subpackage loads FAISS or PyTorch (OpenMP)

__version__ = "0.1.0"
