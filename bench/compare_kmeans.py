"""``KMeansVocabulary.fit`` of this tree against an older revision, interleaved, with the spread.

Run: ``python -m bench.compare_kmeans 92b36a9`` (any git revision). The revision's
``src/imagelearn`` is exported to a temporary folder; each repeat fits once in a fresh process
per side (this tree, the revision), alternating which side goes first, on the same dense
RootSIFT descriptors of flowers5 photos as ``bench/bench_bof.py`` (its ``N_IMAGES``,
``N_DESCRIPTORS``, ``WORD_COUNTS``, ``N_ITER`` and ``THREADS``). Prints min / median / max
seconds per side, the new / old ratios, and whether both sides learned identical words.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np

from bench.bench_bof import DATA, N_DESCRIPTORS, N_IMAGES, N_ITER, THREADS, WORD_COUNTS

ROOT = Path(__file__).resolve().parent.parent

#: Fits once and prints the seconds; runs with either side's ``src`` first on ``sys.path``.
FIT = """
import sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from imagelearn.bof.vocabulary import KMeansVocabulary
descriptors = np.load(sys.argv[1])
with threadpool_limits(int(sys.argv[4])):
    start = time.perf_counter()
    vocabulary = KMeansVocabulary(
        n_words=int(sys.argv[2]), n_iter=int(sys.argv[3]), n_jobs=int(sys.argv[4]), random_state=0
    ).fit(descriptors)
    print(time.perf_counter() - start)
np.save(sys.argv[5], vocabulary.words_)
"""


def descriptors_file(folder: Path) -> Path:
    """The benchmark's descriptors, as ``bench_bof.main`` draws them, saved in ``folder``."""
    from imagelearn.data.collection import find_images
    from imagelearn.features import extract_features, make_detector

    paths = find_images(DATA / "flowers5")
    rng = np.random.default_rng(0)
    chosen = [paths[i] for i in np.sort(rng.choice(len(paths), N_IMAGES, replace=False))]
    features, _ = extract_features(chosen, make_detector("dense_rootsift"), n_jobs=1)
    pool = np.concatenate([item.descriptors for item in features if item is not None])
    path = folder / "descriptors.npy"
    np.save(path, pool[rng.choice(len(pool), min(N_DESCRIPTORS, len(pool)), replace=False)])
    return path


def export_revision(revision: str, folder: Path) -> Path:
    """``src/imagelearn`` of ``revision`` under ``folder``; returns the ``src`` to import from."""
    archive = subprocess.run(
        ["git", "archive", revision, "src/imagelearn"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def fit_seconds(source: Path, descriptors: Path, k: int, words: Path) -> float:
    environment = {**os.environ, "PYTHONPATH": str(source), "IMAGELEARN_QUIET": "1"}
    command = [sys.executable, "-c", FIT, str(descriptors), str(k), str(N_ITER), str(THREADS)]
    result = subprocess.run(
        [*command, str(words)], env=environment, capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="git revision to compare against, e.g. 92b36a9")
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        sides = {"new": ROOT / "src", "old": export_revision(arguments.revision, folder / "old")}
        descriptors = descriptors_file(folder)
        print(f"load before {os.getloadavg()[0]:.2f}; {arguments.repeats} repeats, 1 fit each")
        for k in WORD_COUNTS:
            seconds: dict[str, list[float]] = {side: [] for side in sides}
            for repeat in range(arguments.repeats):
                for side in sorted(sides, reverse=repeat % 2 == 0):  # alternate who goes first
                    words = folder / f"{side}.npy"
                    seconds[side].append(fit_seconds(sides[side], descriptors, k, words))
            for side, values in seconds.items():
                print(
                    f"k={k} {side}: min {min(values):.3f} median {statistics.median(values):.3f} "
                    f"max {max(values):.3f} s"
                )
            same = np.array_equal(np.load(folder / "new.npy"), np.load(folder / "old.npy"))
            print(
                f"k={k} new / old: min {min(seconds['new']) / min(seconds['old']):.3f}, median "
                f"{statistics.median(seconds['new']) / statistics.median(seconds['old']):.3f}; "
                f"identical words: {same}"
            )
        print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
