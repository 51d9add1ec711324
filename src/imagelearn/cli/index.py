"""``imagelearn index build|add|remove|tag|info|search|evaluate|benchmark``: instance retrieval.

Each verb calls one function of :mod:`imagelearn.retrieval.runs` and prints its result.
"""

from __future__ import annotations

import argparse
import json
import sys

from imagelearn.cli.arguments import (
    add_alias,
    add_format,
    add_n_jobs,
    add_output_dir,
    add_overwrite,
    add_random_state,
    add_verbs,
    print_mapping,
    roi,
)


def _add_search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=("local", "global", "hybrid"),
        help="rank by local features, by global CNN descriptors, or both (global shortlist, "
        "local verification) (default: hybrid where the index holds global descriptors, "
        "else local)",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip spatial verification")
    parser.add_argument("--verify-top", type=int, default=50, help="candidates verified")
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
    build.add_argument("--detector", default="rootsift", help="local feature detector")
    build.add_argument(
        "--max-keypoints", type=int, default=1000, help="strongest keypoints kept per image"
    )
    build.add_argument("--max-side", type=int, default=1024, help="longer side detected on, pixels")
    build.add_argument(
        "--vocabulary",
        choices=("tree", "kmeans"),
        default="tree",
        help="visual vocabulary: a k-means tree, or flat k-means",
    )
    build.add_argument("--branching", type=int, help="tree vocabulary branches (default: 10)")
    build.add_argument(
        "--depth", type=int, help="tree vocabulary levels (default: 5, 10^5 = 100k words)"
    )
    build.add_argument(
        "--beam-width",
        type=int,
        help="tree nodes kept per level when assigning: 1 is greedy; 2-5 find nearer words, "
        "slower (default: 1)",
    )
    add_alias(build, "--beam", "beam_width", type=int)
    build.add_argument(
        "--n-words",
        type=int,
        help="flat k-means vocabulary size; words are searched through an HNSW graph from 50k "
        "on (default: 100000)",
    )
    add_alias(build, "--words", "n_words", type=int)
    build.add_argument(
        "--train-images", type=int, default=2000, help="images sampled to train the vocabulary"
    )
    build.add_argument(
        "--global-descriptor",
        action=argparse.BooleanOptionalAction,
        help="also index GeM CNN descriptors, for the global and hybrid search modes; "
        "--global-descriptor fetches the weights if need be (default: when the backbone's "
        "ImageNet weights are on this machine)",
    )
    add_alias(build, "--global", "global_descriptor", action="store_true")
    add_alias(build, "--no-global", "global_descriptor", action="store_false")
    build.add_argument(
        "--tags",
        action=argparse.BooleanOptionalAction,
        help="also tag every image with its top ImageNet classes, for keyword search (default: "
        "with the global descriptor)",
    )
    add_overwrite(build, "index")
    add_n_jobs(build)
    build.set_defaults(handler=run_build)

    add = verbs.add_parser("add", help="add images (content already indexed is skipped)")
    add.add_argument("index", help="index directory")
    add.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_n_jobs(add)
    add.set_defaults(handler=run_add)

    remove = verbs.add_parser("remove", help="remove images by path")
    remove.add_argument("index", help="index directory")
    remove.add_argument("paths", nargs="+", help="paths of indexed images")
    remove.set_defaults(handler=run_remove)

    tag = verbs.add_parser(
        "tag", help="give an index built without them its ImageNet tags and 2-D map"
    )
    tag.add_argument("index", help="index directory")
    tag.set_defaults(handler=run_tag)

    info = verbs.add_parser("info", help="counts, sizes and parameters")
    info.add_argument("index", help="index directory")
    add_format(info)
    info.set_defaults(handler=run_info)

    search = verbs.add_parser("search", help="rank the indexed images against a query image")
    search.add_argument("index", help="index directory")
    search.add_argument("query", help="query image file")
    search.add_argument("--roi", type=roi, help="x,y,w,h: only this part of the query (pixels)")
    search.add_argument("--top", type=int, default=20, help="results printed")
    add_format(search)
    search.add_argument("--plot", help="write a PNG of the query beside its best matches")
    _add_search_options(search)
    search.set_defaults(handler=run_search)

    evaluate = verbs.add_parser(
        "evaluate",
        aliases=["eval"],
        help="mAP, mP@k, recall@k, N-S against ground truth",
    )
    evaluate.add_argument("index", help="index directory")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--truth", help="ground-truth JSON (e.g. from 'index benchmark')")
    source.add_argument("--ukbench", help="a UKBench folder: every image queries its group of four")
    evaluate.add_argument("--depth", type=int, default=100, help="results scored per query")
    add_format(evaluate)
    _add_search_options(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    benchmark = verbs.add_parser("benchmark", help="write a variant benchmark from real photos")
    benchmark.add_argument("originals", nargs="+", help="photos (files or folders) to alter")
    add_output_dir(benchmark, required=True)
    benchmark.add_argument("--n-variants", type=int, default=5, help="altered copies per photo")
    add_alias(benchmark, "--variants", "n_variants", type=int)
    benchmark.add_argument(
        "--distractors", nargs="*", default=[], help="other images (files or folders) to index"
    )
    benchmark.add_argument("--pairs", help="a folder of viewpoint pairs NAME1.ext/NAME2.ext")
    benchmark.add_argument("--limit", type=int, help="use only this many originals (seeded choice)")
    add_random_state(benchmark)
    benchmark.set_defaults(handler=run_benchmark)


def run_build(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval.runs import build_run

    result = build_run(
        arguments.images,
        arguments.out,
        vocabulary=arguments.vocabulary,
        branching=arguments.branching,
        depth=arguments.depth,
        beam_width=arguments.beam_width,
        n_words=arguments.n_words,
        overwrite=arguments.overwrite,
        n_jobs=arguments.n_jobs,
        detector=arguments.detector,
        max_keypoints=arguments.max_keypoints,
        max_side=arguments.max_side,
        train_images=arguments.train_images,
        global_descriptor=arguments.global_descriptor,
        tags=arguments.tags,
    )
    print(result.report.format())
    return 0 if result.report.added or result.report.duplicates else 1


def run_add(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval.runs import add_run

    print(add_run(arguments.index, arguments.images, n_jobs=arguments.n_jobs).report.format())
    return 0


def run_remove(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval.runs import remove_run

    result = remove_run(arguments.index, arguments.paths)
    print(f"removed: {len(result.removed)}")
    for path in result.missing:
        print(f"not in the index: {path}", file=sys.stderr)
    return 1 if result.missing else 0


def run_tag(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval.runs import tag_run

    print(tag_run(arguments.index).report.format())
    return 0


def run_info(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval.runs import info_run

    print_mapping(info_run(arguments.index).info, arguments.format == "json")
    return 0


def run_search(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval.runs import search_run

    result = search_run(
        arguments.index,
        arguments.query,
        top=arguments.top,
        roi=arguments.roi,
        plot=arguments.plot,
        **_search_options(arguments),
    )
    if arguments.format == "json":
        print(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        print(result.format())
    return 0


def run_evaluate(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval.runs import evaluate_run

    result = evaluate_run(
        arguments.index,
        truth=arguments.truth,
        ukbench=arguments.ukbench,
        depth=arguments.depth,
        **_search_options(arguments),
    )
    print_mapping(result.scores, arguments.format == "json", ".4f")
    return 0


def run_benchmark(arguments: argparse.Namespace) -> int:
    from imagelearn.retrieval.runs import benchmark_run

    result = benchmark_run(
        arguments.originals,
        arguments.out,
        n_variants=arguments.n_variants,
        distractors=arguments.distractors,
        pairs=arguments.pairs,
        limit=arguments.limit,
        random_state=arguments.random_state,
    )
    print(f"ground truth: {result.ground_truth}")
    print(f"database list: {result.database}")
    return 0
