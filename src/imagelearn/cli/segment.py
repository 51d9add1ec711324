"""``imagelearn segment cluster|train|predict|evaluate`` and ``segment bof train|predict|evaluate``.

Argument definitions and printing; the workflows are :mod:`imagelearn.segment.runs`.
"""

from __future__ import annotations

import argparse
from typing import Any

from imagelearn.cli.arguments import (
    add_alias,
    add_n_jobs,
    add_output_dir,
    add_overwrite,
    add_random_state,
    add_verbs,
    comma_separated,
)
from imagelearn.core.images import DEFAULT_MAX_PIXELS

_floats = comma_separated(float, "numbers", tuple)
_names = comma_separated(str, "class names")

#: ``--n-jobs`` help of the segment commands.
THREADS = "threads (-1: all cores)"


def _none_if_not_positive(text: str) -> int | None:
    value = int(text)
    return None if value <= 0 else value


def _add_feature_options(parser: argparse.ArgumentParser, sigmas: str, texture: bool) -> None:
    parser.add_argument(
        "--sigmas",
        type=_floats,
        default=_floats(sigmas),
        help=f"feature scales in pixels (default {sigmas})",
    )
    parser.add_argument("--color-space", default="lab", help="lab, rgb, hsv or gray (RGB images)")
    parser.add_argument(
        "--texture",
        action=argparse.BooleanOptionalAction,
        default=texture,
        help="add texture filters at every scale",
    )
    parser.add_argument(
        "--cnn",
        default=None,
        metavar="BACKBONE",
        help="also use the early feature maps of this pretrained network per pixel "
        "(e.g. mobilenet_v2; 8-bit grey or RGB images)",
    )


def _add_max_pixels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-pixels",
        type=_none_if_not_positive,
        default=DEFAULT_MAX_PIXELS,
        help="refuse larger images (0: no limit)",
    )


def _add_image_options(parser: argparse.ArgumentParser) -> None:
    _add_max_pixels(parser)
    parser.add_argument(
        "--tile-size", type=int, default=1024, help="tile side in pixels for streaming"
    )


def _add_pixel_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pixel-size", type=float, help="side of a pixel in metres: adds square metres to areas"
    )


def _add_classes(parser: argparse.ArgumentParser, labels: str) -> None:
    parser.add_argument(
        "--classes",
        type=_names,
        help=f"class names in label order, comma-separated; name=#RRGGBB reads colour-coded {labels}",
    )


