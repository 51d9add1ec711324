"""imagelearn: machine learning on images.

Capabilities live in subpackages: :mod:`imagelearn.data` (reading collections),
:mod:`imagelearn.features` (local features), :mod:`imagelearn.bof` (bag of features),
:mod:`imagelearn.classify` (deep classification), :mod:`imagelearn.cluster`,
:mod:`imagelearn.segment` and :mod:`imagelearn.retrieval`. Bulk work over images runs
through :mod:`imagelearn.core.execution`; native threads follow :mod:`imagelearn.core.threads`.
"""

import os

from imagelearn.core.threads import choose_openblas_kernels

# Part of the thread policy of imagelearn.core.threads, set here because it must precede the
# loading of OpenMP by FAISS or PyTorch, and of FAISS's OpenBLAS: idle OpenMP threads sleep
# instead of spinning, and OpenBLAS runs the kernels this CPU supports.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
choose_openblas_kernels()

__version__ = "0.1.0"
