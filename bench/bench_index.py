"""Instance retrieval: accuracy on real photos, tracking, and scale against plain alternatives.

Run: ``python -m bench.run_all index`` (or ``python -m bench.bench_index``). Writes
``bench/results/index.json`` and returns Markdown tables. ``BENCH_INDEX_SCALE=10000,100000``
runs only the scale part, at those sizes, and keeps the other parts of the last results.

* UKBench (500 real images, 125 objects): N-S score per path (local, global, hybrid), with and
  without spatial verification, with query expansion; latency per query; the build time of
  the index with and without the global descriptor.
* The variant benchmark (real photos from hymenoptera + flowers5 distractors + the real
  multiview pairs): mAP and recall@10 with and without verification.
* graf1 -> graf3: corner error (pixels) of the estimated homography against ``H1to3p``.
* Tracking: the synthetic composited video, OTB "Girl" success rate, a run on vtest.avi.
* Scale: 10k, 100k and 1M database entries GENERATED from the descriptor
  statistics measured on the real UKBench index (unique words per image, document frequency
  of words by rank, stretched to a 100k-word vocabulary), because a million real images
  cannot be had here. Side by side in the same run: brute-force FAISS Flat and scikit-learn
  ``NearestNeighbors`` over 256-D global descriptors, FAISS IVF-PQ, and a dense tf-idf
  matrix product over the same entries (only where the dense matrix fits in 4 GiB; its top
  100 is checked against the inverted file's).

Accuracy figures are computed once (they are deterministic); every time is repeated in
interleaved rounds (``$BENCH_INDEX_REPEATS``, default 5; the UKBench builds
``$BENCH_INDEX_BUILD_REPEATS``, default 3) and reported as median (min-max). For a quick
check, ``$BENCH_INDEX_IMAGES`` takes the first UKBench photos only and ``$BENCH_INDEX_SIZES``
sets the scale part's sizes.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench import data_root
from bench.common import (
    REPEATS,
    Directories,
    describe_machine,
    finish_machine,
    format_spread,
    interleaved,
    machine,
    rate_spread,
    ratio_spread,
    rounds,
    setting,
    spread,
    spreads,
    timed,
    write_results,
)
from imagelearn.core.bundle import atomic_write_json
from imagelearn.core.images import load_image
from imagelearn.data.collection import find_images
from imagelearn.data.opencv_xml import read_opencv_matrix
from imagelearn.evaluation.tracking import success_rate
from imagelearn.retrieval import (
    Index,
    IndexParams,
    build_index,
    load_ground_truth,
    ukbench_ground_truth,
)
from imagelearn.retrieval.benchmark import (
    make_variant_benchmark,
    read_database_list,
    viewpoint_pairs,
)
from imagelearn.retrieval.evaluation import evaluate_index
from imagelearn.retrieval.inverted_file import Postings, score_postings
from imagelearn.retrieval.verification import project_corners
from imagelearn.tracking import ObjectTracker, read_frames, read_otb_boxes
from imagelearn.tracking.synthetic import moving_object_video

RESULTS = Path(__file__).resolve().parent / "results" / "index.json"
DATA = data_root()
SCALE_WORDS = 100_000
GLOBAL_DIMENSION = 256
DENSE_BUDGET_BYTES = 4 * 2**30
#: Queries per latency round (UKBench: spread evenly over its queries; scale: generated).
N_LATENCY_QUERIES = 30
TOP = 100
INVERTED_FILE = "inverted file"
DENSE = "dense tf-idf matrix product"
#: Database sizes of the scale part (``$BENCH_INDEX_SIZES`` overrides; comma-separated).
SCALE_SIZES = "10000,100000,1000000"
#: Rounds of the UKBench builds (each a minute or so: fewer than the other figures' repeats).
BUILD_REPEATS = 3
#: Comma-separated database sizes: run only the scale part, at these sizes.
SCALE_ONLY_VARIABLE = "BENCH_INDEX_SCALE"
UKBENCH_PARAMS = IndexParams(
    max_keypoints=1000,
    max_side=640,
    vocabulary_params={"branching": 10, "depth": 4, "n_iter": 5},
    train_images=500,
    train_descriptors_per_image=300,
    global_descriptor=True,
)
#: The builds whose cost is compared: the last is the default (the global descriptor included
#: where the offline weights are present), which gives the accuracy figures.
BUILD_VARIANTS = {
    "local only": replace(UKBENCH_PARAMS, global_descriptor=False),
    "local + global descriptor (default)": UKBENCH_PARAMS,
}
#: ``index search`` with no options: hybrid on an index with global descriptors, shortlist 100.
DEFAULT_SEARCH = "defaults (hybrid, shortlist 100, verified)"
SEARCH_MODES = {
    "local": {"mode": "local", "verify": False},
    "local + verification": {"mode": "local", "verify": True, "verify_top": 20},
    "local + verification + QE": {"mode": "local", "expand": True, "verify_top": 20},
    "global": {"mode": "global", "verify": False},
    "global + verification": {"mode": "global", "verify": True, "verify_top": 20},
    "hybrid (global shortlist 20, verified)": {"mode": "hybrid", "shortlist": 20},
    DEFAULT_SEARCH: {},
}
#: The latency of a search from the catalogue (``Index.search_id``: nothing extracted).
SEARCH_BY_ID = "search by catalogue id, defaults"


def ukbench_paths() -> list[str]:
    """The UKBench photos, the first ``$BENCH_INDEX_IMAGES`` of them (default: all 500)."""
    paths = sorted(str(p) for p in (DATA / "ukbench").glob("ukbench*.jpg"))
    return paths[: setting("BENCH_INDEX_IMAGES", len(paths))]


@contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` for the ``with`` block, then as it was."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def build_costs(paths: list[str], scratch: Path, repeats: int) -> tuple[dict, Path]:
    """Build time of each :data:`BUILD_VARIANTS` on ``paths``, interleaved, nothing cached.

    Every build starts from empty feature and embedding caches (``$IMAGELEARN_CACHE`` points
    to a fresh folder), so each pays its whole cost.

    Returns
    -------
    costs : dict
        Per variant: spreads of its seconds, seconds per image, and its per-round ratio to the
        first variant's seconds (the cost of what it adds).
    index_directory : Path
        The first build of the last variant (the default), for the accuracy figures.
    """
    directories = Directories(scratch / "builds")

    def build(params: IndexParams) -> Path:
        directory = directories.fresh()
        with environment("IMAGELEARN_CACHE", str(directory / "cache")):
            build_index(paths, directory / "index", params, cache_dir=None)
        return directory / "index"

    seconds, built = interleaved(
        {name: partial(build, params) for name, params in BUILD_VARIANTS.items()}, repeats
    )
    first = next(iter(BUILD_VARIANTS))
    costs = {
        name: figures | {"seconds_per_image": spread(value / len(paths) for value in seconds[name])}
        for name, figures in spreads(seconds, first).items()
    }
    return costs, built[list(BUILD_VARIANTS)[-1]]


def latency_spreads(
    methods: dict[str, Callable[[], Any]], calls: dict[str, int], repeats: int
) -> dict[str, dict]:
    """Per method: ``calls[name]`` calls a round, ``repeats`` interleaved rounds; the spreads
    over the rounds of each round's median and 95th-percentile milliseconds per call."""

    def latencies(method: Callable[[], Any], n_calls: int) -> list[float]:
        return [1000.0 * timed(method)[0] for _ in range(n_calls)]

    measured = rounds(
        {name: partial(latencies, method, calls[name]) for name, method in methods.items()},
        repeats,
    )
    return {
        name: {
            "median_ms": spread(np.median(run) for run in runs),
            "p95_ms": spread(np.percentile(run, 95) for run in runs),
        }
        for name, runs in measured.items()
    }


