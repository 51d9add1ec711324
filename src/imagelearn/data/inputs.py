"""Image inputs as a user names them: files and folders, mixed."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from imagelearn.data.collection import find_images


def expand_image_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """The images of ``inputs``: a folder gives the images under it (sorted), a file itself.

    A file is kept even when it is missing or unreadable, so that the run reports it by name.
    """
    return [
        path
        for item in inputs
        for path in (find_images(item) if Path(item).is_dir() else [Path(item)])
    ]
