"""Visual vocabularies and BoF encoding against scikit-learn and OpenCV, side by side.

Run: ``python -m bench.run_all bof`` (or ``python -m bench.bench_bof``). Writes
``bench/results/bof.json`` and returns a Markdown section. ``make bench-check``
(``bench/check.py``) reruns its headline ratios on fewer descriptors in a few minutes.

Every timing is repeated ``BENCH_REPEATS`` times (5 by default) in interleaved rounds (each
method once per round, so that methods compared share the machine's noise; see
:mod:`bench.common`); tables show the median and the range, and a goal is judged by the
minimum of its per-round ratio.

* Vocabulary building, on the same dense RootSIFT descriptors of flowers5 photos, for the same
  ``k`` and the same number of iterations: :class:`imagelearn.bof.KMeansVocabulary` (k-means++
  seeding, a coarse-to-fine start on nested samples, Lloyd iterations that compare each
  descriptor with every word once and then with its word's 32 nearest words), scikit-learn's
  ``MiniBatchKMeans`` (``max_iter`` epochs, its default early stopping) and ``cv2.kmeans`` with
  k-means++ centres (what OpenCV's ``BOWKMeansTrainer`` runs). Every vocabulary's quantisation
  error (mean squared distance of the descriptors to their nearest word) is measured the same
  way, by exact search. Ours is also run with the fewest full iterations that reach
  MiniBatchKMeans's error (found once, before the timed rounds: every method is seeded, so
  errors do not change from run to run): as it is, without the coarse-to-fine start, and with
  exact Lloyd iterations (``n_candidates=None``).
* Encoding throughput (descriptors/s): OpenCV's ``BOWImgDescriptorExtractor`` with a
  brute-force L2 matcher, against ``BagOfFeatures.transform_features`` with the same
  vocabulary, on the same dense SIFT descriptors. OpenCV's Python binding only accepts an image
  and keypoints, so its time is measured by ``compute(image, keypoints)`` minus the time SIFT
  alone takes on the same keypoints, both timed back to back on each image (a difference of
  two whole-set timings swings with the load, even below zero); the matcher-only equivalent
  (``BFMatcher.match`` + histogram, the extractor's inner loop) is timed directly as well. A
  vocabulary tree (10 x 3, its own vocabulary) is shown for reference.
* Vocabulary kind and size for retrieval: on UKBench (500 real photos of 125 objects, RootSIFT,
  the index benchmark's settings), vocabulary trees and flat k-means vocabularies of several
  sizes, each trained on the same 150,000 descriptors: training time (one run), assignment
  time per descriptor (median of the repeats), and the N-S score of an index built with it
  (local path, no verification). ``BENCH_BOF_RETRIEVAL=0`` leaves this part out.

All libraries get the same number of threads (``THREADS``; 1 by default, as the development
machine's two cores are shared and busy-waiting thread pools distort multi-threaded timings).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import faiss
import numpy as np
from sklearn.base import clone
from sklearn.cluster import MiniBatchKMeans
from threadpoolctl import threadpool_limits

from bench import data_root
from bench.bench_index import UKBENCH_PARAMS, ukbench_paths
from bench.common import (
    REPEATS,
    describe_machine,
    finish_machine,
    format_spread,
    interleaved,
    machine,
    ratio_spread,
    spread,
    timed,
)
from imagelearn.bof import BagOfFeatures, KMeansVocabulary, make_vocabulary
from imagelearn.core.bundle import atomic_write_json
from imagelearn.data.collection import find_images
from imagelearn.features import LocalFeatures, extract_features, make_detector
from imagelearn.retrieval import Index, build_index, ukbench_ground_truth
from imagelearn.retrieval.evaluation import evaluate_index

RESULTS = Path(__file__).resolve().parent / "results" / "bof.json"
DATA = data_root()
#: flowers5 photos (128 x 128) whose dense RootSIFT descriptors are clustered.
N_IMAGES = int(os.environ.get("BENCH_BOF_IMAGES", 300))
#: Descriptors drawn from them (dense RootSIFT, step 8, three sizes: 675 per image).
N_DESCRIPTORS = int(os.environ.get("BENCH_BOF_DESCRIPTORS", 100_000))
#: Vocabulary sizes compared.
WORD_COUNTS = tuple(int(k) for k in os.environ.get("BENCH_BOF_WORDS", "256,1000").split(","))
#: Iterations (Lloyd iterations, MiniBatchKMeans epochs) for every method.
N_ITER = int(os.environ.get("BENCH_BOF_ITER", 10))
#: Threads given to FAISS, OpenBLAS/OpenMP (scikit-learn) and OpenCV alike.
THREADS = int(os.environ.get("BENCH_BOF_THREADS", 1))
#: Images encoded in the throughput comparison (the others train its vocabulary), and its size.
N_ENCODE_IMAGES = int(os.environ.get("BENCH_BOF_ENCODE_IMAGES", 200))
ENCODE_WORDS = int(os.environ.get("BENCH_BOF_ENCODE_WORDS", 1000))
#: Whether the UKBench retrieval part runs (``BENCH_BOF_RETRIEVAL=0`` leaves it out).
RETRIEVAL = os.environ.get("BENCH_BOF_RETRIEVAL", "1") != "0"
#: Iteration counts tried, fewest first, to reach MiniBatchKMeans's error.
EQUAL_ERROR_ITERATIONS = (1, 2, 3, 5, 8)

#: Vocabularies compared for retrieval on UKBench: name -> (kind, parameters), 5 iterations.
RETRIEVAL_VOCABULARIES = {
    "tree 10 x 4": ("tree", {"branching": 10, "depth": 4}),
    "tree 10 x 4, beam 3": ("tree", {"branching": 10, "depth": 4, "beam_width": 3}),
    "tree 100 x 2": ("tree", {"branching": 100, "depth": 2}),
    "flat k-means, 1,000 words": ("kmeans", {"n_words": 1000}),
    "flat k-means, 10,000 words": ("kmeans", {"n_words": 10_000}),
    "flat k-means, 20,000 words": ("kmeans", {"n_words": 20_000}),
}
#: UKBench images whose descriptors time the assignment.
ASSIGN_IMAGES = 50

OURS = "imagelearn KMeansVocabulary (FAISS)"
MINIBATCH = "scikit-learn MiniBatchKMeans"
OPENCV_KMEANS = "OpenCV cv2.kmeans (BOWKMeansTrainer)"
OPENCV_BOW = "OpenCV BOWImgDescriptorExtractor (BFMatcher L2), minus SIFT"
OPENCV_MATCHER = "OpenCV BFMatcher.match + histogram (same descriptors)"
OURS_ENCODER = "imagelearn BagOfFeatures.transform_features"
OURS_TREE_ENCODER = "imagelearn, vocabulary tree 10x3 (not the same vocabulary)"
EQUAL_ERROR = "imagelearn at MiniBatchKMeans's error"
EQUAL_ERROR_PLAIN = "imagelearn without coarse-to-fine start, at MiniBatchKMeans's error"
EQUAL_ERROR_EXACT = "imagelearn with exact Lloyd iterations, at MiniBatchKMeans's error"
#: Our variants run to MiniBatchKMeans's error, as KMeansVocabulary parameters.
EQUAL_ERROR_VARIANTS = {
    EQUAL_ERROR: {},
    EQUAL_ERROR_PLAIN: {"coarse_to_fine": False},
    EQUAL_ERROR_EXACT: {"n_candidates": None},
}
#: The issue's goals (speed-ups), met when the minimum of their per-round ratio reaches them.
GOAL_ENCODING = "encoding speed-up vs BOWImgDescriptorExtractor"
VOCABULARY_GOAL = 3.0
ENCODING_GOAL = 5.0


def quantization_error(words: np.ndarray, descriptors: np.ndarray) -> float:
    """Mean squared distance of each descriptor to its nearest word (exact FAISS search)."""
    index = faiss.IndexFlatL2(words.shape[1])
    index.add(np.ascontiguousarray(words, dtype=np.float32))
    distances, _ = index.search(descriptors, 1)
    return float(distances.astype(np.float64).mean())


def load_descriptors(
    n_images: int = N_IMAGES, n_descriptors: int = N_DESCRIPTORS
) -> tuple[list[Path], np.ndarray]:
    """``n_images`` seeded flowers5 photos and ``n_descriptors`` (n, 128) float32 dense
    RootSIFT descriptors drawn from them."""
    paths = find_images(DATA / "flowers5")
    rng = np.random.default_rng(0)
    chosen = [paths[i] for i in np.sort(rng.choice(len(paths), n_images, replace=False))]
    features, _ = extract_features(chosen, make_detector("dense_rootsift"), n_jobs=-1)
    pool = np.concatenate([item.descriptors for item in features if item is not None])
    descriptors = np.ascontiguousarray(
        pool[rng.choice(len(pool), min(n_descriptors, len(pool)), replace=False)]
    )
    return chosen, descriptors


def ours(k: int, n_iter: int, **params: Any) -> Callable[[np.ndarray], np.ndarray]:
    """KMeansVocabulary with ``k`` words, ``n_iter`` full iterations and other ``params``."""

    def run(descriptors: np.ndarray) -> np.ndarray:
        vocabulary = KMeansVocabulary(
            n_words=k, n_iter=n_iter, n_jobs=THREADS, random_state=0, **params
        )
        return vocabulary.fit(descriptors).words_

    return run


def minibatch(k: int) -> Callable[[np.ndarray], np.ndarray]:
    """scikit-learn's MiniBatchKMeans, ``N_ITER`` epochs (its default early stopping)."""

    def run(descriptors: np.ndarray) -> np.ndarray:
        model = MiniBatchKMeans(n_clusters=k, max_iter=N_ITER, n_init=1, random_state=0)
        return model.fit(descriptors).cluster_centers_

    return run


