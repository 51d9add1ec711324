"""``imagelearn cluster-check``: what a Ray cluster offers and whether its workers reach the data."""

from __future__ import annotations

import argparse

from imagelearn.cli.arguments import add_format, json_text


def register(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser(
        "cluster-check",
        help="a Ray cluster's CPUs, GPUs and memory, and whether its workers can read the "
        "images and write the output folder",
    )
    check.add_argument(
        "--address",
        default=None,
        help="the Ray cluster, e.g. auto or HOST:6379 (default: $RAY_ADDRESS, else a Ray "
        "instance started on this machine)",
    )
    check.add_argument(
        "images", nargs="*", help="image files or folders the workers must read (searched)"
    )
    check.add_argument("--out", default=None, help="a folder the workers must write into")
    check.add_argument(
        "--max-images", type=int, default=1000, help="image paths checked at most (the first)"
    )
    add_format(check)
    check.set_defaults(handler=run_cluster_check)


def run_cluster_check(arguments: argparse.Namespace) -> int:
    from imagelearn.core.execution import get_backend
    from imagelearn.data.inputs import expand_image_inputs

    paths = [str(path) for path in expand_image_inputs(arguments.images)][: arguments.max_images]
    report = get_backend("ray", arguments.address).cluster_report(paths, arguments.out)
    if arguments.format == "json":
        print(json_text(report.to_dict()), end="")
    else:
        print(report.format())
    return 0 if report.ok else 1
