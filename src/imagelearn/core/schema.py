"""Declared shapes of the manifests: one pydantic model per bundle kind, checked before use.

A manifest comes from whoever sent the directory, so nothing in it is used before its
schema accepted it: types (strict: ``"3"`` is not an integer), required keys, value ranges.
Keys a schema does not declare are ignored. A failed check is one :class:`BundleError` line,
``DIRECTORY: not a valid WHAT: FIELD.PATH: PROBLEM``, never a pydantic traceback.

>>> from imagelearn.core.schema import BundleHeader, validate
>>> header = {"format": "imagelearn-bundle", "format_version": "1", "kind": "x", "content": {}}
>>> validate(BundleHeader, header, "runs/model", "bundle")
Traceback (most recent call last):
...
imagelearn.core.bundle.BundleError: runs/model: not a valid bundle: format_version: not an integer (got '1')
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

#: A file or folder name a manifest may give: a letter or digit first, then letters, digits,
#: ``.``, ``_`` or ``-``; so never absolute, never ``..``, never hidden, never a sub-path.
MEMBER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: A bundle kind (``"bof-classifier"``).
KIND_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
#: A Python class name.
CLASS_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"

SchemaT = TypeVar("SchemaT", bound=BaseModel)

#: The most classes a saved classifier may name (its arrays are checked against the count).
MAX_CLASSES = 100_000

#: Problems by pydantic error type, in the manifest's words.
_PROBLEMS = {
    "missing": "missing",
    "dict_type": "not a mapping",
    "list_type": "not a list",
    "tuple_type": "not a list",
    "int_type": "not an integer",
    "float_type": "not a number",
    "string_type": "not a string",
    "bool_type": "not true or false",
    "literal_error": "not one of the known values",
    "string_pattern_mismatch": "not an allowed name",
}
#: Errors quoted in one message; the others are counted.
_QUOTED_ERRORS = 3


class Schema(BaseModel):
    """Base of the manifest schemas: strict types, undeclared keys ignored, immutable."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class StateSchema(Schema):
    """Base of an estimator's learned-state schema (``PersistentEstimator.state_schema``)."""


class NoState(StateSchema):
    """The state of an estimator whose whole learned state is in its arrays."""


class Fixed:
    """A fixed-length JSON list: ``Fixed[float, 3]`` is a list of exactly three numbers.

    JSON has no tuples, and strict checking refuses a list where a tuple is declared.
    """

    def __class_getitem__(cls, item: tuple[Any, int]) -> Any:
        kind, length = item
        return Annotated[list[kind], Field(min_length=length, max_length=length)]


#: ``[path, reason]`` pairs of the images a fit could not read.
Skipped = list[Fixed[str, 2]]


def _problem(error: Any) -> str:
    kind = error["type"]
    problem = _PROBLEMS.get(kind)
    if problem is None:
        problem = str(error["msg"]).removeprefix("Value error, ").replace(" after validation", "")
        problem = re.sub(r"^[A-Z][a-z]+ should", "should", problem)
    if kind != "missing" and kind in _PROBLEMS:
        shown = repr(error.get("input"))
        problem += f" (got {shown if len(shown) <= 40 else shown[:37] + '...'})"
    return problem


def _location(error: Any) -> str:
    parts = ""
    for part in error["loc"]:
        parts += f"[{part}]" if isinstance(part, int) else f".{part}" if parts else str(part)
    return parts


def describe(error: ValidationError, at: str = "") -> str:
    """One line: ``field.path: problem`` of the first errors (below ``at``), and how many more."""
    errors = error.errors(include_url=False)
    quoted = []
    for item in errors[:_QUOTED_ERRORS]:
        location = ".".join(part for part in (at, _location(item)) if part)
        location = location.replace(".[", "[")
        quoted.append(f"{location}: {_problem(item)}" if location else _problem(item))
    more = len(errors) - _QUOTED_ERRORS
    return "; ".join(quoted) + (f"; and {more} more" if more > 0 else "")


def validate(
    schema: type[SchemaT], data: Any, source: str | os.PathLike, what: str, at: str = ""
) -> SchemaT:
    """``data`` checked against ``schema``.

    Parameters
    ----------
    schema : type of pydantic BaseModel
    data : object
        Parsed JSON.
    source : path-like
        The bundle directory, named first in the message.
    what : str
        What the directory should hold (``"index"``, ``"saved BofClassifier"``).
    at : str
        Where ``data`` sits in the manifest (``"state"``), prefixed to each field's path.

    Raises
    ------
    BundleError
        ``"SOURCE: not a valid WHAT: FIELD: PROBLEM"``, one line.
    """
    from imagelearn.core.bundle import BundleError

    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise BundleError(f"{source}: not a valid {what}: {describe(error, at)}") from None


class BundleHeader(Schema):
    """What every ``manifest.json`` starts with; ``content`` is checked by the kind's schema.

    ``format`` and a newer ``format_version`` are checked before this schema (a newer
    format may change the header itself).
    """

    format: Literal["imagelearn-bundle"]
    format_version: int = Field(ge=1)
    kind: str = Field(pattern=KIND_PATTERN)
    created: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    content: dict[str, Any]


class EstimatorContent(Schema):
    """The content of a saved estimator (:mod:`imagelearn.core.persistence`).

    ``params`` are checked further against the constructor (names and annotated types) and
    ``state`` against the estimator's :class:`StateSchema`.
    """

    estimator: str = Field(pattern=CLASS_NAME_PATTERN)
    params: dict[str, Any]
    state: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("state", mode="before")
    @classmethod
    def _state_is_a_mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "no_state", "no state (a mapping of learned values), got {got}", {"got": value}
            )
        return value


__all__ = [
    "CLASS_NAME_PATTERN",
    "KIND_PATTERN",
    "MAX_CLASSES",
    "MEMBER_NAME_PATTERN",
    "BundleHeader",
    "EstimatorContent",
    "Fixed",
    "NoState",
    "Schema",
    "Skipped",
    "StateSchema",
    "describe",
    "validate",
]