def opencv_kmeans(k: int) -> Callable[[np.ndarray], np.ndarray]:
    """``cv2.kmeans`` with k-means++ centres and ``N_ITER`` iterations."""

    def run(descriptors: np.ndarray) -> np.ndarray:
        criteria = (cv2.TERM_CRITERIA_MAX_ITER, N_ITER, 0.0)
        _, _, centers = cv2.kmeans(descriptors, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
        return centers

    return run


def fewest_iterations(
    k: int, descriptors: np.ndarray, target: float, params: dict[str, Any]
) -> int:
    """Our fewest full Lloyd iterations (of EQUAL_ERROR_ITERATIONS) reaching ``target`` error
    (the most of them if none does)."""
    for n_iter in EQUAL_ERROR_ITERATIONS:
        if quantization_error(ours(k, n_iter, **params)(descriptors), descriptors) <= target:
            break
    return n_iter


def vocabulary_rows(
    k: int, descriptors: np.ndarray, repeats: int = REPEATS, with_opencv: bool = True
) -> dict[str, dict[str, Any]]:
    """Seconds (spread over interleaved rounds) and error of each vocabulary method for ``k``.

    Our equal-error variants first get their iteration counts (:func:`fewest_iterations`,
    against MiniBatchKMeans's error); then every method runs ``repeats`` times, interleaved.
    Rows of those variants hold ``n_iter`` and ``speedup_vs_minibatch`` (the per-round ratio of
    MiniBatchKMeans's seconds to theirs); ours with ``N_ITER`` iterations holds
    ``speedup_vs_opencv`` when ``with_opencv``.
    """
    target = quantization_error(minibatch(k)(descriptors), descriptors)
    methods = {OURS: ours(k, N_ITER), MINIBATCH: minibatch(k)}
    if with_opencv:
        methods[OPENCV_KMEANS] = opencv_kmeans(k)
    iterations = {}
    for name, params in EQUAL_ERROR_VARIANTS.items():
        iterations[name] = fewest_iterations(k, descriptors, target, params)
        methods[name] = ours(k, iterations[name], **params)
    seconds, words = interleaved(
        {name: lambda method=method: method(descriptors) for name, method in methods.items()},
        repeats,
    )
    rows = {
        name: {
            "seconds": spread(seconds[name]),
            "quantization_error": quantization_error(words[name], descriptors),
        }
        for name in methods
    }
    for name, n_iter in iterations.items():
        rows[name]["n_iter"] = n_iter
        rows[name]["speedup_vs_minibatch"] = ratio_spread(seconds[MINIBATCH], seconds[name])
    if with_opencv:
        rows[OURS]["speedup_vs_opencv"] = ratio_spread(seconds[OPENCV_KMEANS], seconds[OURS])
    return rows


def dense_grid(shape: tuple[int, int]) -> list[cv2.KeyPoint]:
    """The keypoints of ``make_detector("dense_sift")`` as OpenCV keypoints."""
    features = make_detector("dense_sift").detect(np.zeros(shape, dtype=np.uint8))
    return [cv2.KeyPoint(float(x), float(y), float(size)) for x, y, size, _ in features.keypoints]


def sift_features(images: list[np.ndarray], keypoints: list[cv2.KeyPoint]) -> list[LocalFeatures]:
    """OpenCV SIFT descriptors of ``keypoints`` in every image, as LocalFeatures."""
    sift = cv2.SIFT_create()
    points = np.array(
        [[*point.pt, point.size, point.angle] for point in keypoints], dtype=np.float32
    )
    return [
        LocalFeatures(points, sift.compute(image, keypoints)[1], image.shape) for image in images
    ]


def encoding_rows(
    train: list[np.ndarray],
    test: list[np.ndarray],
    repeats: int = REPEATS,
    with_tree: bool = True,
) -> dict[str, dict[str, Any]]:
    """Seconds and descriptors/s of OpenCV's BOW extractor and of BagOfFeatures with the same
    vocabulary, over ``repeats`` interleaved rounds.

    The vocabulary is learned by BagOfFeatures on the SIFT descriptors of ``train``; both
    encoders then make L1-normalised histograms of the ``test`` images. The extractor's own
    time is its ``compute`` time minus SIFT's on the same keypoints, both timed back to back on
    each image; ours holds ``speedup_vs_opencv``, the per-round ratio of that time to ours.
    """
    keypoints = dense_grid(test[0].shape)
    train_features = sift_features(train, keypoints)
    bof = BagOfFeatures(
        detector="dense_sift",
        n_words=ENCODE_WORDS,
        n_iter=N_ITER,
        weighting="none",
        normalization="l1",
        pyramid=(1,),
        n_jobs=THREADS,
    ).fit_features(train_features)
    words = bof.vocabulary_.words_
    sift = cv2.SIFT_create()
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    extractor = cv2.xfeatures2d.BOWImgDescriptorExtractor(sift, matcher)
    extractor.setVocabulary(words)
    features = sift_features(test, keypoints)
    n_descriptors = sum(len(item) for item in features)

    def matcher_only() -> list[np.ndarray]:
        histograms = []
        for item in features:
            matches = matcher.match(item.descriptors, words)
            counts = np.bincount([match.trainIdx for match in matches], minlength=len(words))
            histograms.append(counts / len(matches))
        return histograms

    sift_alone = cv2.SIFT_create()
    sift_alone.compute(test[0], keypoints)  # first calls allocate: not timed
    extractor.compute(test[0], keypoints)
    extractor_seconds: list[float] = []  # per round: the extractor's own seconds

    def extractor_alone() -> np.ndarray:
        """Every test image's histogram by the extractor; appends to ``extractor_seconds`` its
        time less SIFT's, both timed back to back on each image (so that they share the load)."""
        own_seconds, histograms = 0.0, []
        for image in test:
            sift_seconds, _ = timed(lambda image=image: sift_alone.compute(image, keypoints))
            total_seconds, histogram = timed(
                lambda image=image: extractor.compute(image, keypoints)
            )
            own_seconds += total_seconds - sift_seconds
            histograms.append(histogram)
        extractor_seconds.append(max(own_seconds, 1e-9))
        return np.concatenate(histograms)

    methods = {
        OPENCV_BOW: extractor_alone,
        OPENCV_MATCHER: matcher_only,
        OURS_ENCODER: lambda: bof.transform_features(features),
    }
    if with_tree:
        tree = clone(bof).set_params(vocabulary="tree", branching=10, depth=3, n_words=None)
        tree.fit_features(train_features)
        methods[OURS_TREE_ENCODER] = lambda: tree.transform_features(features)
    seconds, results = interleaved(methods, repeats)
    seconds[OPENCV_BOW] = extractor_seconds
    rows = {
        name: {
            "seconds": spread(seconds[name]),
            "descriptors_per_s": spread(n_descriptors / value for value in seconds[name]),
        }
        for name in methods
    }
    rows[OURS_ENCODER]["speedup_vs_opencv"] = ratio_spread(
        seconds[OPENCV_BOW], seconds[OURS_ENCODER]
    )
    rows[OURS_ENCODER]["histogram_mass_differing_from_opencv"] = float(
        np.abs(results[OURS_ENCODER] - results[OPENCV_BOW]).sum(axis=1).mean() / 2
    )
    rows["_"] = {"descriptors": n_descriptors, "images": len(test)}
    return rows


def retrieval_rows() -> dict[str, dict[str, Any]]:
    """Training time, assignment time and UKBench N-S of each of RETRIEVAL_VOCABULARIES."""
    paths = ukbench_paths()
    truths = ukbench_ground_truth(paths)
    base = replace(UKBENCH_PARAMS, global_descriptor=False)
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        features, _ = extract_features(paths, base.make_detector(), n_jobs=-1, cache_dir=cache)
        rng = np.random.default_rng(0)
        sample = np.concatenate(
            [
                f.descriptors[rng.permutation(len(f))[: base.train_descriptors_per_image]]
                for f in features
            ]
        )
        probe = np.concatenate([f.descriptors for f in features[:ASSIGN_IMAGES]])
        for number, (name, (kind, params)) in enumerate(RETRIEVAL_VOCABULARIES.items()):
            print(f"  retrieval: {name}", flush=True)
            params = {**params, "n_iter": 5}
            with threadpool_limits(THREADS):
                fit_seconds, vocabulary = timed(
                    lambda kind=kind, params=params: make_vocabulary(
                        kind, n_jobs=THREADS, **params
                    ).fit(sample)
                )
                assign_seconds, _ = interleaved(
                    {name: lambda vocabulary=vocabulary: vocabulary.assign(probe)}
                )
            directory = Path(scratch) / f"index{number}"
            build_index(
                paths,
                directory,
                replace(base, vocabulary=kind, vocabulary_params=params),
                cache_dir=cache,
            )
            score = evaluate_index(
                Index.open(directory), truths, depth=10, mode="local", verify=False
            )
            rows[name] = {
                "n_words": vocabulary.n_words_,
                "fit_seconds": fit_seconds,
                "assign_us_per_descriptor": spread(
                    1e6 * value / len(probe) for value in assign_seconds[name]
                ),
                "ukbench_ns": score["N-S"],
            }
    rows["_"] = {"training_descriptors": len(sample), "images": len(paths)}
    return rows


def main() -> str:
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    info = machine()
    chosen, descriptors = load_descriptors()
    cv2.setNumThreads(THREADS)
    vocabulary = {}
    with threadpool_limits(THREADS):
        for k in WORD_COUNTS:
            print(f"  vocabularies, k={k}", flush=True)
            vocabulary[str(k)] = vocabulary_rows(k, descriptors)
        print("  encoding throughput", flush=True)
        grey = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in chosen]
        encoding = encoding_rows(grey[:-N_ENCODE_IMAGES], grey[-N_ENCODE_IMAGES:])
    retrieval = retrieval_rows() if RETRIEVAL else None
    info = finish_machine(info)
    results = {
        "descriptors": {
            "count": len(descriptors),
            "dimension": descriptors.shape[1],
            "images": N_IMAGES,
            "source": "flowers5 (128 x 128), dense RootSIFT, step 8, sizes 16/24/32",
        },
        "iterations": N_ITER,
        "threads": THREADS,
        "repeats": REPEATS,
        "machine": info,
        "vocabulary": vocabulary,
        "encoding": encoding,
        "goals": goals(vocabulary, encoding),
    }
    if retrieval is not None:
        results["retrieval_vocabularies"] = retrieval
    atomic_write_json(RESULTS, results)
    return markdown(vocabulary, encoding, retrieval, len(descriptors), info)


