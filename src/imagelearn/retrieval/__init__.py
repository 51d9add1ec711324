"""Large-scale instance retrieval: find every image showing the same object as a query.

>>> from imagelearn.retrieval import Index, build_index
>>> build_index(paths, "photos.index")  # doctest: +SKIP
>>> Index.open("photos.index").search("query.jpg", top=20)  # doctest: +SKIP
"""

from imagelearn.retrieval.evaluation import (
    QueryTruth,
    average_precision,
    load_ground_truth,
    ns_score,
    precision_at_k,
    recall_at_k,
    save_ground_truth,
    score_rankings,
    ukbench_ground_truth,
)
from imagelearn.retrieval.index import (
    AddReport,
    IndexParams,
    add_images,
    build_index,
    remove_images,
)
from imagelearn.retrieval.search import MODES, Index, Match, SearchResult
from imagelearn.retrieval.storage import IndexBusyError
from imagelearn.retrieval.verification import Verification

__all__ = [
    "MODES",
    "AddReport",
    "Index",
    "IndexBusyError",
    "IndexParams",
    "Match",
    "QueryTruth",
    "SearchResult",
    "Verification",
    "add_images",
    "average_precision",
    "build_index",
    "load_ground_truth",
    "ns_score",
    "precision_at_k",
    "recall_at_k",
    "remove_images",
    "save_ground_truth",
    "score_rankings",
    "ukbench_ground_truth",
]
