"""The package's own error types: what a user can cause and fix, raised by the library.

Every error a user can cause derives from :class:`ImagelearnError`, so a caller (the CLI, the
web app) catches one type. Messages name the file and the problem in the API's words, never a
command-line flag: :class:`ParameterError` carries the API parameter's name in ``parameter``,
and the CLI, whose flags carry the same names (``n_words`` -> ``--n-words``), adds the flag.
"""

from __future__ import annotations

import os
from pathlib import Path


class ImagelearnError(Exception):
    """Base of the errors a user can cause and fix (bad input, bad settings, bad files)."""


class ParameterError(ImagelearnError, ValueError):
    """A parameter value that cannot be used; ``parameter`` names it as the API spells it.

    Parameters
    ----------
    parameter : str
        The API parameter's name (``"n_words"``, ``"weights"``); the CLI maps it to its flag.
    message : str
        What is wrong and what would work, without naming a command-line flag.
    """

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(message)


class OutputExistsError(ParameterError, FileExistsError):
    """A finished run (a saved model, an index, a report) is already where a run would write.

    ``directory`` names it; write elsewhere, or pass ``overwrite=True`` to replace it
    (``parameter`` is ``"overwrite"``, so the CLI names ``--overwrite``).

    Parameters
    ----------
    directory : path-like
    what : str
        What is there, for the message (``"a saved model"``, ``"an index"``).
    advice : str
        What would work instead.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        what: str = "a finished run",
        advice: str = "choose another output directory, or allow replacing it",
    ) -> None:
        self.directory = Path(directory)
        super().__init__("overwrite", f"{directory}: {what} is already there; {advice}")