def _add_classifier(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classifier", default="random_forest", help="random_forest, svm or mlp")
    parser.add_argument("--n-estimators", type=int, help="trees of the random forest (default 50)")
    add_alias(parser, "--trees", "n_estimators", type=int)


def _add_model_and_images(parser: argparse.ArgumentParser, trained_by: str) -> None:
    parser.add_argument("model", help=f"model directory from '{trained_by}'")
    parser.add_argument("images", nargs="+", help="image(s)")


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs(
        subparsers, "segment", help="classify every pixel of an image (land cover, microscopy)"
    )

    cluster = verbs.add_parser(
        "cluster", help="unsupervised: k-means or ISODATA clusters of pixels"
    )
    cluster.add_argument("image", help="the image (JPEG, PNG, TIFF with any number of bands)")
    cluster.add_argument(
        "--n-clusters", type=int, default=5, help="number of clusters (ISODATA: the target)"
    )
    add_alias(cluster, "--k", "n_clusters", type=int)
    cluster.add_argument("--method", default="kmeans", help="kmeans or isodata")
    add_random_state(cluster)
    cluster.add_argument(
        "--truth", help="reference label image (0 unlabelled, 1..K) to score the clusters against"
    )
    _add_feature_options(cluster, "1", texture=False)
    _add_image_options(cluster)
    add_output_dir(cluster, required=True)
    _add_pixel_size(cluster)
    cluster.set_defaults(handler=run_cluster)

    train = verbs.add_parser(
        "train", help="supervised: learn from samples drawn inside the image(s)"
    )
    train.add_argument("images", nargs="+", help="training image(s)")
    train.add_argument(
        "--samples",
        nargs="+",
        required=True,
        help="per image: label image (0 = unlabelled), GeoJSON polygons or CSV x,y,class",
    )
    _add_classes(train, "label images")
    _add_classifier(train)
    train.add_argument(
        "--test-size",
        type=float,
        default=0.0,
        help="fraction of samples held out for the accuracy report",
    )
    add_alias(train, "--holdout", "test_size", type=float)
    train.add_argument("--test-samples", nargs="+", help="separate held-out samples, one per image")
    add_random_state(train)
    add_n_jobs(train, THREADS)
    add_output_dir(train, "model directory to write", required=True)
    add_overwrite(train, "model")
    _add_feature_options(train, "1,2,4,8", texture=True)
    _add_image_options(train)
    train.set_defaults(handler=run_train)

    predict = verbs.add_parser(
        "predict", help="class map, overlay, areas (and accuracy) for images"
    )
    _add_model_and_images(predict, "segment train")
    predict.add_argument(
        "--samples",
        nargs="+",
        help="held-out reference samples, one per image: writes metrics.json",
    )
    add_n_jobs(predict, THREADS)
    _add_image_options(predict)
    add_output_dir(predict, required=True)
    _add_pixel_size(predict)
    predict.set_defaults(handler=run_predict)

    evaluate = verbs.add_parser(
        "evaluate", help="accuracy report over the reference samples of images"
    )
    _add_model_and_images(evaluate, "segment train")
    evaluate.add_argument(
        "--samples", nargs="+", required=True, help="reference samples, one per image"
    )
    add_n_jobs(evaluate, THREADS)
    _add_image_options(evaluate)
    add_output_dir(evaluate, "where to write metrics.json (default: MODEL/evaluation)")
    evaluate.set_defaults(handler=run_evaluate)

    _register_bof(verbs)


def _register_bof(verbs: argparse._SubParsersAction) -> None:
    bof_verbs = add_verbs(
        verbs,
        "bof",
        help="semantic segmentation: BoF histograms of superpixels (dense label masks)",
        dest="bof_verb",
    )
    train = bof_verbs.add_parser("train", help="learn from images with dense label masks")
    train.add_argument("images", nargs="+", help="training images")
    train.add_argument(
        "--masks", nargs="+", required=True, help="one label mask per image (0 = unlabelled)"
    )
    _add_classes(train, "masks")
    train.add_argument("--n-words", type=int, default=200, help="texture words")
    add_alias(train, "--words", "n_words", type=int)
    train.add_argument("--color-n-words", type=int, default=32, help="Lab color words (0: none)")
    add_alias(train, "--color-words", "color_n_words", type=int)
    train.add_argument(
        "--superpixel-size", type=float, default=16, help="SLIC superpixel side in pixels"
    )
    train.add_argument("--compactness", type=float, default=10.0, help="SLIC compactness")
    train.add_argument(
        "--neighbor-context",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the histograms of adjacent superpixels",
    )
    add_alias(train, "--context", "neighbor_context", action=argparse.BooleanOptionalAction)
    train.add_argument(
        "--max-side", type=_none_if_not_positive, default=512, help="working size (0: full size)"
    )
    _add_classifier(train)
    _add_max_pixels(train)
    add_random_state(train)
    add_n_jobs(train, THREADS)
    add_output_dir(train, "model directory to write", required=True)
    add_overwrite(train, "model")
    train.set_defaults(handler=run_bof_train)

    predict = bof_verbs.add_parser("predict", help="class maps (and IoU with --masks)")
    _add_model_and_images(predict, "segment bof train")
    predict.add_argument(
        "--masks", nargs="+", help="reference masks, one per image: writes metrics.json"
    )
    add_n_jobs(predict, THREADS)
    _add_max_pixels(predict)
    add_output_dir(predict, required=True)
    _add_pixel_size(predict)
    predict.set_defaults(handler=run_bof_predict)

    evaluate = bof_verbs.add_parser("evaluate", help="IoU report against reference masks")
    _add_model_and_images(evaluate, "segment bof train")
    evaluate.add_argument(
        "--masks", nargs="+", required=True, help="reference masks, one per image"
    )
    add_n_jobs(evaluate, THREADS)
    _add_max_pixels(evaluate)
    add_output_dir(evaluate, "where to write metrics.json (default: MODEL/evaluation)")
    evaluate.set_defaults(handler=run_bof_evaluate)


# ---------------------------------------------------------------- handlers


def _options(arguments: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The parsed values of ``names``: run parameters that the flags mirror."""
    return {name: getattr(arguments, name) for name in names}


_FEATURES = ("sigmas", "color_space", "texture", "cnn")


def run_cluster(arguments: argparse.Namespace) -> int:
    from imagelearn.segment.runs import cluster_run

    result = cluster_run(
        arguments.image,
        arguments.out,
        **_options(
            arguments,
            "n_clusters",
            "method",
            *_FEATURES,
            "truth",
            "tile_size",
            "max_pixels",
            "pixel_size",
            "random_state",
        ),
    )
    for row in result.areas:
        print(f"{row['class']:>10}  {row['pixels']:>12d} px  {row['percent']:6.2f}%")
    if result.agreement is not None:
        agreement = result.agreement
        print(
            f"agreement with {arguments.truth}: purity {agreement['purity']:.3f} "
            f"(majority class {agreement['majority_baseline']:.3f}), "
            f"adjusted Rand {agreement['adjusted_rand']:.3f}"
        )
    print(f"wrote {result.out}/classmap.png, overlay.png, legend.png, areas.csv")
    return 0


def run_train(arguments: argparse.Namespace) -> int:
    from imagelearn.segment.runs import train_run

    result = train_run(
        arguments.images,
        arguments.samples,
        arguments.out,
        **_options(
            arguments,
            "classes",
            "classifier",
            "n_estimators",
            *_FEATURES,
            "test_size",
            "test_samples",
            "tile_size",
            "max_pixels",
            "random_state",
            "n_jobs",
            "overwrite",
        ),
    )
    print(f"trained a {result.classifier} on {result.n_samples_per_class} labelled pixels")
    if result.metrics is not None:
        print(_format_report(result.metrics))
    print(f"wrote model {result.out}")
    return 0


def _format_report(report: dict) -> str:
    kappa = "n/a" if report["kappa"] is None else f"{report['kappa']:.3f}"
    lines = [
        f"held-out pixels {report['n_pixels']}: overall accuracy {report['accuracy']:.3f}, kappa {kappa}"
    ]
    lines.append(f"{'class':>14} {'producer':>9} {'user':>9} {'pixels':>8}")
    for name in report["classes"]:
        producer, user = report["producers_accuracy"][name], report["users_accuracy"][name]
        lines.append(
            f"{name:>14} {'-' if producer is None else f'{producer:.3f}':>9} "
            f"{'-' if user is None else f'{user:.3f}':>9} {report['support'][name]:>8}"
        )
    return "\n".join(lines)


def _format_iou(report: dict) -> str:
    lines = [
        f"{name:>14} IoU {'-' if value is None else f'{value:.3f}'}"
        for name, value in report["iou"].items()
    ]
    lines.append(f"mean IoU {report['mean_iou']:.3f}, pixel accuracy {report['accuracy']:.3f}")
    return "\n".join(lines)


def run_predict(arguments: argparse.Namespace) -> int:
    from imagelearn.segment.runs import predict_run

    result = predict_run(
        arguments.model,
        arguments.images,
        arguments.out,
        **_options(arguments, "samples", "tile_size", "max_pixels", "pixel_size", "n_jobs"),
    )
    for image_map in result.maps:
        shares = ", ".join(f"{row['class']} {row['percent']:.1f}%" for row in image_map.areas)
        print(f"{image_map.image}: {shares}")
        if image_map.metrics is not None:
            print(_format_report(image_map.metrics))
        print(
            f"wrote {image_map.out}/classmap.png, classmap.npy, overlay.png, legend.png, areas.csv"
        )
    return 0


def run_evaluate(arguments: argparse.Namespace) -> int:
    from imagelearn.segment.runs import evaluate_run

    result = evaluate_run(
        arguments.model,
        arguments.images,
        arguments.samples,
        arguments.out,
        **_options(arguments, "tile_size", "max_pixels", "n_jobs"),
    )
    print(_format_report(result.metrics))
    print(f"wrote {result.out}/metrics.json")
    return 0


def run_bof_train(arguments: argparse.Namespace) -> int:
    from imagelearn.segment.runs import bof_train_run

    result = bof_train_run(
        arguments.images,
        arguments.masks,
        arguments.out,
        **_options(
            arguments,
            "classes",
            "n_words",
            "color_n_words",
            "superpixel_size",
            "compactness",
            "neighbor_context",
            "max_side",
            "classifier",
            "n_estimators",
            "max_pixels",
            "random_state",
            "n_jobs",
            "overwrite",
        ),
    )
    print(f"trained a {result.classifier} on superpixels {result.n_samples_per_class}")
    print(f"wrote model {result.out}")
    return 0


def run_bof_predict(arguments: argparse.Namespace) -> int:
    from imagelearn.segment.runs import bof_predict_run

    result = bof_predict_run(
        arguments.model,
        arguments.images,
        arguments.out,
        **_options(arguments, "masks", "max_pixels", "pixel_size", "n_jobs"),
    )
    for image_map in result.maps:
        print(
            f"{image_map.image}: wrote {image_map.out}/classmap.png, overlay.png, legend.png, areas.csv"
        )
    if result.metrics is not None:
        print(_format_iou(result.metrics))
    return 0


def run_bof_evaluate(arguments: argparse.Namespace) -> int:
    from imagelearn.segment.runs import bof_evaluate_run

    result = bof_evaluate_run(
        arguments.model,
        arguments.images,
        arguments.masks,
        arguments.out,
        **_options(arguments, "max_pixels", "n_jobs"),
    )
    print(_format_iou(result.metrics))
    print(f"wrote {result.out}/metrics.json")
    return 0
