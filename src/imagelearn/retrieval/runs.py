"""The instance-retrieval workflows, one function per ``imagelearn index`` verb.

Each takes image files or folders (searched recursively) and API parameters, does the whole
workflow and returns a small frozen result; none prints.

>>> from imagelearn.retrieval.runs import build_run, search_run
>>> build_run(["photos/"], "photos.index", vocabulary="kmeans", n_words=20_000)  # doctest: +SKIP
>>> search_run("photos.index", "query.jpg", top=5).format()  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imagelearn.bof.vocabulary import words_class
from imagelearn.core.errors import ParameterError
from imagelearn.core.images import ImageReadError
from imagelearn.data.inputs import expand_image_inputs
from imagelearn.retrieval.benchmark import make_variant_benchmark, viewpoint_pairs
from imagelearn.retrieval.evaluation import (
    evaluate_index,
    load_ground_truth,
    ukbench_ground_truth,
)
from imagelearn.retrieval.index import Index, SearchResult
from imagelearn.retrieval.params import DEFAULT_VOCABULARY_PARAMS, IndexParams, flat_index_kind

if TYPE_CHECKING:  # the writer (scikit-learn's PCA whitening among its imports) loads to write
    from imagelearn.retrieval.writer import AddReport, TagReport

log = logging.getLogger(__name__)

#: The shape options of each vocabulary kind that :func:`build_run` takes.
VOCABULARY_OPTIONS = {"tree": ("branching", "depth", "beam_width"), "kmeans": ("n_words",)}

Sources = Sequence[str | os.PathLike]


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_run` did: the index directory, its parameters, the images' report."""

    index: Path
    params: IndexParams
    report: AddReport


@dataclass(frozen=True)
class AddResult:
    """What :func:`add_run` did: the index directory and the images' report."""

    index: Path
    report: AddReport


@dataclass(frozen=True)
class TagResult:
    """What :func:`tag_run` did: the index directory and the tagging's report."""

    index: Path
    report: TagReport


@dataclass(frozen=True)
class RemoveResult:
    """What :func:`remove_run` did: paths removed, and paths that were not in the index."""

    index: Path
    removed: tuple[str, ...]
    missing: tuple[str, ...]


@dataclass(frozen=True)
class InfoResult:
    """Counts, parameters and sizes (bytes) of an index (see :meth:`Index.info`)."""

    index: Path
    info: dict[str, Any]


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of an index against ground truth (see :func:`~imagelearn.retrieval.evaluation.evaluate_index`).

    Attributes
    ----------
    index : Path
    n_queries : int
    scores : dict of str to float
        ``mAP``, ``N-S``, ``mP@k``, ``recall@k``, ``median_ms`` and ``p95_ms`` per query.
    """

    index: Path
    n_queries: int
    scores: dict[str, float]


@dataclass(frozen=True)
class BenchmarkResult:
    """A variant benchmark written by :func:`benchmark_run`.

    Attributes
    ----------
    ground_truth : Path
        ``ground_truth.json`` (for :func:`evaluate_run`).
    database : Path
        ``database.txt``: every image to index, one absolute path a line.
    n_originals, n_pairs : int
        Photos altered into variants, and real viewpoint pairs, each one query.
    """

    ground_truth: Path
    database: Path
    n_originals: int
    n_pairs: int


def image_paths(sources: Sources) -> list[str]:
    """Image files given, and those found (sorted) in the folders given, in the given order.

    A file given is kept even when it is missing or unreadable, so that the run reports it.
    """
    return [str(path) for path in expand_image_inputs(sources)]


def vocabulary_params(vocabulary: str, **options: int | None) -> dict[str, Any]:
    """The index's vocabulary parameters of the kind ``vocabulary`` with ``options`` set.

    Parameters
    ----------
    vocabulary : {"tree", "kmeans"}
    **options : int or None
        ``branching``, ``depth``, ``beam_width`` (tree) or ``n_words`` (kmeans); None keeps
        :data:`~imagelearn.retrieval.params.DEFAULT_VOCABULARY_PARAMS`. A flat vocabulary is
        searched through an HNSW graph from 50,000 words on, exactly below.

    Raises
    ------
    ParameterError
        An unknown kind, or an option given that the kind does not take (``parameter`` names it).
    """
    words_class(vocabulary)
    given = {name: value for name, value in options.items() if value is not None}
    for name in given:
        if name not in VOCABULARY_OPTIONS[vocabulary]:
            kinds = [kind for kind, names in VOCABULARY_OPTIONS.items() if name in names]
            raise ParameterError(
                name,
                f"{name} applies to the {' or '.join(kinds) or 'no'} vocabulary, "
                f"not to {vocabulary!r}",
            )
    params = {**DEFAULT_VOCABULARY_PARAMS[vocabulary], **given}
    if vocabulary == "kmeans":
        params["index"] = flat_index_kind(int(params["n_words"]))
    return params


def imagenet_weights_available(backbone: str) -> bool:
    """Whether the ImageNet weights of ``backbone`` are on this machine, PyTorch included;
    nothing is downloaded."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    from imagelearn.classify.backbones import get_spec
    from imagelearn.classify.weights import local_imagenet_weights

    return local_imagenet_weights(get_spec(backbone)) is not None


