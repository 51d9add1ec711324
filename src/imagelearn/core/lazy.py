"""Public names of a package imported on first use, so that importing a package stays cheap.

A package lists its public names once, as ordinary imports under ``if TYPE_CHECKING:`` (so
type checkers and editors see them), and ends with::

    __getattr__, __dir__ = lazy_exports(__name__, __file__)

:func:`lazy_exports` reads those imports from the package's own source; each name is imported
from its module on first access (PEP 562) and then kept in the package's namespace. So
``import imagelearn.retrieval`` loads neither PyTorch nor scikit-learn's metrics, and
``from imagelearn.retrieval import Index`` loads only what :class:`Index` needs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagelearn.core.npyfiles import AST_LOCK


def lazy_exports(
    package: str, init_file: str
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` of ``package``, from the imports of its ``if TYPE_CHECKING:``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    init_file : str
        The package's ``__file__`` (its ``__init__.py``).

    Returns
    -------
    getattr, dir : callables
        A name listed under ``if TYPE_CHECKING:`` is imported from its module when first
        asked for; a submodule's name imports the submodule; any other name raises
        ``AttributeError``.
    """
    origins = _type_checking_imports(package, Path(init_file).read_text(encoding="utf-8"))
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name in origins:
            module, attribute = origins[name]
            value = getattr(importlib.import_module(module), attribute)
        elif importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *origins})

    return __getattr__, __dir__


def _type_checking_imports(package: str, source: str) -> dict[str, tuple[str, str]]:
    """``{name: (module, attribute)}`` of the ``from ... import`` statements under the
    top-level ``if TYPE_CHECKING:`` blocks of ``source``."""
    origins: dict[str, tuple[str, str]] = {}
    with AST_LOCK:  # one AST construction at a time (core.npyfiles)
        tree = ast.parse(source)
    for node in tree.body:
        if not (isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")):
            continue
        for statement in node.body:
            if isinstance(statement, ast.ImportFrom):
                module = importlib.util.resolve_name(
                    "." * statement.level + (statement.module or ""), package
                )
                for alias in statement.names:
                    origins[alias.asname or alias.name] = (module, alias.name)
    return origins
