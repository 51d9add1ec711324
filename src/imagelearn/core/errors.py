"""The package's own error types: what a user can cause and fix, raised by the library.

Every error a user can cause derives from :class:`ImagelearnError`, so a caller (the CLI, the
web app) catches one type. Messages name the file and the problem in the API's words, never a
command-line flag: :class:`ParameterError` carries the API parameter's name in ``parameter``,
and the CLI, whose flags carry the same names (``n_words`` -> ``--n-words``), adds the flag.
"""

from __future__ import annotations


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
