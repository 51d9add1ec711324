"""Benchmarks run by hand (`make bench`); each module compares imagelearn with what users would pick instead."""

import os
from pathlib import Path

# first, before a benchmark imports FAISS or OpenCV: importing imagelearn sets OPENBLAS_CORETYPE,
# which an OpenBLAS reads only when it loads (FAISS's bundled one took Sapphire Rapids for
# Prescott and ran 5x slower kernels)
import imagelearn  # noqa: F401


def data_root() -> Path:
    """The shared real data, absolute: ``$IMAGELEARN_DATA``, else ``../shared/data`` beside the repository."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("IMAGELEARN_DATA", default)).resolve()
