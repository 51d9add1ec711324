"""Large-scale instance retrieval: find every image showing the same object as a query.

>>> from imagelearn.retrieval import Index, build_index
>>> build_index(paths, "photos.index")  # doctest: +SKIP
>>> Index.open("photos.index").search("query.jpg", top=20)  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.evaluation.ranking import (
        QueryTruth,
        average_precision,
        ns_score,
        precision_at_k,
        recall_at_k,
        score_rankings,
    )
    from imagelearn.retrieval.evaluation import (
        load_ground_truth,
        save_ground_truth,
        ukbench_ground_truth,
    )
    from imagelearn.retrieval.image_map import ImageMap  # image_map(): from the module
    from imagelearn.retrieval.index import MODES, Index, Match, SearchResult
    from imagelearn.retrieval.params import DEFAULT_VOCABULARY_PARAMS, IndexParams
    from imagelearn.retrieval.snapshot import Snapshot
    from imagelearn.retrieval.storage import IndexBusyError, IndexExistsError
    from imagelearn.retrieval.tags import Tag, TagTable, classifier_tags, cluster_tags
    from imagelearn.retrieval.verification import Verification
    from imagelearn.retrieval.writer import (
        AddReport,
        IndexWriter,
        TagReport,
        add_images,
        build_index,
        remove_images,
        tag_index,
    )

__all__ = [
    "DEFAULT_VOCABULARY_PARAMS",
    "MODES",
    "AddReport",
    "ImageMap",
    "Index",
    "IndexBusyError",
    "IndexExistsError",
    "IndexParams",
    "IndexWriter",
    "Match",
    "QueryTruth",
    "SearchResult",
    "Snapshot",
    "Tag",
    "TagReport",
    "TagTable",
    "Verification",
    "add_images",
    "average_precision",
    "build_index",
    "classifier_tags",
    "cluster_tags",
    "load_ground_truth",
    "ns_score",
    "precision_at_k",
    "recall_at_k",
    "remove_images",
    "save_ground_truth",
    "score_rankings",
    "tag_index",
    "ukbench_ground_truth",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
