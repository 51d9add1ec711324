"""``imagelearn cluster fit|evaluate``: group an unlabelled collection, score the groups."""

from __future__ import annotations

import argparse

from imagelearn.cli.arguments import (
    add_alias,
    add_engine,
    add_n_jobs,
    add_output_dir,
    add_overwrite,
    add_random_state,
)
from imagelearn.cli.verbs import add_verbs_with_default


def _n_clusters(text: str) -> int | str:
    """An argparse ``type``: a whole number or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number or 'auto', got {text!r}"
        ) from None


def _range(text: str) -> tuple[int, int]:
    """An argparse ``type``: ``low,high``, two whole numbers."""
    try:
        low, high = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected low,high (e.g. 2,12), got {text!r}") from None
    return low, high


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs_with_default(
        subparsers,
        "cluster",
        help="group unlabelled images (clusters.csv, montages, map, HTML report)",
        default="fit",
    )
    fit = verbs.add_parser("fit", help="describe the images, group them and write the report")
    fit.add_argument(
        "images", help="a folder of images (class sub-folders are used only by --evaluate)"
    )
    add_output_dir(fit, "run directory (default %(default)s)", default="runs/clusters")
    add_overwrite(fit)
    fit.add_argument(
        "--descriptor",
        default="cnn",
        help="image descriptor: cnn, bof or color (default %(default)s)",
    )
    add_alias(fit, "--features", "descriptor")
    fit.add_argument(
        "--method",
        default="kmeans",
        help="kmeans, agglomerative or hdbscan (default %(default)s)",
    )
    fit.add_argument(
        "--n-clusters",
        type=_n_clusters,
        default="auto",
        help="number of clusters, or 'auto': best silhouette over --n-clusters-range "
        "(default %(default)s)",
    )
    add_alias(fit, "--k", "n_clusters", type=_n_clusters)
    fit.add_argument(
        "--n-clusters-range",
        type=_range,
        default=(2, 12),
        metavar="LOW,HIGH",
        help="numbers of clusters tried by 'auto', inclusive (default 2,12)",
    )
    add_alias(fit, "--k-range", "n_clusters_range", type=_range)
    fit.add_argument(
        "--min-cluster-size",
        type=int,
        default=5,
        help="HDBSCAN's smallest cluster (default %(default)s)",
    )
    fit.add_argument(
        "--evaluate", action="store_true", help="compare with class sub-folders: ARI, NMI, purity"
    )
    organize = fit.add_mutually_exclusive_group()
    for how in ("link", "move"):
        organize.add_argument(
            f"--{how}",
            action="store_const",
            const=how,
            dest="organize",
            help=f"{'symlink' if how == 'link' else how} images into OUT/cluster_XX/",
        )
    fit.add_argument(
        "--duplicate-threshold",
        type=float,
        default=0.95,
        help="cosine similarity of near duplicates (default %(default)s)",
    )
    add_random_state(fit)
    add_n_jobs(fit, help="parallel workers describing the images (default -1: one per core)")
    add_engine(fit)
    fit.set_defaults(handler=run_fit)

    evaluate = verbs.add_parser(
        "evaluate", help="compare the clusters of a 'cluster fit' run with class sub-folders"
    )
    evaluate.add_argument("run", help="run directory written by 'cluster fit'")
    evaluate.add_argument(
        "source", help="the same images in class sub-folders, or a CSV of path,label"
    )
    evaluate.set_defaults(handler=run_evaluate)


def _print_agreement(metrics: dict[str, float]) -> None:
    print(f"ARI {metrics['ari']:.3f}  NMI {metrics['nmi']:.3f}  purity {metrics['purity']:.3f}")


def run_fit(arguments: argparse.Namespace) -> int:
    from imagelearn.cluster import ImageClusterer, fit_run

    result = fit_run(
        arguments.images,
        arguments.out,
        descriptor=arguments.descriptor,
        clusterer=ImageClusterer(
            method=arguments.method,
            n_clusters=arguments.n_clusters,
            n_clusters_range=arguments.n_clusters_range,
            min_cluster_size=arguments.min_cluster_size,
            random_state=arguments.random_state,
        ),
        evaluate=arguments.evaluate,
        organize=arguments.organize,
        duplicate_threshold=arguments.duplicate_threshold,
        n_jobs=arguments.n_jobs,
        overwrite=arguments.overwrite,
    )
    summary = result.summary
    print(
        f"{summary['n_clusters']} clusters of {summary['n_images']} images "
        f"({summary['descriptor']} features, {summary['method']})"
    )
    if result.metrics is not None:
        _print_agreement(result.metrics)
    print(f"near-duplicate groups: {summary['near_duplicate_groups']}")
    print(f"report: {result.report} (clusters.csv, montages, map.png)")
    return 0


def run_evaluate(arguments: argparse.Namespace) -> int:
    from imagelearn.cluster import evaluate_run

    result = evaluate_run(arguments.run, arguments.source)
    print(f"{result.n_images} images scored")
    _print_agreement(result.metrics)
    print(f"metrics: {result.path}")
    return 0
