"""Benchmarks run by hand (`make bench`); each module compares imagelearn with what users would pick instead."""

import os
from pathlib import Path


def data_root() -> Path:
    """The shared real data, absolute: ``$IMAGELEARN_DATA``, else ``../shared/data`` beside the repository."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("IMAGELEARN_DATA", default)).resolve()
