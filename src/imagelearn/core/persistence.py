"""One persistence face for every model: ``save(directory) -> Path``, ``Model.load(directory)``.

A saved estimator is a bundle directory (:mod:`imagelearn.core.bundle`: JSON manifest and
safetensors arrays, written atomically, never pickled) holding

- ``params``: the constructor parameters from ``get_params(deep=False)``, without the
  *runtime* ones (workers, device, cache location): those belong to the machine that loads
  the model and are set after loading with ``set_params``;
- ``state``: the learned scalars and lists, as JSON, from the estimator's ``_get_state``;
- the learned arrays, from the same ``_get_state``.

Loading checks the manifest first (:mod:`imagelearn.core.schema`): the content's shape, each
parameter's name and annotated type against the constructor's signature, and the state
against the estimator's declared :attr:`PersistentEstimator.state_schema`; then it rebuilds
the estimator from its parameters and hands the checked state back to ``_set_state``.
Parameters that are estimators themselves are stored as ``{"estimator": NAME, "params":
{...}}`` of a registered class.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import ConfigDict, PydanticSchemaGenerationError, TypeAdapter, ValidationError

from imagelearn.core.bundle import BundleError, load_bundle, read_manifest, save_bundle
from imagelearn.core.schema import EstimatorContent, StateSchema, describe, validate

#: Parameters of the loading machine, never written into a manifest nor read from one.
RUNTIME_PARAMS = frozenset({"n_jobs", "device", "cache_dir", "checkpoint_dir", "verbose"})

#: Classes whose instances may appear as parameters of a saved estimator, by class name.
_PERSISTABLE: dict[str, type] = {}


def persistable(cls: type) -> type:
    """Class decorator: instances of ``cls`` may be stored as parameters of saved models."""
    _PERSISTABLE[cls.__name__] = cls
    return cls


def encode_value(value: Any) -> Any:
    """A parameter value as JSON: tuples as lists, paths as strings, estimators by name."""
    if isinstance(value, tuple | list):
        return [encode_value(item) for item in value]
    if isinstance(value, Mapping):  # a component's parameters: its runtime settings stay out
        return {
            str(key): encode_value(item) for key, item in value.items() if key not in RUNTIME_PARAMS
        }
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if type(value).__name__ in _PERSISTABLE and hasattr(value, "get_params"):
        return {"estimator": type(value).__name__, "params": encode_params(value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"parameter value of type {type(value).__name__} cannot be saved")


def encode_params(estimator: Any) -> dict[str, Any]:
    """``estimator.get_params(deep=False)`` as JSON, without :data:`RUNTIME_PARAMS`."""
    return {
        name: encode_value(value)
        for name, value in estimator.get_params(deep=False).items()
        if name not in RUNTIME_PARAMS
    }


def decode_params(cls: type, params: Any, source: str | os.PathLike) -> dict[str, Any]:
    """Constructor arguments of ``cls`` from :func:`encode_params`'s output, checked.

    Lists become tuples where the constructor's default is a tuple; nested estimators are
    rebuilt; runtime parameters are refused (a manifest never sets them); each value must
    match the constructor's annotation of its parameter (``Literal`` choices included).

    Raises
    ------
    BundleError
        Naming ``source`` when ``params`` is not a mapping of the constructor's parameters,
        or a value does not match its annotation.
    """
    if not isinstance(params, Mapping):
        problem = "missing" if params is None else f"not a mapping (got {type(params).__name__})"
        raise BundleError(f"{source}: not a valid saved model: params: {problem}")
    signature = inspect.signature(cls.__init__).parameters
    accepted = {name for name in signature if name != "self"} - RUNTIME_PARAMS
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise BundleError(
            f"{source}: not a valid saved {cls.__name__}: unknown parameter(s) "
            f"{', '.join(map(repr, unknown))}"
        )
    for name, value in params.items():
        try:
            runtime = _runtime_setting(value, f"params.{name}")
        except RecursionError:
            raise BundleError(
                f"{source}: not a valid saved model: params.{name} nests too deeply"
            ) from None
        if runtime:
            raise BundleError(
                f"{source}: not a valid saved {cls.__name__}: {runtime} is a runtime setting "
                "of the loading machine; a saved model never sets it"
            )
    decoded = {
        name: _decode_value(value, signature[name].default, source)
        for name, value in params.items()
    }
    adapters = _parameter_adapters(cls)
    for name, value in decoded.items():
        if name not in adapters:
            continue
        try:
            adapters[name].validate_python(value)
        except ValidationError:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise BundleError(
                f"{source}: not a valid saved {cls.__name__}: params.{name}: {shown} does not "
                f"match its type {signature[name].annotation}"
            ) from None
    return decoded


@cache
def _parameter_adapters(cls: type) -> dict[str, TypeAdapter]:
    """A (lax) type check per annotated constructor parameter of ``cls``.

    Parameters whose annotation cannot be resolved or checked are left out.
    """
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # an annotation naming a type only imported for checkers
        return {}
    config = ConfigDict(arbitrary_types_allowed=True)
    adapters = {}
    for name, hint in hints.items():
        if name == "return" or name in RUNTIME_PARAMS:
            continue
        try:
            adapters[name] = TypeAdapter(hint, config=config)
        except (PydanticSchemaGenerationError, TypeError):
            continue
    return adapters


def _runtime_setting(value: Any, location: str) -> str | None:
    """Where a runtime setting hides in a parameter's value (a key of a nested mapping)."""
    if isinstance(value, Mapping):
        if set(value) == {"estimator", "params"}:
            return None  # a nested estimator: checked by its own decode_params
        for key, item in value.items():
            if key in RUNTIME_PARAMS:
                return f"{location}.{key}"
            found = _runtime_setting(item, f"{location}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _runtime_setting(item, f"{location}[{index}]")
            if found:
                return found
    return None


def _decode_value(value: Any, default: Any, source: str | os.PathLike) -> Any:
    if isinstance(value, Mapping) and set(value) == {"estimator", "params"}:
        cls = _PERSISTABLE.get(value["estimator"]) if isinstance(value["estimator"], str) else None
        if cls is None:
            raise BundleError(f"{source}: unknown component {value['estimator']!r}")
        return cls(**decode_params(cls, value["params"], source))
    if isinstance(value, list) and isinstance(default, tuple):
        return tuple(value)
    return value


class PersistentEstimator:
    """Mixin giving an estimator ``save(directory) -> Path`` and ``cls.load(directory)``.

    A subclass sets :attr:`bundle_kind` and implements :meth:`_get_state` and
    :meth:`_set_state`; :meth:`_check_saveable` raises ``NotFittedError`` when unfitted.
    """

    #: What the bundle holds (``"bof-classifier"``...); checked when loading.
    bundle_kind: ClassVar[str]
    #: The declared shape of the JSON state :meth:`_get_state` returns; a loaded state is
    #: checked against it and handed to :meth:`_set_state` as its ``model_dump()``. None:
    #: unchecked (``_set_state``'s KeyError/TypeError/ValueError become a BundleError).
    state_schema: ClassVar[type[StateSchema] | None] = None

    def _check_saveable(self) -> None:
        """Raise ``sklearn.exceptions.NotFittedError`` when there is nothing to save."""
        raise NotImplementedError

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The learned state: JSON-able values and named arrays."""
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`_get_state` returned; raise KeyError/ValueError when incomplete."""
        raise NotImplementedError

    def save(
        self,
        directory: str | os.PathLike,
        metadata: Mapping[str, Any] | None = None,
        files: Mapping[str, bytes] | None = None,
    ) -> Path:
        """Write the fitted estimator to ``directory`` atomically; returns its path.

        ``metadata`` (JSON) is stored beside it and returned by :func:`read_metadata`;
        ``files`` are extra files written into the bundle (e.g. an ONNX export).
        """
        self._check_saveable()
        state, arrays = self._get_state()
        manifest = {
            "estimator": type(self).__name__,
            "params": encode_params(self),
            "state": state,
            "metadata": dict(metadata or {}),
        }
        return save_bundle(directory, self.bundle_kind, manifest, arrays, files)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Self:
        """Read an estimator written by :meth:`save` (runtime settings: ``set_params`` after)."""
        raw_content, arrays = load_bundle(directory, cls.bundle_kind)
        params = raw_content.get("params") if isinstance(raw_content, dict) else None
        model = cls(**decode_params(cls, params, directory))  # first: names what changed
        content = validate(EstimatorContent, raw_content, directory, f"saved {cls.__name__}")
        state = content.state
        if cls.state_schema is not None:
            try:
                state = cls.state_schema.model_validate(state).model_dump()
            except ValidationError as error:
                raise BundleError(
                    f"{directory}: incomplete or corrupt {cls.bundle_kind} bundle "
                    f"({describe(error, 'state')})"
                ) from None
        try:
            model._set_state(state, arrays)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise BundleError(
                f"{directory}: incomplete or corrupt {cls.bundle_kind} bundle ({error})"
            ) from error
        return model


def read_metadata(directory: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """The ``metadata`` saved with an estimator (class names, source, split...)."""
    content = read_manifest(directory, kind)["content"]
    return dict(validate(EstimatorContent, content, directory, "saved model").metadata)
