"""Old import path of the reader: :class:`imagelearn.retrieval.Index` lives in
:mod:`imagelearn.retrieval.index`."""

from imagelearn.retrieval.index import MODES, Index, Match, SearchResult

__all__ = ["MODES", "Index", "Match", "SearchResult"]
