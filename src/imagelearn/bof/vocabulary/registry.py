"""The vocabulary kinds by name, and :func:`make_vocabulary` (validated like detectors).

Names and parameters are checked by :mod:`.words` (the fitted halves, which a retrieval index
uses without scikit-learn), with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.base import clone

from imagelearn.bof.vocabulary.base import Vocabulary
from imagelearn.bof.vocabulary.flat import KMeansVocabulary
from imagelearn.bof.vocabulary.tree import VocabularyTree
from imagelearn.bof.vocabulary.words import check_vocabulary_params, words_class
from imagelearn.core.errors import ParameterError

#: Vocabulary kinds by name, for :func:`make_vocabulary` and ``BagOfFeatures(vocabulary=...)``.
VOCABULARIES: dict[str, type[Vocabulary]] = {"kmeans": KMeansVocabulary, "tree": VocabularyTree}


def vocabulary_class(kind: str) -> type[Vocabulary]:
    """The vocabulary class registered as ``kind``.

    Raises
    ------
    ParameterError
        ``parameter="vocabulary"``: ``kind`` is not a name in :data:`VOCABULARIES`.
    """
    words_class(kind)
    return VOCABULARIES[kind]


def make_vocabulary(
    vocabulary: str | Vocabulary,
    vocabulary_params: Mapping[str, Any] | None = None,
    **params: Any,
) -> Vocabulary:
    """An unfitted vocabulary: a registered kind with its parameters, or a copy of an instance.

    ``make_vocabulary("tree", {"branching": 16, "depth": 2})`` and
    ``make_vocabulary("tree", branching=16, depth=2)`` build the same tree: keyword
    arguments are merged into ``vocabulary_params``.

    Parameters
    ----------
    vocabulary : str or Vocabulary
        A name in :data:`VOCABULARIES` (``"kmeans"``, ``"tree"``), or an unfitted instance,
        which is cloned (its parameters are its own: none may be given beside it).
    vocabulary_params : mapping or None
        Parameters of the chosen class; every key must be one of its ``__init__`` parameters.

    Raises
    ------
    ParameterError
        ``parameter="vocabulary"``: unknown kind or not a :class:`Vocabulary`;
        ``parameter="vocabulary_params"``: not a mapping, a key the class does not take (the
        message lists the accepted ones), or parameters given beside an instance.
    """
    if vocabulary_params is not None and not isinstance(vocabulary_params, Mapping):
        raise ParameterError(
            "vocabulary_params",
            f"vocabulary_params must be a dict or None; got {type(vocabulary_params).__name__}",
        )
    merged = {**(vocabulary_params or {}), **params}
    if isinstance(vocabulary, Vocabulary):
        if merged:
            raise ParameterError(
                "vocabulary_params",
                f"vocabulary is a {type(vocabulary).__name__} instance, which carries its own "
                f"parameters; set {', '.join(sorted(merged))} on it, or name its kind instead",
            )
        return clone(vocabulary)
    kind = vocabulary_class(vocabulary)
    check_vocabulary_params(vocabulary, merged)
    return kind(**merged)
