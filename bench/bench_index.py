"""Instance retrieval: accuracy on real photos, tracking, and scale against plain alternatives.

Run: ``python -m bench.run_all index`` (or ``python -m bench.bench_index [--1m]``). Writes
``bench/results/index.json`` and returns Markdown tables:

* UKBench (500 real images, 125 objects): N-S score per path (local, global, hybrid), with and
  without spatial verification, with query expansion; latency per query.
* The variant benchmark (real photos from hymenoptera + flowers5 distractors + the real
  multiview pairs): mAP and recall@10 with and without verification.
* graf1 -> graf3: corner error (pixels) of the estimated homography against ``H1to3p``.
* Tracking: the synthetic composited video, OTB "Girl" success rate, a run on vtest.avi.
* Scale: 10k and 100k (``--1m``: also 1M) database entries GENERATED from the descriptor
  statistics measured on the real UKBench index (unique words per image, document frequency
  of words by rank, stretched to a 100k-word vocabulary), because a million real images
  cannot be had here. Side by side in the same run: brute-force FAISS Flat and scikit-learn
  ``NearestNeighbors`` over 256-D global descriptors, FAISS IVF-PQ, and a dense tf-idf
  matrix product (only where the dense matrix fits in 2 GB).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import data_root
from imagelearn.core.bundle import atomic_write_json
from imagelearn.data.collection import find_images
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
from imagelearn.retrieval.tracking import ObjectTracker, read_frames, read_otb_boxes, success_rate
from imagelearn.retrieval.verification import project_corners

RESULTS = Path(__file__).resolve().parent / "results" / "index.json"
DATA = data_root().resolve()
SCALE_WORDS = 100_000
GLOBAL_DIMENSION = 256
DENSE_LIMIT_BYTES = 2 * 2**30
N_LATENCY_QUERIES = 30


def ukbench(scratch: Path) -> tuple[dict, Index]:
    paths = sorted(str(p) for p in (DATA / "ukbench").glob("ukbench*.jpg"))
    params = IndexParams(
        max_keypoints=1000,
        max_side=640,
        vocabulary_params={"branching": 10, "depth": 4, "n_iter": 5},
        train_images=500,
        train_descriptors_per_image=300,
        global_descriptor=True,
    )
    started = time.perf_counter()
    build_index(paths, scratch / "ukbench", params, cache_dir=scratch / "cache")
    build_seconds = time.perf_counter() - started
    index = Index.open(scratch / "ukbench")
    truths = ukbench_ground_truth(paths)
    runs = {
        "local": {"mode": "local", "verify": False},
        "local + verification": {"mode": "local", "verify": True, "verify_top": 20},
        "local + verification + QE": {"mode": "local", "expand": True, "verify_top": 20},
        "global": {"mode": "global", "verify": False},
        "global + verification": {"mode": "global", "verify": True, "verify_top": 20},
        "hybrid (global shortlist 20, verified)": {"mode": "hybrid", "shortlist": 20},
    }
    scores = {}
    for name, options in runs.items():
        scores[name] = evaluate_index(index, truths, depth=10, **options)
        print(f"ukbench {name}: N-S {scores[name]['N-S']:.3f}", flush=True)
    info = index.info()
    return {
        "build_seconds_per_image": build_seconds / len(paths),
        "info": info,
        "scores": scores,
    }, index


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
        originals, scratch / "variants", 5, distractors, pairs, seed=0, max_side=640
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
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_index import read_opencv_matrix

    truth = read_opencv_matrix(folder / "H1to3p.xml", "H13")
    error = np.linalg.norm(
        project_corners(best.homography, 800, 640) - project_corners(truth, 800, 640), axis=1
    )
    return {
        "match": Path(best.path).name,
        "inliers": best.inliers,
        "corner_error_px": error.tolist(),
    }


def tracking() -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_track import _synthetic_video

    photo, frames, truths = _synthetic_video(40)
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
    started = time.perf_counter()
    girl_track = list(
        ObjectTracker(min_inliers=6)
        .fit(girl_frames[0][y : y + height, x : x + width])
        .track(girl_frames)
    )
    girl_fps = len(girl_frames) / (time.perf_counter() - started)
    street = list(read_frames(DATA / "video" / "vtest.avi", max_frames=60))
    street_track = list(ObjectTracker().fit(street[0][300:576, 0:300]).track(street))
    return {
        "synthetic_frames": len(frames),
        "synthetic_found": sum(t.corners is not None for t in tracked),
        "synthetic_median_corner_error_px": float(np.median(errors)),
        "otb_girl_success_rate": success_rate([t.box for t in girl_track], boxes),
        "otb_girl_found": sum(t.corners is not None for t in girl_track),
        "otb_girl_frames_per_second": girl_fps,
        "vtest_frames": len(street),
        "vtest_found": sum(t.corners is not None for t in street_track),
    }


def word_statistics(index: Index) -> tuple[np.ndarray, np.ndarray]:
    """Unique words per image and word probabilities by rank, from the real index."""
    unique_counts, frequencies = [], np.zeros(index._state.vocabulary.n_words_, np.int64)
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
    """CSR postings with the real statistics: posting length of word w ~ Poisson(postings * p_w)."""
    expected = float(unique_counts.mean()) * n_images
    lengths = np.minimum(rng.poisson(expected * probabilities), n_images).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    images = np.empty(offsets[-1], dtype=np.int32)
    for start in range(0, SCALE_WORDS, 10_000):
        words = slice(start, min(start + 10_000, SCALE_WORDS))
        block = slice(offsets[words.start], offsets[words.stop])
        images[block] = rng.integers(
            0, n_images, offsets[words.stop] - offsets[words.start], dtype=np.int32
        )
    weights = rng.uniform(0.01, 0.1, len(images)).astype(np.float32)
    return Postings(offsets, images, weights)


def timed(function, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(times)), float(np.percentile(times, 95))


def measure_size(
    n_images: int, unique_counts: np.ndarray, probabilities: np.ndarray, verification_ms: float, rng
) -> dict:
    """Memory, build time and latency of the inverted file and the alternatives at one size."""
    import faiss
    from sklearn.neighbors import NearestNeighbors

    from imagelearn.retrieval.global_descriptors import make_global_index

    started = time.perf_counter()
    postings = synthetic_postings(n_images, unique_counts, probabilities, rng)
    build_ms = (time.perf_counter() - started) * 1000.0
    query_length = int(np.median(unique_counts))
    queries = [
        np.unique(rng.choice(SCALE_WORDS, query_length, p=probabilities))
        for _ in range(N_LATENCY_QUERIES)
    ]
    weights = [np.full(len(q), 1 / np.sqrt(len(q)), np.float32) for q in queries]
    cursor = iter(range(10**9))

    def inverted_file_query() -> None:
        i = next(cursor) % N_LATENCY_QUERIES
        _, scores = score_postings([postings], queries[i], weights[i])
        np.argpartition(-scores, 100)[:100]

    median, p95 = timed(inverted_file_query, N_LATENCY_QUERIES)
    entry = {
        "inverted file": {
            "bytes_per_image": (postings.nbytes + 12 * n_images) / n_images,
            "build_ms_per_image": build_ms / n_images,
            "median_ms": median,
            "p95_ms": p95,
            "median_ms_after_verification": median + verification_ms,
        }
    }
    descriptors = rng.normal(size=(n_images, GLOBAL_DIMENSION)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    query_vector = descriptors[:1]
    flat = faiss.IndexFlatIP(GLOBAL_DIMENSION)
    flat.add(descriptors)
    median, p95 = timed(lambda: flat.search(query_vector, 100), N_LATENCY_QUERIES)
    entry["FAISS Flat (global 256-D)"] = {
        "bytes_per_image": 4 * GLOBAL_DIMENSION,
        "median_ms": median,
        "p95_ms": p95,
    }
    started = time.perf_counter()
    ivfpq = make_global_index(
        GLOBAL_DIMENSION, max(n_images, 50_001), descriptors[: min(n_images, 100_000)]
    )
    ivfpq.add(descriptors)
    ivf_build = (time.perf_counter() - started) * 1000.0
    median, p95 = timed(lambda: ivfpq.search(query_vector, 100), N_LATENCY_QUERIES)
    entry["FAISS IVF-PQ (global)"] = {
        "bytes_per_image": ivfpq.code_size + 8,
        "build_ms_per_image": ivf_build / n_images,
        "median_ms": median,
        "p95_ms": p95,
    }
    neighbours = NearestNeighbors(n_neighbors=100, algorithm="brute").fit(descriptors)
    median, p95 = timed(lambda: neighbours.kneighbors(query_vector), N_LATENCY_QUERIES)
    entry["scikit-learn NearestNeighbors (global)"] = {
        "bytes_per_image": 4 * GLOBAL_DIMENSION,
        "median_ms": median,
        "p95_ms": p95,
    }
    entry["dense tf-idf matrix product"] = dense_product(postings, n_images, queries[0], weights[0])
    return entry


def dense_product(
    postings: Postings, n_images: int, words: np.ndarray, weights: np.ndarray
) -> dict:
    """The plain alternative: a dense (images x words) tf-idf matrix times the query vector."""
    if n_images * SCALE_WORDS * 4 > DENSE_LIMIT_BYTES:
        return {"bytes_per_image": 4 * SCALE_WORDS, "skipped": "does not fit in 2 GB"}
    dense = np.zeros((n_images, SCALE_WORDS), np.float32)
    for word in range(SCALE_WORDS):
        rows = slice(postings.offsets[word], postings.offsets[word + 1])
        dense[postings.images[rows], word] = postings.weights[rows]
    query = np.zeros(SCALE_WORDS, np.float32)
    query[words] = weights
    median, p95 = timed(lambda: dense @ query, 5)
    return {"bytes_per_image": 4 * SCALE_WORDS, "median_ms": median, "p95_ms": p95}


def scale(
    sizes: list[int], unique_counts: np.ndarray, probabilities: np.ndarray, verification_ms: float
) -> dict:
    rng = np.random.default_rng(0)
    results = {}
    for n_images in sizes:
        results[str(n_images)] = measure_size(
            n_images, unique_counts, probabilities, verification_ms, rng
        )
        median = results[str(n_images)]["inverted file"]["median_ms"]
        print(f"scale {n_images}: inverted file median {median:.1f} ms", flush=True)
    return results


def markdown(report: dict) -> str:
    lines = ["## index: instance retrieval", "", "UKBench, 500 real images (N-S: best 4.0):", ""]
    lines += ["| path | N-S | mAP | median ms/query | p95 ms |", "|---|---|---|---|---|"]
    for name, s in report["ukbench"]["scores"].items():
        lines.append(
            f"| {name} | {s['N-S']:.3f} | {s['mAP']:.3f} | {s['median_ms']:.0f} | {s['p95_ms']:.0f} |"
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
        f"{t['otb_girl_success_rate']:.3f} ({t['otb_girl_frames_per_second']:.1f} frames/s); vtest.avi "
        f"{t['vtest_found']}/{t['vtest_frames']} frames found.",
        "",
        "Scale (database entries generated from the real UKBench word statistics; 100k words):",
        "",
        "| images | method | bytes/image | median ms | p95 ms | ratio to inverted file (median) |",
        "|---|---|---|---|---|---|",
    ]
    for size, entry in report["scale"].items():
        reference = entry["inverted file"]["median_ms"]
        for method, values in entry.items():
            if "median_ms" not in values:
                lines.append(
                    f"| {size} | {method} | {values['bytes_per_image']:.0f} | - | - | {values['skipped']} |"
                )
                continue
            lines.append(
                f"| {size} | {method} | {values['bytes_per_image']:.0f} | {values['median_ms']:.2f} | "
                f"{values['p95_ms']:.2f} | {values['median_ms'] / reference:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(include_million: bool = False) -> str:
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        ukbench_report, index = ukbench(scratch)
        unique_counts, probabilities = word_statistics(index)
        verification_ms = (
            ukbench_report["scores"]["local + verification"]["median_ms"]
            - ukbench_report["scores"]["local"]["median_ms"]
        )
        report = {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "load_before": load_before,
            },
            "ukbench": ukbench_report,
            "variants": variants(scratch),
            "graf": graf(scratch),
            "tracking": tracking(),
            "scale_source": "synthetic postings from real UKBench statistics (unique words per image "
            f"mean {unique_counts.mean():.0f}, word frequencies by rank stretched to {SCALE_WORDS} words)",
            "scale": scale(
                [5_000, 10_000, 100_000, *([1_000_000] if include_million else [])],
                unique_counts,
                probabilities,
                verification_ms,
            ),
        }
    report["machine"]["load_after"] = os.getloadavg()[0]
    atomic_write_json(RESULTS, report)
    return markdown(report)


if __name__ == "__main__":
    print(main(include_million="--1m" in sys.argv[1:]))