def goals(vocabulary: dict, encoding: dict) -> list[dict[str, Any]]:
    """The issue's targets, each judged by the minimum of its per-round ratio: ``{"figure",
    "goal" (None: shown for reference), "spread", "met"}``."""
    figures = []
    for k, rows in vocabulary.items():
        figures.append(
            (
                f"k={k}: speed-up vs MiniBatchKMeans at its error",
                VOCABULARY_GOAL,
                rows[EQUAL_ERROR]["speedup_vs_minibatch"],
            )
        )
        if "speedup_vs_opencv" in rows[OURS]:
            figures.append(
                (
                    f"k={k}: speed-up vs cv2.kmeans, same iterations",
                    None,
                    rows[OURS]["speedup_vs_opencv"],
                )
            )
    figures.append((GOAL_ENCODING, ENCODING_GOAL, encoding[OURS_ENCODER]["speedup_vs_opencv"]))
    return [
        {
            "figure": name,
            "goal": goal,
            "spread": figure,
            "met": None if goal is None else bool(figure["min"] >= goal),
        }
        for name, goal, figure in figures
    ]


def goal_table(figures: list[dict[str, Any]]) -> list[str]:
    """Markdown rows of :func:`goals`: the minimum judged, the median and range shown."""
    lines = [
        "| figure | goal | minimum | median (min-max) | met |",
        "|---|---:|---:|---:|---|",
    ]
    for figure in figures:
        goal = "-" if figure["goal"] is None else f"{figure['goal']:.0f}x"
        met = "-" if figure["met"] is None else ("yes" if figure["met"] else "**no**")
        lines.append(
            f"| {figure['figure']} | {goal} | {figure['spread']['min']:.2f}x | "
            f"{format_spread(figure['spread'], 'x')} | {met} |"
        )
    return lines


