"""Where imagelearn keeps its on-disk caches (local features, CNN embeddings)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(kind: str) -> Path:
    """``$IMAGELEARN_CACHE/<kind>``, else ``~/.cache/imagelearn/<kind>``."""
    root = os.environ.get("IMAGELEARN_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "imagelearn") / kind
