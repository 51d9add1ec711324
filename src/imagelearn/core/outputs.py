"""The one overwrite rule of every command that writes a run directory.

A finished run (its marker file written last is there: a model's ``manifest.json``, a
report's ``summary.json``...) is refused unless ``overwrite``; an unfinished one (a run killed
before its end) is written over, or resumed where the run supports it (``classify train``
with ``resume``, ``index build``).
"""

from __future__ import annotations

import os
from pathlib import Path

from imagelearn.core.bundle import MANIFEST_NAME
from imagelearn.core.errors import OutputExistsError


def check_output_directory(
    out: str | os.PathLike, overwrite: bool, marker: str = MANIFEST_NAME
) -> Path:
    """``out`` as a Path, once it is sure not to hold a finished run that must be kept.

    Parameters
    ----------
    out : path-like
        The run directory.
    overwrite : bool
        Allow replacing a finished run.
    marker : str
        The file a finished run of this kind has in ``out`` (default: a saved model's manifest).

    Raises
    ------
    OutputExistsError
        ``out/marker`` exists and not ``overwrite``.
    """
    out = Path(out)
    if not overwrite and (out / marker).exists():
        raise OutputExistsError(out)
    return out
