"""``imagelearn index build|add|remove|info|search|eval|benchmark``: instance retrieval."""

from __future__ import annotations

import argparse
import json
import sys

from imagelearn.cli.arguments import (
    add_n_jobs,
    add_output_dir,
    add_random_state,
    add_verbs,
    print_mapping,
    roi,
)


def _add_search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("local", "global", "hybrid"), default="local")
    parser.add_argument("--no-verify", action="store_true", help="skip spatial verification")
    parser.add_argument(
        "--verify-top", type=int, default=50, help="candidates verified (default 50)"
    )
    parser.add_argument(
        "--shortlist", type=int, default=100, help="global shortlist in hybrid mode"
    )
    parser.add_argument("--expand", action="store_true", help="average query expansion")
    parser.add_argument("--min-inliers", type=int, default=10, help="inliers of a verified match")


def _search_options(arguments: argparse.Namespace) -> dict:
    return {
        "mode": arguments.mode,
        "verify": not arguments.no_verify,
        "verify_top": arguments.verify_top,
        "shortlist": arguments.shortlist,
        "expand": arguments.expand,
        "min_inliers": arguments.min_inliers,
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs(subparsers, "index", help="find every image showing the same object")

    build = verbs.add_parser("build", help="index a collection (resumes an interrupted build)")
    build.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_output_dir(build, "index directory", required=True)
    build.add_argument("--detector", default="rootsift")
    build.add_argument("--max-keypoints", type=int, default=1000)
    build.add_argument("--max-side", type=int, default=1024, help="longer side detected on, pixels")
    build.add_argument("--vocabulary", choices=("tree", "kmeans"), default="tree")
    build.add_argument("--branching", type=int, default=10, help="vocabulary tree branches")
    build.add_argument(
        "--depth", type=int, default=5, help="vocabulary tree levels (10^5 = 100k words)"
    )
    build.add_argument(
        "--beam",
        type=int,
        default=1,
        help="tree nodes kept per level when assigning: 1 is greedy; 2-5 find nearer words, slower",
    )
    build.add_argument(
        "--words",
        type=int,
        default=100_000,
        help="flat k-means vocabulary size (words searched through an HNSW graph from 50k on)",
    )
    build.add_argument("--train-images", type=int, default=2000)
    build.add_argument(
        "--global",
        dest="global_descriptor",
        action="store_true",
        help="also index GeM CNN descriptors (global and hybrid search)",
    )
    build.add_argument("--overwrite", action="store_true", help="replace a finished index at --out")
    add_n_jobs(build)
    build.set_defaults(handler=run_build)

    add = verbs.add_parser("add", help="add images (content already indexed is skipped)")
    add.add_argument("index")
    add.add_argument("images", nargs="+")
    add_n_jobs(add)
    add.set_defaults(handler=run_add)

    remove = verbs.add_parser("remove", help="remove images by path")
    remove.add_argument("index")
    remove.add_argument("paths", nargs="+")
    remove.set_defaults(handler=run_remove)

    info = verbs.add_parser("info", help="counts, sizes and parameters")
    info.add_argument("index")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=run_info)

    search = verbs.add_parser("search", help="rank the indexed images against a query image")
    search.add_argument("index")
    search.add_argument("query")
    search.add_argument("--roi", type=roi, help="x,y,w,h: only this part of the query (pixels)")
    search.add_argument("--top", type=int, default=20)
    search.add_argument("--json", action="store_true", help='print {"query", "results": [...]}')
    search.add_argument("--plot", help="write a PNG of the query beside its best matches")
    _add_search_options(search)
    search.set_defaults(handler=run_search)

    evaluate = verbs.add_parser("eval", help="mAP, mP@k, recall@k, N-S against ground truth")
    evaluate.add_argument("index")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--truth", help="ground-truth JSON (e.g. from 'index benchmark')")
    source.add_argument("--ukbench", help="a UKBench folder: every image queries its group of four")
    evaluate.add_argument("--depth", type=int, default=100, help="results scored per query")
    evaluate.add_argument("--json", action="store_true")
    _add_search_options(evaluate)
    evaluate.set_defaults(handler=run_eval)

    benchmark = verbs.add_parser("benchmark", help="write a variant benchmark from real photos")
    benchmark.add_argument("originals", nargs="+", help="photos (files or folders) to alter")
    add_output_dir(benchmark, required=True)
    benchmark.add_argument("--variants", type=int, default=5)
    benchmark.add_argument("--distractors", nargs="*", default=[], help="files or folders")
    benchmark.add_argument("--pairs", help="a folder of viewpoint pairs NAME1.ext/NAME2.ext")
    benchmark.add_argument("--limit", type=int, help="use only this many originals (seeded choice)")
    add_random_state(benchmark)
    benchmark.set_defaults(handler=run_benchmark)