def has_imagenet_classifier(backbone: str) -> bool:
    """Whether ``backbone``'s ImageNet classifier is one linear layer (which tags images)."""
    from imagelearn.classify.backbones import get_spec

    return get_spec(backbone).classifier is not None


def build_run(
    images: Sources,
    out: str | os.PathLike,
    *,
    vocabulary: str = "tree",
    branching: int | None = None,
    depth: int | None = None,
    beam_width: int | None = None,
    n_words: int | None = None,
    global_descriptor: bool | None = None,
    tags: bool | None = None,
    overwrite: bool = False,
    n_jobs: int | None = -1,
    cache_dir: Any = None,
    **params: Any,
) -> BuildResult:
    """Index ``images`` into the directory ``out`` (an interrupted build there is resumed).

    Parameters
    ----------
    images : sequence of path-like
        Image files or folders.
    out : path-like
    vocabulary : {"tree", "kmeans"}
    branching, depth, beam_width : int, optional
        Shape of a tree vocabulary, and the nodes kept per level when assigning (1: greedy;
        2-5 find nearer words, slower). None: a 10 x 5 tree (10^5 words), greedy.
    n_words : int, optional
        Size of a flat k-means vocabulary (None: 100,000); searched through an HNSW graph
        from 50,000 words on.
    global_descriptor : bool, optional
        Also index GeM CNN descriptors, for the global and hybrid search modes (hybrid, the
        most accurate, is then the default mode of :meth:`Index.search`). None: when the
        backbone's ImageNet weights are on this machine, else local features only, with a
        logged notice; True fetches the weights if need be.
    tags : bool, optional
        Also tag every image with its most probable ImageNet classes, from the global
        descriptor's network pass (:mod:`imagelearn.retrieval.tags`), for keyword search.
        None: with the global descriptor, where the backbone's ImageNet classifier is one
        linear layer (MobileNetV2's is).
    overwrite : bool
        Replace a finished index at ``out``.
    n_jobs : int or None
        Processes for feature extraction (-1: all cores).
    cache_dir : path-like, None or False
        Feature cache (see :func:`imagelearn.features.extract_features`).
    **params
        Other :class:`IndexParams` fields: ``detector``, ``max_keypoints``, ``max_side``,
        ``train_images``, ``global_backbone``...

    Raises
    ------
    ParameterError
        A vocabulary option of the other kind, an unknown kind or detector.
    IndexExistsError
        A finished index is at ``out`` and not ``overwrite``.
    """
    from imagelearn.retrieval.writer import build_index

    index_params = IndexParams(
        vocabulary=vocabulary,
        vocabulary_params=vocabulary_params(
            vocabulary, branching=branching, depth=depth, beam_width=beam_width, n_words=n_words
        ),
        **params,
    )
    if global_descriptor is None:
        global_descriptor = imagenet_weights_available(index_params.global_backbone)
        if not global_descriptor:
            log.warning(
                "no ImageNet weights for %r on this machine: indexing local features only "
                "(global_descriptor=True downloads them)",
                index_params.global_backbone,
            )
    if tags is None:
        tags = global_descriptor and has_imagenet_classifier(index_params.global_backbone)
    index_params = replace(index_params, global_descriptor=global_descriptor, tags=tags)
    report = build_index(
        image_paths(images),
        out,
        index_params,
        overwrite=overwrite,
        n_jobs=n_jobs,
        cache_dir=cache_dir,
    )
    return BuildResult(Path(out), index_params, report)


def add_run(
    index: str | os.PathLike, images: Sources, *, n_jobs: int | None = -1, cache_dir: Any = None
) -> AddResult:
    """Add image files or folders to the index at ``index``; content already indexed is skipped."""
    from imagelearn.retrieval.writer import add_images

    report = add_images(index, image_paths(images), n_jobs=n_jobs, cache_dir=cache_dir)
    return AddResult(Path(index), report)