def markdown(
    vocabulary: dict,
    encoding: dict,
    retrieval: dict | None,
    n_descriptors: int,
    info: dict[str, Any],
) -> str:
    lines = [
        "## Bag of Features: vocabulary building and encoding",
        "",
        f"{n_descriptors:,} dense RootSIFT descriptors (128-D) of {N_IMAGES} flowers5 photos, "
        f"{N_ITER} iterations for every method, {THREADS} thread(s) each; {REPEATS} interleaved "
        f"rounds, median (min-max). Machine: {describe_machine(info)}. "
        "Error: mean squared distance to the nearest word.",
        "",
        "| k | method | seconds | error | speed-up (per round) | error / imagelearn error |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for k, rows in vocabulary.items():
        reference = rows[OURS]["quantization_error"]
        for name, row in rows.items():
            label = f"{name} (n_iter={row['n_iter']})" if "n_iter" in row else name
            if "speedup_vs_minibatch" in row:
                speedup = f"{format_spread(row['speedup_vs_minibatch'], 'x')} vs MiniBatchKMeans"
            elif "speedup_vs_opencv" in row:
                speedup = f"{format_spread(row['speedup_vs_opencv'], 'x')} vs cv2.kmeans"
            else:
                speedup = ""
            lines.append(
                f"| {k} | {label} | {format_spread(row['seconds'])} | "
                f"{row['quantization_error']:.4f} | {speedup} | "
                f"{row['quantization_error'] / reference:.3f} |"
            )
    context = encoding["_"]
    lines += [
        "",
        f"Encoding {context['descriptors']:,} dense SIFT descriptors of {context['images']} images "
        f"against {ENCODE_WORDS} words (OpenCV's extractor: its time minus SIFT's, image by "
        "image):",
        "",
        "| encoder | descriptors/s | speed-up vs OpenCV BOW extractor (per round) |",
        "|---|---:|---:|",
    ]
    for name, row in encoding.items():
        if name == "_":
            continue
        speedup = format_spread(row["speedup_vs_opencv"], "x") if "speedup_vs_opencv" in row else ""
        rate = row["descriptors_per_s"]
        lines.append(
            f"| {name} | {rate['median']:,.0f} ({rate['min']:,.0f}-{rate['max']:,.0f}) | {speedup} |"
        )
    lines += ["", *goal_table(goals(vocabulary, encoding))]
    if retrieval is not None:
        lines += [
            "",
            f"Vocabularies for retrieval: UKBench ({retrieval['_']['images']} photos), each "
            f"trained on the same {retrieval['_']['training_descriptors']:,} RootSIFT descriptors "
            f"({THREADS} thread(s); training one run, assignment median of {REPEATS}); N-S of the "
            "local path without verification (4 = perfect):",
            "",
            "| vocabulary | words | training s | assignment µs / descriptor | UKBench N-S |",
            "|---|---:|---:|---:|---:|",
            *(
                f"| {name} | {row['n_words']:,} | {row['fit_seconds']:.1f} | "
                f"{row['assign_us_per_descriptor']['median']:.1f} | {row['ukbench_ns']:.3f} |"
                for name, row in retrieval.items()
                if name != "_"
            ),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main())