def cycling(function: Callable[[Any], Any], items: list[Any]) -> Callable[[], Any]:
    """A call of ``function`` on the next of ``items``, from the first again after the last."""
    cursor = itertools.cycle(items)
    return lambda: function(next(cursor))


def ukbench(scratch: Path, repeats: int) -> tuple[dict, Index]:
    """N-S and mAP of every search mode over all UKBench queries (once: they are deterministic),
    the latency of each mode on :data:`N_LATENCY_QUERIES` queries (the default search, from a
    file and by catalogue id, on every query) in interleaved rounds, and the build cost of each
    :data:`BUILD_VARIANTS`."""
    paths = ukbench_paths()
    build_repeats = setting("BENCH_INDEX_BUILD_REPEATS", BUILD_REPEATS)
    builds, directory = build_costs(paths, scratch, build_repeats)
    # searched as a user searches after building: with the build's cache, which holds the
    # network's ONNX export that the query descriptor runs on
    with environment("IMAGELEARN_CACHE", str(directory.parent / "cache")):
        return ukbench_searches(directory, paths, builds, build_repeats, repeats)


def ukbench_searches(
    directory: Path, paths: list[str], builds: dict, build_repeats: int, repeats: int
) -> tuple[dict, Index]:
    """The accuracy and latency half of :func:`ukbench`, on the index at ``directory``."""
    index = Index.open(directory)
    truths = ukbench_ground_truth(paths)
    scores = {}
    for name, options in SEARCH_MODES.items():
        scores[name] = evaluate_index(index, truths, depth=10, **options)
        for key in ("median_ms", "p95_ms"):  # one pass: the latency is measured below
            del scores[name][key]
        print(f"ukbench {name}: N-S {scores[name]['N-S']:.3f}", flush=True)
    every_query = [truth.query for truth in truths]
    step = max(1, len(truths) // N_LATENCY_QUERIES)
    sample = every_query[::step][:N_LATENCY_QUERIES]
    # the default search, from a file and by catalogue id, on every query: the goal's figure
    queried = {
        name: every_query if name in (DEFAULT_SEARCH, SEARCH_BY_ID) else sample
        for name in [*SEARCH_MODES, SEARCH_BY_ID]
    }
    methods = {
        name: cycling(partial(index.search, top=10, **options), queried[name])
        for name, options in SEARCH_MODES.items()
    }
    ids = [catalogue_id(index, query) for query in queried[SEARCH_BY_ID]]
    methods[SEARCH_BY_ID] = cycling(partial(index.search_id, top=10), ids)
    calls = {name: len(queries) for name, queries in queried.items()}
    latency = latency_spreads(methods, calls, repeats)
    return {
        "builds": builds,
        "build_repeats": build_repeats,
        "latency_queries": len(sample),
        "latency_queries_default": len(every_query),
        "latency_ms": latency,
        "info": index.info(),
        "scores": scores,
    }, index


def catalogue_id(index: Index, path: str) -> int:
    """The catalogue id of an indexed image, as a user of the index finds it: by searching
    with its file (it is its own best match)."""
    matches = index.search(path, top=5, mode="local", verify=False).matches
    return next(match.image_id for match in matches if match.path == str(Path(path).resolve()))


def variants(scratch: Path) -> dict:
    rng = np.random.default_rng(0)

    def choose(paths: list, count: int) -> list[str]:
        return [
            str(paths[i])
            for i in sorted(rng.choice(len(paths), min(count, len(paths)), replace=False))
        ]

    originals = choose(find_images(DATA / "hymenoptera" / "val"), 30)
    distractors = choose(find_images(DATA / "flowers5"), 300) + choose(
        find_images(DATA / "hymenoptera" / "train"), 100
    )
    pairs = viewpoint_pairs(find_images(DATA / "multiview" / "pairs"))
    truth = make_variant_benchmark(
        originals, scratch / "variants", 5, distractors, pairs, random_state=0, max_side=640
    )
    params = IndexParams(
        max_keypoints=1000,
        max_side=800,
        vocabulary_params={"branching": 10, "depth": 4, "n_iter": 5},
    )
    build_index(
        read_database_list(scratch / "variants"),
        scratch / "variants-index",
        params,
        cache_dir=scratch / "cache",
    )
    index = Index.open(scratch / "variants-index")
    truths = load_ground_truth(truth)
    scores = {
        "no verification": evaluate_index(index, truths, depth=100, verify=False),
        "verification (top 50)": evaluate_index(index, truths, depth=100, verify=True),
        "verification + QE": evaluate_index(index, truths, depth=100, expand=True),
    }
    return {"queries": len(truths), "database": index.n_images, "scores": scores}


def graf(scratch: Path) -> dict:
    folder = DATA / "multiview" / "opencv"
    distractors = sorted(str(p) for p in (DATA / "ukbench").glob("ukbench000[0-3]*.jpg"))
    params = IndexParams(
        max_keypoints=1500,
        max_side=800,
        vocabulary_params={"branching": 10, "depth": 3, "n_iter": 5},
    )
    build_index(
        [str(folder / "graf3.png"), *distractors],
        scratch / "graf",
        params,
        cache_dir=scratch / "cache",
    )
    best = (
        Index.open(scratch / "graf")
        .search(folder / "graf1.png", top=1, ransac_threshold=0.004)
        .matches[0]
    )
    truth = read_opencv_matrix(folder / "H1to3p.xml", "H13")
    error = np.linalg.norm(
        project_corners(best.homography, 800, 640) - project_corners(truth, 800, 640), axis=1
    )
    return {
        "match": Path(best.path).name,
        "inliers": best.inliers,
        "corner_error_px": error.tolist(),
    }


def tracking(repeats: int) -> dict:
    photo = load_image(DATA / "multiview" / "opencv" / "box.png")
    backgrounds = sorted((DATA / "flowers5" / "daisy").glob("*.jpg"))[:4]
    frames, truths = moving_object_video(photo, backgrounds, 40)
    tracked = list(ObjectTracker().fit(photo).track(frames))
    errors = [
        float(np.linalg.norm(t.corners - truth, axis=1).max())
        if t.corners is not None
        else float("inf")
        for t, truth in zip(tracked, truths, strict=True)
    ]
    girl = DATA / "video" / "otb_girl"
    boxes = read_otb_boxes(girl / "groundtruth_rect.txt")
    girl_frames = list(read_frames(girl / "img"))
    x, y, width, height = boxes[0].astype(int)

    def track_girl() -> list:
        tracker = ObjectTracker(min_inliers=6).fit(girl_frames[0][y : y + height, x : x + width])
        return list(tracker.track(girl_frames))

    seconds, tracks = interleaved({"otb_girl": track_girl}, repeats)
    girl_track = tracks["otb_girl"]
    street = list(read_frames(DATA / "video" / "vtest.avi", max_frames=60))
    street_track = list(ObjectTracker().fit(street[0][300:576, 0:300]).track(street))
    return {
        "synthetic_frames": len(frames),
        "synthetic_found": sum(t.corners is not None for t in tracked),
        "synthetic_median_corner_error_px": float(np.median(errors)),
        "otb_girl_success_rate": success_rate([t.box for t in girl_track], boxes),
        "otb_girl_found": sum(t.corners is not None for t in girl_track),
        "otb_girl_frames_per_second": rate_spread(seconds["otb_girl"], len(girl_frames)),
        "vtest_frames": len(street),
        "vtest_found": sum(t.corners is not None for t in street_track),
    }


def word_statistics(index: Index) -> tuple[np.ndarray, np.ndarray]:
    """Unique words per image and word probabilities by rank, from the real index."""
    unique_counts, frequencies = [], np.zeros(index.vocabulary.n_words_, np.int64)
    for segment in index.segments:
        offsets = np.asarray(segment.keypoint_offsets)
        for row in range(len(segment.ids)):
            words = np.unique(np.asarray(segment.words[offsets[row] : offsets[row + 1]]))
            unique_counts.append(len(words))
            frequencies[words] += 1
    ranked = np.sort(frequencies)[::-1].astype(np.float64)
    ranks = np.linspace(0, len(ranked) - 1, SCALE_WORDS)
    stretched = np.interp(ranks, np.arange(len(ranked)), ranked) + 1e-9
    return np.asarray(unique_counts), stretched / stretched.sum()


def synthetic_postings(
    n_images: int, unique_counts: np.ndarray, probabilities: np.ndarray, rng
) -> Postings:
    """CSR postings with the real statistics and tf-idf weights.

    Word ``w`` is in Poisson(postings * p_w) distinct random images (at most all of them);
    within a word, postings are sorted by image id as in a real index. Each image's bag weighs
    its words by :func:`synthetic_idf` (every word counted once), L2-normalised.
    """
    expected = float(unique_counts.mean()) * n_images
    lengths = np.minimum(rng.poisson(expected * probabilities), n_images)
    words, images = [], []
    for start in range(0, SCALE_WORDS, 10_000):
        block = np.arange(start, min(start + 10_000, SCALE_WORDS), dtype=np.int64)
        drawn = np.repeat(block, lengths[block])
        keys = np.sort(drawn * n_images + rng.integers(0, n_images, len(drawn)))
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]  # faster than np.unique
        words.append((keys // n_images).astype(np.int32))
        images.append((keys % n_images).astype(np.int32))
    words, images = np.concatenate(words), np.concatenate(images)
    frequencies = np.bincount(words, minlength=SCALE_WORDS)
    weights = synthetic_idf(frequencies, n_images)[words]
    norms = np.sqrt(np.bincount(images, weights=np.square(weights), minlength=n_images))
    weights /= norms[images].astype(np.float32)
    return Postings(np.concatenate(([0], np.cumsum(frequencies))), images, weights)


def synthetic_idf(document_frequency: np.ndarray, n_images: int) -> np.ndarray:
    """``log(N / df)`` per word (float32, shape (n_words,)): the index's idf, less its 1e-3 floor."""
    return np.log(n_images / np.maximum(document_frequency, 1)).astype(np.float32)


def ranked(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``TOP`` best (ids, scores), by decreasing score."""
    best = np.argpartition(-scores, TOP)[:TOP]
    order = np.lexsort((ids[best], -scores[best]))
    return ids[best][order], scores[best][order]


def measure_size(
    n_images: int,
    unique_counts: np.ndarray,
    probabilities: np.ndarray,
    verification_ms: float,
    rng,
    repeats: int,
) -> dict:
    """Memory, build time (one run) and query latency (``repeats`` interleaved rounds of
    :data:`N_LATENCY_QUERIES` queries) of the inverted file and the alternatives at one size."""
    import faiss
    from sklearn.neighbors import NearestNeighbors

    from imagelearn.retrieval.global_descriptors import make_global_index

    build_seconds, postings = timed(
        partial(synthetic_postings, n_images, unique_counts, probabilities, rng)
    )
    query_length = int(np.median(unique_counts))
    idf = synthetic_idf(np.diff(postings.offsets), n_images)
    queries = [
        np.unique(rng.choice(SCALE_WORDS, query_length, p=probabilities))
        for _ in range(N_LATENCY_QUERIES)
    ]
    weights = [idf[q] / np.linalg.norm(idf[q]) for q in queries]
    cursor = itertools.count()

    def inverted_file_query() -> tuple[np.ndarray, np.ndarray]:
        i = next(cursor) % N_LATENCY_QUERIES
        return ranked(*score_postings([postings], queries[i], weights[i]))

    rankings = [inverted_file_query() for _ in range(N_LATENCY_QUERIES)]
    descriptors = rng.normal(size=(n_images, GLOBAL_DIMENSION)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    query_vector = descriptors[:1]
    flat = faiss.IndexFlatIP(GLOBAL_DIMENSION)
    flat.add(descriptors)

    def build_ivfpq():
        index = make_global_index(
            GLOBAL_DIMENSION, max(n_images, 50_001), descriptors[: min(n_images, 100_000)]
        )
        index.add(descriptors)
        return index

    ivf_seconds, ivfpq = timed(build_ivfpq)
    neighbours = NearestNeighbors(n_neighbors=TOP, algorithm="brute").fit(descriptors)
    entry = {
        INVERTED_FILE: {
            "bytes_per_image": (postings.nbytes + 12 * n_images) / n_images,
            "build_ms_per_image_one_run": 1000.0 * build_seconds / n_images,
        },
        "FAISS Flat (global 256-D)": {"bytes_per_image": 4 * GLOBAL_DIMENSION},
        "FAISS IVF-PQ (global)": {
            "bytes_per_image": ivfpq.code_size + 8,
            "build_ms_per_image_one_run": 1000.0 * ivf_seconds / n_images,
        },
        "scikit-learn NearestNeighbors (global)": {"bytes_per_image": 4 * GLOBAL_DIMENSION},
    }
    methods = {
        INVERTED_FILE: inverted_file_query,
        "FAISS Flat (global 256-D)": lambda: flat.search(query_vector, TOP),
        "FAISS IVF-PQ (global)": lambda: ivfpq.search(query_vector, TOP),
        "scikit-learn NearestNeighbors (global)": lambda: neighbours.kneighbors(query_vector),
    }
    dense, dense_query = dense_product(postings, n_images, queries, weights, rankings)
    entry[DENSE] = dense
    if dense_query is not None:
        methods[DENSE] = dense_query
    latency = latency_spreads(methods, dict.fromkeys(methods, N_LATENCY_QUERIES), repeats)
    reference = latency[INVERTED_FILE]["median_ms"]["values"]
    for name, figures in latency.items():
        entry[name] |= figures | {
            f"ratio_to_{INVERTED_FILE}": ratio_spread(figures["median_ms"]["values"], reference)
        }
    entry[INVERTED_FILE]["median_ms_after_verification"] = (
        entry[INVERTED_FILE]["median_ms"]["median"] + verification_ms
    )
    return entry


def dense_product(
    postings: Postings,
    n_images: int,
    queries: list[np.ndarray],
    weights: list[np.ndarray],
    rankings: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[dict, Callable[[], Any] | None]:
    """The plain alternative: a dense (images x words) float32 tf-idf matrix times the query.

    Checks that it scores like the inverted file on the same entries and queries: the top
    ``TOP`` scores agree to 1e-5 (float32 sums in another order), hence the same ranking up to
    ties. Where the matrix exceeds ``DENSE_BUDGET_BYTES``, only the bytes it would need are
    reported.

    Returns
    -------
    entry : dict
        Memory and agreement figures.
    query : callable or None
        One query (the product plus the top-``TOP`` selection, cycling over the queries), to
        time; None where the matrix was not built.
    """
    entry: dict = {"bytes_per_image": 4 * SCALE_WORDS, "bytes_needed": 4 * SCALE_WORDS * n_images}
    if entry["bytes_needed"] > DENSE_BUDGET_BYTES:
        return entry, None
    dense = np.zeros((n_images, SCALE_WORDS), np.float32)
    words = np.repeat(np.arange(SCALE_WORDS), np.diff(postings.offsets))
    dense[postings.images, words] = postings.weights
    vectors = np.zeros((len(queries), SCALE_WORDS), np.float32)
    for row, (query_words, query_weights) in enumerate(zip(queries, weights, strict=True)):
        vectors[row, query_words] = query_weights
    every_id = np.arange(n_images)
    pairs = [
        (ranked(every_id, dense @ vector), ranking)
        for vector, ranking in zip(vectors, rankings, strict=True)
    ]
    difference = max(float(np.abs(d[1] - r[1]).max()) for d, r in pairs)
    assert difference < 1e-5, f"dense product and inverted file score differently ({difference})"
    cursor = itertools.count()

    def query() -> tuple[np.ndarray, np.ndarray]:
        return ranked(every_id, dense @ vectors[next(cursor) % len(vectors)])

    return {
        **entry,
        "max_top_score_difference": difference,
        "same_top_ids": float(np.mean([len(np.intersect1d(d[0], r[0])) for d, r in pairs])) / TOP,
        "same_order_queries": sum(bool(np.array_equal(d[0], r[0])) for d, r in pairs),
        "queries": len(pairs),
    }, query


def scale(
    sizes: list[int],
    unique_counts: np.ndarray,
    probabilities: np.ndarray,
    verification_ms: float,
    repeats: int,
) -> dict:
    rng = np.random.default_rng(0)
    results = {}
    for n_images in sizes:
        results[str(n_images)] = measure_size(
            n_images, unique_counts, probabilities, verification_ms, rng, repeats
        )
        median = results[str(n_images)][INVERTED_FILE]["median_ms"]["median"]
        print(f"scale {n_images}: inverted file median {median:.2f} ms", flush=True)
    return results


def markdown(report: dict) -> str:
    ukbench = report["ukbench"]
    default_queries = ukbench.get("latency_queries_default", ukbench["latency_queries"])
    lines = [
        "## index: instance retrieval (`bench_index`)",
        "",
        f"{describe_machine(report['machine'])}. UKBench, {ukbench['info']['images']} real "
        "images (N-S: best 4.0). N-S and mAP over every query; latency: median (min-max) over "
        f"{report['repeats']} interleaved rounds of {ukbench['latency_queries']} queries (the "
        f"default search and the search by id: all {default_queries}), of each round's median "
        "and 95th percentile:",
        "",
    ]
    lines += ["| path | N-S | mAP | median ms/query | p95 ms |", "|---|---|---|---|---|"]
    for name, s in ukbench["scores"].items():
        latency = ukbench["latency_ms"][name]
        lines.append(
            f"| {name} | {s['N-S']:.3f} | {s['mAP']:.3f} | {format_spread(latency['median_ms'], digits=0)} "
            f"| {format_spread(latency['p95_ms'], digits=0)} |"
        )
    if SEARCH_BY_ID in ukbench["latency_ms"]:  # the ranking of a search with the image's file
        latency = ukbench["latency_ms"][SEARCH_BY_ID]
        s = ukbench["scores"][DEFAULT_SEARCH]
        lines.append(
            f"| {SEARCH_BY_ID} | {s['N-S']:.3f} | {s['mAP']:.3f} "
            f"| {format_spread(latency['median_ms'], digits=0)} "
            f"| {format_spread(latency['p95_ms'], digits=0)} |"
        )
    lines += [
        "",
        f"Build of the {ukbench['info']['images']} images ({ukbench['build_repeats']} "
        "interleaved rounds, no feature or embedding cache):",
        "",
        "| index | seconds | ms per image | time / local-only time |",
        "|---|---:|---:|---:|",
    ]
    first = next(iter(ukbench["builds"]))
    for name, build in ukbench["builds"].items():
        per_image = spread(1000 * value for value in build["seconds_per_image"]["values"])
        lines.append(
            f"| {name} | {format_spread(build['seconds'], digits=1)} | {format_spread(per_image, digits=0)} "
            f"| {format_spread(build[f'ratio_to_{first}'], 'x')} |"
        )
    lines += [
        "",
        f"Variant benchmark ({report['variants']['queries']} queries, {report['variants']['database']} images):",
        "",
    ]
    lines += ["| ranking | mAP | recall@10 |", "|---|---|---|"]
    for name, s in report["variants"]["scores"].items():
        lines.append(f"| {name} | {s['mAP']:.3f} | {s['recall@10']:.3f} |")
    g, t = report["graf"], report["tracking"]
    lines += [
        "",
        f"graf1 -> graf3: {g['inliers']} inliers, max corner error {max(g['corner_error_px']):.2f} px.",
        f"Tracking: synthetic video {t['synthetic_found']}/{t['synthetic_frames']} frames found, median corner "
        f"error {t['synthetic_median_corner_error_px']:.2f} px; OTB Girl success rate (IoU > 0.5) "
        f"{t['otb_girl_success_rate']:.3f} ({format_spread(t['otb_girl_frames_per_second'], digits=1)} "
        f"frames/s over {report['repeats']} runs); vtest.avi "
        f"{t['vtest_found']}/{t['vtest_frames']} frames found.",
    ]
    return "\n".join(lines + scale_markdown(report)) + "\n"


def scale_markdown(report: dict) -> list[str]:
    """The scale table: median query time of each alternative as a multiple of the inverted file's."""
    methods = list(next(iter(report["scale"].values())))
    lines = [
        "",
        f"Scale: {report['scale_source']}; not real images. Median query time (top {TOP}) as a "
        "multiple of the inverted file's in the same round, median (min-max) over "
        f"{report['repeats']} interleaved rounds of {N_LATENCY_QUERIES} queries; memory per image "
        "in brackets:",
        "",
        "| images | inverted file median / p95 ms | " + " | ".join(methods[1:]) + " |",
        "|---:|" + "---:|" * len(methods),
    ]
    notes = []
    for size, entry in report["scale"].items():
        reference = entry[INVERTED_FILE]
        cells = [
            f"{format_spread(reference['median_ms'], digits=3)} / "
            f"{reference['p95_ms']['median']:.3g} ({byte_text(reference['bytes_per_image'])})"
        ]
        for method in methods[1:]:
            values = entry[method]
            if "median_ms" in values:
                ratio = values[f"ratio_to_{INVERTED_FILE}"]
                cells.append(
                    f"{ratio_text(ratio['median'])} ({ratio_text(ratio['min'])}-"
                    f"{ratio_text(ratio['max'])}) ({byte_text(values['bytes_per_image'])})"
                )
            else:
                cells.append(f"needs {values['bytes_needed'] / 2**30:.0f} GiB")
        lines.append(f"| {count_text(int(size))} | " + " | ".join(cells) + " |")
        dense = entry[DENSE]
        if "median_ms" in dense:
            notes.append(
                f"at {count_text(int(size))}, the top-{TOP} scores differ by at most "
                f"{dense['max_top_score_difference']:.1g} over {dense['queries']} queries, "
                f"{100 * dense['same_top_ids']:.0f} % of the top-{TOP} ids shared, the same order "
                f"on {dense['same_order_queries']}/{dense['queries']}"
            )
    lines += [
        "",
        f"The dense product is measured where its float32 matrix fits "
        f"{DENSE_BUDGET_BYTES / 2**30:.0f} GiB ({4 * SCALE_WORDS / 1000:.0f} KB per image); it "
        f"scores like the inverted file: {'; '.join(notes) or 'not measured'}.",
    ]
    if "scale_rerun" in report:
        lines.append(
            "The scale part was rerun alone "
            f"({describe_machine(report['scale_rerun'])}); the rest is from the last full run."
        )
    return lines


def count_text(n: int) -> str:
    """10000 -> '10k', 1000000 -> '1M'."""
    return f"{n // 10**6}M" if n % 10**6 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def ratio_text(ratio: float) -> str:
    """0.14 -> '0.14x', 9.8 -> '9.8x', 183.4 -> '183x'."""
    return f"{ratio:.2g}x" if ratio < 10 else f"{ratio:.0f}x"


def byte_text(n: float) -> str:
    """Bytes in B, KB or MB (powers of 1000), three significant digits."""
    for unit, scale_factor in (("MB", 1e6), ("KB", 1e3)):
        if n >= scale_factor:
            return f"{n / scale_factor:.3g} {unit}"
    return f"{n:.0f} B"


def verification_cost(ukbench_report: dict) -> float:
    """Median milliseconds that verification adds to a UKBench query."""
    latency = ukbench_report["latency_ms"]
    return (
        latency["local + verification"]["median_ms"]["median"]
        - latency["local"]["median_ms"]["median"]
    )


def main() -> str:
    """Run everything (or, with ``$BENCH_INDEX_SCALE``, only the scale part); write the results.

    Returns
    -------
    str
        The Markdown section.
    """
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    only_sizes = os.environ.get(SCALE_ONLY_VARIABLE)
    repeats = setting("BENCH_INDEX_REPEATS", REPEATS)
    info = machine()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        if only_sizes:
            report = json.loads(RESULTS.read_text(encoding="utf-8"))
            sizes = [int(size) for size in only_sizes.split(",")]
            build_index(
                ukbench_paths(),
                scratch / "ukbench",
                replace(UKBENCH_PARAMS, global_descriptor=False),  # the same visual words
                cache_dir=scratch / "cache",
            )
            index = Index.open(scratch / "ukbench")
        else:
            ukbench_report, index = ukbench(scratch, repeats)
            report = {
                "repeats": repeats,
                "ukbench": ukbench_report,
                "variants": variants(scratch),
                "graf": graf(scratch),
                "tracking": tracking(repeats),
            }
            sizes = [
                int(size) for size in os.environ.get("BENCH_INDEX_SIZES", SCALE_SIZES).split(",")
            ]
        unique_counts, probabilities = word_statistics(index)
        report["scale_source"] = (
            f"entries generated from the real UKBench statistics ({unique_counts.mean():.0f} "
            f"distinct words per image, word frequencies by rank stretched to {SCALE_WORDS} words)"
        )
        report["scale"] = scale(
            sizes, unique_counts, probabilities, verification_cost(report["ukbench"]), repeats
        )
    if only_sizes:
        report["scale_rerun"] = finish_machine(info)
        atomic_write_json(RESULTS, report)
    else:
        report = write_results(RESULTS, report, info)
    return markdown(report)


if __name__ == "__main__":
    print(main())