def tag_run(index: str | os.PathLike) -> TagResult:
    """Give the images of the index at ``index`` their ImageNet tags and its 2-D map, where
    an older build lacks them; the images added later are tagged too."""
    from imagelearn.retrieval.writer import tag_index

    return TagResult(Path(index), tag_index(index))


def remove_run(index: str | os.PathLike, paths: Sequence[str | os.PathLike]) -> RemoveResult:
    """Remove images from the index at ``index`` by path."""
    from imagelearn.retrieval.writer import remove_images

    removed, missing = remove_images(index, paths)
    return RemoveResult(Path(index), tuple(removed), tuple(missing))


def info_run(index: str | os.PathLike) -> InfoResult:
    """Counts, parameters and sizes of the current snapshot of the index at ``index``."""
    return InfoResult(Path(index), Index.open(index).info())


def search_run(
    index: str | os.PathLike,
    query: str | os.PathLike,
    *,
    top: int = 20,
    plot: str | os.PathLike | None = None,
    **search_options: Any,
) -> SearchResult:
    """Rank the images of the index at ``index`` against the image file ``query``.

    Parameters
    ----------
    index, query : path-like
    top : int
        Results returned.
    plot : path-like, optional
        Also write a PNG of the query beside its best matches here.
    **search_options
        Passed to :meth:`Index.search`: ``mode``, ``roi``, ``verify``, ``verify_top``,
        ``shortlist``, ``expand``, ``min_inliers``...

    Raises
    ------
    ImageReadError
        ``query`` is not a readable image file (a folder, say; :func:`evaluate_run` runs many
        queries).
    """
    if Path(query).is_dir():
        raise ImageReadError(
            query, "is a directory, not an image; search takes one image file (evaluate takes many)"
        )
    result = Index.open(index).search(query, top=top, **search_options)
    if plot is not None:
        from imagelearn.retrieval.drawing import draw_matches

        draw_matches(result, query, plot)
    return result


def evaluate_run(
    index: str | os.PathLike,
    *,
    truth: str | os.PathLike | None = None,
    ukbench: str | os.PathLike | None = None,
    depth: int = 100,
    **search_options: Any,
) -> EvaluationResult:
    """Score the index at ``index`` on ground truth: mAP, mP@k, recall@k, N-S, latency.

    Parameters
    ----------
    index : path-like
    truth : path-like, optional
        A ground-truth JSON file (e.g. from :func:`benchmark_run`).
    ukbench : path-like, optional
        A UKBench folder instead: every image queries its group of four.
    depth : int
        Results scored per query.
    **search_options
        Passed to :meth:`Index.search` (``mode``, ``verify``, ``expand``...).

    Raises
    ------
    ParameterError
        Neither or both of ``truth`` and ``ukbench`` (``parameter="truth"``).
    """
    if (truth is None) == (ukbench is None):
        raise ParameterError("truth", "give exactly one of truth (a JSON file) and ukbench")
    truths = (
        load_ground_truth(truth)
        if truth is not None
        else ukbench_ground_truth(sorted(image_paths([ukbench])))
    )
    scores = evaluate_index(Index.open(index), truths, depth, **search_options)
    return EvaluationResult(Path(index), len(truths), scores)


def benchmark_run(
    originals: Sources,
    out: str | os.PathLike,
    *,
    n_variants: int = 5,
    distractors: Sources = (),
    pairs: str | os.PathLike | None = None,
    limit: int | None = None,
    random_state: int = 0,
) -> BenchmarkResult:
    """Write a variant benchmark from real photos into ``out`` (see
    :func:`~imagelearn.retrieval.benchmark.make_variant_benchmark`).

    Parameters
    ----------
    originals : sequence of path-like
        Photo files or folders to alter.
    out : path-like
    n_variants : int
        Altered copies of each original.
    distractors : sequence of path-like
        Other image files or folders, indexed beside the variants.
    pairs : path-like, optional
        A folder of real viewpoint pairs ``NAME1.ext``/``NAME2.ext``.
    limit : int, optional
        Use only this many originals (a seeded random choice, kept in order).
    random_state : int
        Seeds the choice of originals and the alterations.
    """
    chosen = image_paths(originals)
    if limit:
        rows = np.random.default_rng(random_state).permutation(len(chosen))[:limit]
        chosen = [chosen[row] for row in sorted(rows)]
    viewpoints = viewpoint_pairs(image_paths([pairs])) if pairs is not None else []
    ground_truth = make_variant_benchmark(
        chosen, out, n_variants, image_paths(distractors), viewpoints, random_state=random_state
    )
    return BenchmarkResult(
        ground_truth, ground_truth.parent / "database.txt", len(chosen), len(viewpoints)
    )
