"""Throughput of ``extract_features`` against a plain single-process OpenCV SIFT loop.

Run: ``python -m bench.run_all features`` (or ``python -m bench.bench_features``). Writes
``bench/results/features.json`` and returns a Markdown table of images per second and ratios
to the OpenCV loop (``cv2.imread`` + ``SIFT.detectAndCompute``: what a user would write),
each the median (min-max) of ``$BENCH_FEATURES_REPEATS`` interleaved rounds (default 5) over
``$BENCH_FEATURES_IMAGES`` photos (default 100).
"""

from __future__ import annotations

import os
import tempfile
from functools import partial
from pathlib import Path

import cv2

from bench import data_root
from bench.common import (
    REPEATS,
    Directories,
    describe_machine,
    format_spread,
    interleaved,
    machine,
    rate_spread,
    ratio_spread,
    setting,
    spreads,
    write_results,
)
from imagelearn.data.collection import find_images
from imagelearn.features import Detector, extract_features, make_detector

RESULTS = Path(__file__).resolve().parent / "results" / "features.json"
DATA = data_root()
#: Images timed (the first of hymenoptera/train), unless ``$BENCH_FEATURES_IMAGES`` says otherwise.
N_IMAGES = 100
IMAGES_VARIABLE = "BENCH_FEATURES_IMAGES"
BASELINE = "opencv loop (cv2.imread + SIFT, 1 process)"
ONE_CORE = "opencv loop, one OpenCV thread (one core)"
ALL_CORES = "extract_features all cores, no cache"


def opencv_loop(paths: list[Path], threads: int | None = None) -> int:
    """The baseline: decode each file with OpenCV and run SIFT on it, one after another.

    ``threads`` caps OpenCV's own thread pool (None: its default, all cores for the parts of
    SIFT that OpenCV parallelises); one thread gives the one-core figure that scaling is
    measured from.
    """
    previous = cv2.getNumThreads()
    if threads is not None:
        cv2.setNumThreads(threads)
    try:
        sift = cv2.SIFT_create()
        total = 0
        for path in paths:
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            keypoints, _ = sift.detectAndCompute(image, None)
            total += len(keypoints)
        return total
    finally:
        cv2.setNumThreads(previous)


def count_keypoints(paths: list[Path], detector: Detector, n_jobs: int, cache: Path | bool) -> int:
    """Our run: ``extract_features`` over ``paths``; returns the number of keypoints found."""
    features, _ = extract_features(paths, detector, n_jobs=n_jobs, cache_dir=cache)
    return sum(len(item) for item in features if item is not None)


def main() -> str:
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    paths = find_images(DATA / "hymenoptera" / "train")[: setting(IMAGES_VARIABLE, N_IMAGES)]
    repeats = setting("BENCH_FEATURES_REPEATS", REPEATS)
    info = machine()
    detector = make_detector("sift")
    with tempfile.TemporaryDirectory() as scratch:
        caches = Directories(Path(scratch))
        runs = {
            BASELINE: partial(opencv_loop, paths),
            ONE_CORE: partial(opencv_loop, paths, 1),
            "extract_features n_jobs=1, no cache": partial(
                count_keypoints, paths, detector, 1, False
            ),
            ALL_CORES: partial(count_keypoints, paths, detector, -1, False),
            "extract_features all cores, cold cache (writes it)": lambda: count_keypoints(
                paths, detector, -1, caches.fresh()
            ),
            "extract_features warm cache": lambda: count_keypoints(
                paths, detector, -1, caches.latest
            ),
        }
        seconds, keypoints = interleaved(runs, repeats)
    rows = {
        name: {
            "seconds": figures["seconds"],
            "images_per_s": rate_spread(seconds[name], len(paths)),
            "speed_vs_opencv_loop": ratio_spread(seconds[BASELINE], seconds[name]),
            "keypoints": keypoints[name],
        }
        for name, figures in spreads(seconds, BASELINE).items()
    }
    scaling = ratio_spread(seconds[ONE_CORE], seconds[ALL_CORES])
    record = write_results(
        RESULTS,
        {
            "images": len(paths),
            "source": "hymenoptera/train (JPEG, about 500 x 375)",
            "repeats": repeats,
            "detector": detector.get_params() | {"name": detector.name},
            "opencv": cv2.__version__,
            "runs": rows,
            "scaling_all_cores_vs_one_core": scaling,
        },
        info,
    )
    lines = [
        "## Local features: extraction throughput",
        "",
        f"SIFT on {len(paths)} hymenoptera photos; {describe_machine(record['machine'])}. "
        f"{repeats} rounds, the runs interleaved; median (min-max) over the rounds, the speed "
        "ratio taken within each round.",
        "",
        "| run | images/s | speed vs OpenCV loop |",
        "|---|---:|---:|",
        *(
            f"| {name} | {format_spread(row['images_per_s'], digits=1)} "
            f"| {format_spread(row['speed_vs_opencv_loop'], 'x')} |"
            for name, row in rows.items()
        ),
        "",
        f"Scaling with cores: `extract_features` on all {os.cpu_count()} cores is "
        f"**{format_spread(scaling, 'x')}** the one-core loop. OpenCV's default loop already "
        "runs parts of SIFT on several threads, which is why the process pool gains less over it.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main())
