"""``imagelearn cluster IMAGES``: group an unlabelled collection."""

from __future__ import annotations

import argparse

from imagelearn.cli.arguments import add_n_jobs, add_output_dir, add_random_state


def _k(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"--k takes a whole number or 'auto', got {text!r}"
        ) from error


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cluster", help="group unlabelled images (clusters.csv, montages, map, HTML report)"
    )
    parser.add_argument(
        "images", help="a folder of images (class sub-folders are used only by --evaluate)"
    )
    add_output_dir(parser, default="runs/clusters")
    parser.add_argument(
        "--features",
        default="cnn",
        help="image descriptor: cnn (default), bof or color",
    )
    parser.add_argument(
        "--method", default="kmeans", help="kmeans (default), agglomerative or hdbscan"
    )
    parser.add_argument(
        "--k",
        type=_k,
        default="auto",
        help="number of clusters, or 'auto' (silhouette over --k-range)",
    )
    parser.add_argument("--k-range", default="2,12", help="range of k tried by --k auto, e.g. 2,12")
    parser.add_argument(
        "--min-cluster-size", type=int, default=5, help="HDBSCAN's smallest cluster"
    )
    parser.add_argument(
        "--evaluate", action="store_true", help="compare with class sub-folders: ARI, NMI, purity"
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--link",
        action="store_const",
        const="link",
        dest="organize",
        help="symlink images into OUT/cluster_XX/",
    )
    action.add_argument(
        "--move",
        action="store_const",
        const="move",
        dest="organize",
        help="move images into OUT/cluster_XX/",
    )
    parser.add_argument(
        "--duplicate-threshold",
        type=float,
        default=0.95,
        help="cosine similarity for near duplicates",
    )
    add_random_state(parser)
    add_n_jobs(parser)
    parser.set_defaults(handler=run_cluster)


def run_cluster(arguments: argparse.Namespace) -> int:
    from imagelearn.cluster import ImageClusterer, cluster_collection

    low, high = (int(part) for part in arguments.k_range.split(","))
    clusterer = ImageClusterer(
        method=arguments.method,
        n_clusters=arguments.k,
        k_range=(low, high),
        min_cluster_size=arguments.min_cluster_size,
        random_state=arguments.random_state,
    )
    summary = cluster_collection(
        arguments.images,
        arguments.out,
        descriptor=arguments.features,
        clusterer=clusterer,
        evaluate=arguments.evaluate,
        organize=arguments.organize,
        duplicate_threshold=arguments.duplicate_threshold,
        n_jobs=arguments.n_jobs,
    )
    print(
        f"{summary['n_clusters']} clusters of {summary['n_images']} images ({summary['descriptor']} features, {summary['method']})"
    )
    if arguments.evaluate:
        print(f"ARI {summary['ari']:.3f}  NMI {summary['nmi']:.3f}  purity {summary['purity']:.3f}")
    print(f"near-duplicate groups: {summary['near_duplicate_groups']}")
    print(f"report: {arguments.out}/report.html (clusters.csv, montages, map.png)")
    return 0
