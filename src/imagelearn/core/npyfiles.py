"""NumPy's ``.npy`` and ``.npz`` files, read safely from several threads at once.

Reading an array file's header calls ``ast.literal_eval``. Up to CPython 3.12, turning source
into AST objects keeps its recursion depth in state that all threads share, and a garbage
collection in the middle can hand the GIL to another thread doing the same: one of them then
fails with ``SystemError: AST constructor recursion depth mismatch`` (python/cpython#106905,
fixed in 3.13). The web app reads index arrays on its request threads while its writer reads
others, so every construction of AST objects in the package holds :data:`AST_LOCK`: these
readers, and :mod:`imagelearn.core.lazy`'s parse of a package's names.
"""

from __future__ import annotations

import os
import threading
from typing import Literal

import numpy as np

#: Held while the package builds AST objects (``ast.parse``, ``ast.literal_eval``).
AST_LOCK = threading.Lock()


def load_npy(path: str | os.PathLike, mmap_mode: Literal["r"] | None = None) -> np.ndarray:
    """The array of the ``.npy`` file ``path`` (memory-mapped read-only with ``mmap_mode="r"``);
    no pickles. Raises what ``np.load`` raises (OSError, ValueError)."""
    with AST_LOCK:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``, by name, read into memory; no pickles.
    Raises what ``np.load`` and its members raise (OSError, ValueError, ``zipfile.BadZipFile``)."""
    with AST_LOCK, np.load(path, allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}
