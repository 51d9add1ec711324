"""``make bench-check``: rerun the Bag-of-Features goals in a few minutes, fail when one is missed.

The headline ratios of ``bench/bench_bof.py`` (issue #16's goals), on fewer descriptors and
images than the full benchmark but the same kind of data, methods and settings: vocabulary
building at MiniBatchKMeans's error for k=256 and k=1000 (>= 3x), and encoding against OpenCV's
``BOWImgDescriptorExtractor`` (>= 5x). Each ratio is taken per interleaved round, over at least
five rounds; a goal is met when its **minimum** reaches it. Prints min / median / max and the
machine (load before and after); exits 1 when a goal's minimum is not met. Sizes:
``BENCH_CHECK_DESCRIPTORS`` (default 50,000), ``BENCH_CHECK_IMAGES`` (150 flowers5 photos, of
which ``BENCH_CHECK_ENCODE_IMAGES``, default 100, are encoded), ``BENCH_REPEATS`` (5, at least
5). Nothing is written to ``bench/results``.
"""

from __future__ import annotations

import os
import sys

import cv2
from threadpoolctl import threadpool_limits

from bench import bench_bof
from bench.common import REPEATS, describe_machine, finish_machine, format_spread, machine
from imagelearn.core.errors import ParameterError

#: Descriptors clustered and photos they are drawn from (the full benchmark: 100,000 of 300).
N_DESCRIPTORS = int(os.environ.get("BENCH_CHECK_DESCRIPTORS", 50_000))
N_IMAGES = int(os.environ.get("BENCH_CHECK_IMAGES", 150))
#: Photos encoded (the others train the encoding vocabulary; the full benchmark: 200).
N_ENCODE_IMAGES = int(os.environ.get("BENCH_CHECK_ENCODE_IMAGES", 100))
#: The fewest rounds a goal may be judged on.
MIN_REPEATS = 5
#: Vocabulary sizes of the goals.
WORD_COUNTS = (256, 1000)


def check(repeats: int = REPEATS) -> list[dict]:
    """The goals of :func:`bench.bench_bof.goals`, measured at this module's sizes; prints
    each method's seconds (median (min-max)) on the way."""
    if repeats < MIN_REPEATS:
        raise ParameterError("repeats", f"a goal needs >= {MIN_REPEATS} rounds; got {repeats}")
    chosen, descriptors = bench_bof.load_descriptors(N_IMAGES, N_DESCRIPTORS)
    cv2.setNumThreads(bench_bof.THREADS)
    vocabulary = {}
    with threadpool_limits(bench_bof.THREADS):
        for k in WORD_COUNTS:
            print(f"  vocabularies, k={k}", flush=True)
            vocabulary[str(k)] = bench_bof.vocabulary_rows(
                k, descriptors, repeats, with_opencv=False
            )
            print_seconds(vocabulary[str(k)])
        print("  encoding", flush=True)
        grey = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in chosen]
        encoding = bench_bof.encoding_rows(
            grey[:-N_ENCODE_IMAGES], grey[-N_ENCODE_IMAGES:], repeats, with_tree=False
        )
        print_seconds(encoding)
    return bench_bof.goals(vocabulary, encoding)


def print_seconds(rows: dict[str, dict]) -> None:
    for name, row in rows.items():
        if "seconds" in row:
            print(f"    {name}: {format_spread(row['seconds'])} s", flush=True)


def main() -> int:
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    info = machine()
    print(
        f"bench-check: {N_DESCRIPTORS:,} descriptors of {N_IMAGES} flowers5 photos, "
        f"{N_ENCODE_IMAGES} encoded, {REPEATS} interleaved rounds",
        flush=True,
    )
    figures = check()
    kernels = sorted({str(pool["architecture"]) for pool in info["native_libraries"]} - {"None"})
    print(f"\nMachine: {describe_machine(finish_machine(info))}; BLAS kernels {kernels}\n")
    print("\n".join(bench_bof.goal_table(figures)))
    missed = [figure["figure"] for figure in figures if figure["met"] is False]
    if missed:
        print(f"\nFAILED: minimum below the goal for {'; '.join(missed)}", file=sys.stderr)
        return 1
    print("\nevery goal's minimum is met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