def _images(sources: list[str]) -> list[str]:
    from imagelearn.data.collection import find_images

    return [str(path) for source in sources for path in find_images(source)]


def run_build(arguments: argparse.Namespace) -> int:
    from imagelearn.bof.vocabulary import HNSW_MIN_WORDS
    from imagelearn.retrieval import IndexParams, build_index

    word_index = "hnsw" if arguments.words >= HNSW_MIN_WORDS else "flat"
    vocabulary_params = (
        {
            "branching": arguments.branching,
            "depth": arguments.depth,
            "n_iter": 10,
            "beam_width": arguments.beam,
        }
        if arguments.vocabulary == "tree"
        else {"n_words": arguments.words, "n_iter": 10, "index": word_index}
    )
    params = IndexParams(
        detector=arguments.detector,
        max_keypoints=arguments.max_keypoints,
        max_side=arguments.max_side,
        vocabulary=arguments.vocabulary,
        vocabulary_params=vocabulary_params,
        train_images=arguments.train_images,
        global_descriptor=arguments.global_descriptor,
    )
    report = build_index(
        _images(arguments.images),
        arguments.out,
        params,
        overwrite=arguments.overwrite,
        n_jobs=arguments.n_jobs,
    )
    print(report.format())
    return 0 if report.added or report.duplicates else 1


def run_add(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval import add_images

    report = add_images(arguments.index, _images(arguments.images), n_jobs=arguments.n_jobs)
    print(report.format())
    return 0


def run_remove(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval import remove_images

    removed, missing = remove_images(arguments.index, arguments.paths)
    print(f"removed: {len(removed)}")
    for path in missing:
        print(f"not in the index: {path}", file=sys.stderr)
    return 1 if missing else 0


def run_info(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval import Index

    print_mapping(Index.open(arguments.index).info(), arguments.json)
    return 0


def run_search(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval import Index

    result = Index.open(arguments.index).search(
        arguments.query, top=arguments.top, roi=arguments.roi, **_search_options(arguments)
    )
    if arguments.plot:
        from imagelearn.retrieval.drawing import draw_matches

        draw_matches(result, arguments.query, arguments.plot)
    print(json.dumps(result.as_dict(), ensure_ascii=False) if arguments.json else result.format())
    return 0


def run_eval(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval import Index, load_ground_truth, ukbench_ground_truth
    from imagelearn.retrieval.evaluation import evaluate_index

    truths = (
        load_ground_truth(arguments.truth)
        if arguments.truth
        else ukbench_ground_truth(sorted(_images([arguments.ukbench])))
    )
    scores = evaluate_index(
        Index.open(arguments.index), truths, arguments.depth, **_search_options(arguments)
    )
    print_mapping(scores, arguments.json, ".4f")
    return 0


def run_benchmark(arguments: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from imagelearn.retrieval.benchmark import make_variant_benchmark, viewpoint_pairs

    originals = _images(arguments.originals)
    if arguments.limit:
        chosen = np.random.default_rng(arguments.random_state).permutation(len(originals))[
            : arguments.limit
        ]
        originals = [originals[i] for i in sorted(chosen)]
    pairs = []
    if arguments.pairs:
        pairs = viewpoint_pairs(_images([arguments.pairs]))
    truth = make_variant_benchmark(
        originals,
        arguments.out,
        arguments.variants,
        _images(arguments.distractors),
        pairs,
        seed=arguments.random_state,
    )
    print(f"ground truth: {truth}")
    print(f"database list: {Path(truth).parent / 'database.txt'}")
    return 0
