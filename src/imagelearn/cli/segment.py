"""``imagelearn segment cluster|train|predict``: classify the pixels of large images."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imagelearn.cli.arguments import (
    add_n_jobs,
    add_output_dir,
    add_random_state,
    add_verbs,
    comma_separated,
)
from imagelearn.core.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

#: Extra file in a model bundle with the class colours given to ``train --classes``.
COLORS_FILE = "class_colors.json"


_floats = comma_separated(float, "numbers", tuple)

#: ``--jobs`` help of the segment commands.
THREADS = "threads (-1: all cores)"


def _max_pixels(text: str) -> int | None:
    value = int(text)
    return None if value <= 0 else value


def _add_feature_options(parser: argparse.ArgumentParser, sigmas: str, texture: bool) -> None:
    parser.add_argument(
        "--sigmas",
        type=_floats,
        default=_floats(sigmas),
        help=f"feature scales in pixels (default {sigmas})",
    )
    parser.add_argument(
        "--color-space", default="lab", help="lab, rgb, hsv or gray (RGB images; default lab)"
    )
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


def _add_image_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-pixels",
        type=_max_pixels,
        default=DEFAULT_MAX_PIXELS,
        help="refuse larger images (0: no limit)",
    )
    parser.add_argument(
        "--tile-size",
        type=int,
        default=1024,
        help="tile side in pixels for streaming (default 1024)",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    add_output_dir(parser, required=True)
    parser.add_argument(
        "--pixel-size", type=float, help="side of a pixel in metres: adds square metres to areas"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs(
        subparsers, "segment", help="classify every pixel of an image (land cover, microscopy)"
    )

    cluster = verbs.add_parser(
        "cluster", help="unsupervised: k-means or ISODATA clusters of pixels"
    )
    cluster.add_argument("image", help="the image (JPEG, PNG, TIFF with any number of bands)")
    cluster.add_argument(
        "--k", type=int, default=5, help="number of clusters (ISODATA: the target)"
    )
    cluster.add_argument("--method", default="kmeans", help="kmeans or isodata")
    add_random_state(cluster)
    cluster.add_argument(
        "--truth", help="reference label image (0 unlabelled, 1..K) to score the clusters against"
    )
    _add_feature_options(cluster, "1", texture=False)
    _add_image_options(cluster)
    _add_output_options(cluster)
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
    train.add_argument(
        "--classes",
        help="class names in label order, comma-separated; name=#RRGGBB reads colour-coded label images",
    )
    train.add_argument(
        "--classifier", default="random_forest", help="random_forest (default), svm or mlp"
    )
    train.add_argument("--trees", type=int, help="trees of the random forest (default 50)")
    train.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="fraction of samples held out for the accuracy report",
    )
    train.add_argument("--test-samples", nargs="+", help="separate held-out samples, one per image")
    add_random_state(train)
    add_n_jobs(train, THREADS)
    add_output_dir(train, "model directory to write", required=True)
    _add_feature_options(train, "1,2,4,8", texture=True)
    _add_image_options(train)
    train.set_defaults(handler=run_train)

    predict = verbs.add_parser(
        "predict", help="class map, overlay, areas (and accuracy) for images"
    )
    predict.add_argument("model", help="model directory from 'segment train'")
    predict.add_argument("images", nargs="+", help="image(s) to classify")
    predict.add_argument(
        "--samples",
        nargs="+",
        help="held-out reference samples, one per image: writes metrics.json",
    )
    add_n_jobs(predict, THREADS)
    _add_image_options(predict)
    _add_output_options(predict)
    predict.set_defaults(handler=run_predict)

    _register_bof(verbs)


def _parse_classes(text: str | None) -> tuple[list[str] | None, list | None]:
    """``"water,land"`` -> names; ``"water=#0000FF,land=#8429F6"`` -> names and colours."""
    from imagelearn.segment.samples import parse_color

    if not text:
        return None, None
    names, colors = [], []
    for item in text.split(","):
        name, _, color = item.partition("=")
        names.append(name.strip())
        colors.append(parse_color(color) if color else None)
    if any(color is not None for color in colors) and not all(
        color is not None for color in colors
    ):
        raise ValueError("--classes: give a colour to every class or to none")
    return names, colors if colors[0] is not None else None


def _model_colors(model_dir: str) -> list[tuple] | None:
    """The class colours a model was trained with (``train --classes name=#RRGGBB``), if any."""
    import json

    colors_path = Path(model_dir) / COLORS_FILE
    if not colors_path.is_file():
        return None
    return [tuple(color) for color in json.loads(colors_path.read_text())]


def _image_out(arguments: argparse.Namespace, image_path: str) -> Path:
    """``--out`` itself for one image; ``--out/STEM`` for each of several."""
    out = Path(arguments.out)
    return out if len(arguments.images) == 1 else out / Path(image_path).stem


def _paired(images: list[str], samples: list[str] | None, option: str) -> list[str | None]:
    if samples is None:
        return [None] * len(images)
    if len(samples) != len(images):
        raise ValueError(
            f"{option}: give one sample file per image ({len(images)} images, {len(samples)} files)"
        )
    return samples


def run_cluster(arguments: argparse.Namespace) -> int:
    import numpy as np

    from imagelearn.core.bundle import atomic_write_json
    from imagelearn.segment import (
        PixelClusterer,
        PixelFeatures,
        cluster_agreement,
        read_raster,
        read_samples,
    )
    from imagelearn.segment.render import write_results

    raster = read_raster(arguments.image, max_pixels=arguments.max_pixels)
    features = PixelFeatures(
        sigmas=arguments.sigmas,
        color_space=arguments.color_space,
        texture=arguments.texture,
        cnn=arguments.cnn,
    )
    clusterer = PixelClusterer(
        k=arguments.k,
        method=arguments.method,
        features=features,
        tile_size=arguments.tile_size,
        random_state=arguments.random_state,
    )
    clusters = clusterer.fit_predict(raster)
    names = [f"cluster{index}" for index in range(1, clusterer.n_clusters_ + 1)]
    areas = write_results(
        arguments.out, raster, clusters, names, pixel_size=arguments.pixel_size, title="clusters"
    )
    for row in areas:
        print(f"{row['class']:>10}  {row['pixels']:>12d} px  {row['percent']:6.2f}%")
    if arguments.truth:
        truth = read_samples(arguments.truth, raster.shape[:2]).mask
        agreement = cluster_agreement(np.asarray(clusters), truth)
        atomic_write_json(f"{arguments.out}/agreement.json", agreement)
        print(
            f"agreement with {arguments.truth}: purity {agreement['purity']:.3f} "
            f"(majority class {agreement['majority_baseline']:.3f}), adjusted Rand {agreement['adjusted_rand']:.3f}"
        )
    print(f"wrote {arguments.out}/classmap.png, overlay.png, legend.png, areas.csv")
    return 0


def run_train(arguments: argparse.Namespace) -> int:
    import json

    import numpy as np

    from imagelearn.segment import (
        PixelClassifier,
        PixelFeatures,
        accuracy_report,
        read_raster,
        read_samples,
    )
    from imagelearn.segment.samples import split_holdout

    names, colors = _parse_classes(arguments.classes)
    sample_files = _paired(arguments.images, arguments.samples, "--samples")
    test_files = _paired(arguments.images, arguments.test_samples, "--test-samples")
    rasters, train_masks, test_masks = [], [], []
    for image_path, sample_path, test_path in zip(
        arguments.images, sample_files, test_files, strict=True
    ):
        raster = read_raster(image_path, max_pixels=arguments.max_pixels)
        samples = read_samples(sample_path, raster.shape[:2], names, colors)
        names = samples.class_names  # later files must use the same classes
        mask = samples.mask
        held_out = None
        if test_path is not None:
            held_out = read_samples(test_path, raster.shape[:2], names, colors).mask
        elif arguments.holdout > 0:
            mask, held_out = split_holdout(mask, arguments.holdout, arguments.random_state)
        log.info("%s: %s labelled pixels per class", sample_path, samples.counts())
        rasters.append(raster)
        train_masks.append(mask)
        test_masks.append(held_out)
    features = PixelFeatures(
        sigmas=arguments.sigmas,
        color_space=arguments.color_space,
        texture=arguments.texture,
        cnn=arguments.cnn,
    )
    if arguments.trees and arguments.classifier != "random_forest":
        raise ValueError("--trees applies to the random_forest classifier only")
    params = {"n_estimators": arguments.trees} if arguments.trees else {}
    model = PixelClassifier(
        features=features,
        classifier=arguments.classifier,
        classifier_params=params,
        tile_size=arguments.tile_size,
        random_state=arguments.random_state,
        n_jobs=arguments.n_jobs,
    ).fit(rasters, train_masks, names)
    print(f"trained a {arguments.classifier} on {model.n_samples_per_class_} labelled pixels")
    files = {}
    if any(mask is not None for mask in test_masks):
        pairs = [
            (model.predict(raster), held)
            for raster, held in zip(rasters, test_masks, strict=True)
            if held is not None
        ]
        report = accuracy_report(
            np.concatenate([held[held > 0] for _, held in pairs]),
            np.concatenate([mapped[held > 0] for mapped, held in pairs]),
            model.class_names_,
        )
        files["metrics.json"] = (json.dumps(report, indent=2) + "\n").encode()
        print(_format_report(report))
    if colors is not None:
        files[COLORS_FILE] = json.dumps(colors).encode()
    model.save(arguments.out, files)
    print(f"wrote model {arguments.out}")
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


def run_predict(arguments: argparse.Namespace) -> int:
    from imagelearn.core.bundle import atomic_write_json
    from imagelearn.segment import PixelClassifier, accuracy_report, read_raster, read_samples
    from imagelearn.segment.render import write_results

    model = PixelClassifier.load(arguments.model, n_jobs=arguments.n_jobs)
    model.tile_size = arguments.tile_size
    colors = _model_colors(arguments.model)
    sample_files = _paired(arguments.images, arguments.samples, "--samples")
    for image_path, sample_path in zip(arguments.images, sample_files, strict=True):
        raster = read_raster(image_path, max_pixels=arguments.max_pixels)
        out = _image_out(arguments, image_path)
        out.mkdir(parents=True, exist_ok=True)
        classmap = model.predict(raster, out=out / "classmap.npy")
        areas = write_results(
            out, raster, classmap, model.class_names_, colors, arguments.pixel_size
        )
        print(
            f"{image_path}: " + ", ".join(f"{row['class']} {row['percent']:.1f}%" for row in areas)
        )
        if sample_path is not None:
            reference = read_samples(sample_path, raster.shape[:2], model.class_names_).mask
            report = accuracy_report(reference, classmap, model.class_names_)
            atomic_write_json(out / "metrics.json", report)
            print(_format_report(report))
        print(f"wrote {out}/classmap.png, classmap.npy, overlay.png, legend.png, areas.csv")
    return 0


# ---------------------------------------------------------------- segment bof


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
    train.add_argument(
        "--classes",
        help="class names in label order, comma-separated; name=#RRGGBB reads colour-coded masks",
    )
    train.add_argument("--words", type=int, default=200, help="texture words (default 200)")
    train.add_argument(
        "--color-words", type=int, default=32, help="Lab colour words (0: none; default 32)"
    )
    train.add_argument(
        "--superpixel-size", type=float, default=16, help="SLIC superpixel side in pixels"
    )
    train.add_argument("--compactness", type=float, default=10.0, help="SLIC compactness")
    train.add_argument(
        "--context",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the histograms of adjacent superpixels",
    )
    train.add_argument("--max-side", type=int, default=512, help="working size (0: full size)")
    train.add_argument(
        "--classifier", default="random_forest", help="random_forest (default), svm or mlp"
    )
    add_random_state(train)
    add_n_jobs(train, THREADS)
    add_output_dir(train, "model directory to write", required=True)
    train.set_defaults(handler=run_bof_train)

    predict = bof_verbs.add_parser("predict", help="class maps (and IoU with --masks)")
    predict.add_argument("model", help="model directory from 'segment bof train'")
    predict.add_argument("images", nargs="+", help="images to segment")
    predict.add_argument(
        "--masks", nargs="+", help="reference masks, one per image: writes metrics.json"
    )
    add_n_jobs(predict, THREADS)
    add_output_dir(predict, required=True)
    predict.set_defaults(handler=run_bof_predict)


def run_bof_train(arguments: argparse.Namespace) -> int:
    import json

    from imagelearn.segment import read_raster, read_samples
    from imagelearn.segment.bof_segmentation import BofSegmenter

    names, colors = _parse_classes(arguments.classes)
    rasters, masks = [], []
    for image_path, mask_path in zip(
        arguments.images, _paired(arguments.images, arguments.masks, "--masks"), strict=True
    ):
        rasters.append(read_raster(image_path))
        samples = read_samples(mask_path, rasters[-1].shape[:2], names, colors)
        names = samples.class_names  # later masks must use the same classes
        masks.append(samples.mask)
    model = BofSegmenter(
        n_words=arguments.words,
        color_words=arguments.color_words,
        superpixel_size=arguments.superpixel_size,
        compactness=arguments.compactness,
        neighbour_context=arguments.context,
        max_side=arguments.max_side or None,
        classifier=arguments.classifier,
        random_state=arguments.random_state,
        n_jobs=arguments.n_jobs,
    ).fit(rasters, masks, names)
    print(f"trained a {arguments.classifier} on superpixels {model.n_superpixels_per_class_}")
    files = {COLORS_FILE: json.dumps(colors).encode()} if colors is not None else None
    model.save(arguments.out, files)
    print(f"wrote model {arguments.out}")
    return 0


def run_bof_predict(arguments: argparse.Namespace) -> int:
    from imagelearn.core.bundle import atomic_write_json
    from imagelearn.segment import read_raster, read_samples
    from imagelearn.segment.bof_segmentation import BofSegmenter, iou_report
    from imagelearn.segment.render import write_results

    model = BofSegmenter.load(arguments.model, n_jobs=arguments.n_jobs)
    colors = _model_colors(arguments.model)
    mask_files = _paired(arguments.images, arguments.masks, "--masks")
    references, predictions = [], []
    for image_path, mask_path in zip(arguments.images, mask_files, strict=True):
        raster = read_raster(image_path)
        if mask_path is not None:
            references.append(
                read_samples(mask_path, raster.shape[:2], model.class_names_, colors).mask
            )
        out = _image_out(arguments, image_path)
        classmap = model.predict(raster)
        write_results(out, raster, classmap, model.class_names_, colors)
        predictions.append(classmap)
        print(f"{image_path}: wrote {out}/classmap.png, overlay.png, legend.png, areas.csv")
    if references:
        report = iou_report(references, predictions, model.class_names_)
        atomic_write_json(Path(arguments.out) / "metrics.json", report)
        for name, value in report["iou"].items():
            print(f"{name:>14} IoU {'-' if value is None else f'{value:.3f}'}")
        print(f"mean IoU {report['mean_iou']:.3f}, pixel accuracy {report['accuracy']:.3f}")
    return 0
