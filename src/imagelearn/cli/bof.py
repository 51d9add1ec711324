"""``imagelearn bof train|predict|evaluate|sweep``: object recognition with Bag of Features."""

from __future__ import annotations

import argparse

from imagelearn.cli.arguments import (
    add_evaluation_arguments,
    add_n_jobs,
    add_output_dir,
    add_prediction_arguments,
    add_source,
    add_split_options,
    add_strict,
    add_verbs,
    comma_separated,
    json_text,
    write_output,
)

_int_list = comma_separated(int, "integers")

#: Help of the model that ``predict`` and ``evaluate`` read.
MODEL_HELP = "run directory written by 'bof train'"


def _add_channel_options(parser: argparse.ArgumentParser, pyramid: list[int]) -> None:
    """Options of the detector channel and the SVM that ``train`` and ``sweep`` share."""
    parser.add_argument(
        "--detector",
        default="dense_rootsift",
        help="local feature detector (default: dense_rootsift)",
    )
    parser.add_argument(
        "--vocabulary",
        choices=("kmeans", "tree"),
        default="kmeans",
        help="flat k-means or vocabulary tree",
    )
    parser.add_argument(
        "--pyramid", type=_int_list, default=pyramid, help="spatial pyramid grid sizes, e.g. 1,2,4"
    )
    parser.add_argument(
        "--kernel",
        choices=("chi2", "linear"),
        default="chi2",
        help="SVM kernel (chi2 via an additive kernel map)",
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    _add_channel_options(parser, pyramid=[1, 2])
    parser.add_argument(
        "--words",
        type=int,
        default=None,
        help="vocabulary size of the detector channel (default: the default model's, 2000)",
    )
    parser.add_argument(
        "--color-words",
        type=int,
        default=None,
        help="size of a Lab colour-word channel added beside the detector "
        "(0: none; default: the default model's, 256)",
    )
    parser.add_argument("--assignment", choices=("hard", "soft"), default="soft")
    parser.add_argument(
        "--step", type=int, default=4, help="grid spacing of dense detectors, pixels"
    )
    parser.add_argument("-C", type=float, default=1.0, dest="C", help="SVM regularisation")
    parser.add_argument(
        "--sample-size",
        type=int,
        default=200_000,
        help="descriptors sampled to build each vocabulary",
    )
    _add_common(parser)


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_split_options(parser)
    add_n_jobs(parser, help="processes for feature extraction (-1: all cores)")
    parser.add_argument(
        "--no-cache", action="store_true", help="do not read or write the feature cache"
    )
    add_strict(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs(
        subparsers, "bof", help="Bag of Features: train, predict, evaluate, sweep vocabulary sizes"
    )

    train = verbs.add_parser(
        "train", help="train BoF + SVM, hold out a test split, write metrics.json"
    )
    add_source(train, "data")
    add_output_dir(train, "run directory (model, metrics, plots)", required=True)
    _add_model_options(train)
    train.set_defaults(handler=run_train)

    predict = verbs.add_parser("predict", help="label and score for images")
    add_prediction_arguments(predict, MODEL_HELP)
    add_n_jobs(predict)
    add_strict(predict)
    predict.set_defaults(handler=run_predict)

    evaluate = verbs.add_parser(
        "evaluate", help="accuracy, per-class P/R/F1, confusion matrix on labelled data"
    )
    add_evaluation_arguments(evaluate, MODEL_HELP, "data", "class folders or a CSV of path,label")
    add_strict(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    sweep = verbs.add_parser("sweep", help="accuracy and costs against vocabulary size (PNG + CSV)")
    add_source(sweep, "data")
    sweep.add_argument(
        "--words", type=_int_list, default=[50, 100, 200, 500, 1000, 2000], help="sizes to try"
    )
    add_output_dir(sweep, "directory for sweep.csv, sweep.json and sweep.png", required=True)
    _add_channel_options(sweep, pyramid=[1])
    _add_common(sweep)
    sweep.set_defaults(handler=run_sweep)


def _channels(arguments: argparse.Namespace) -> list[dict]:
    from imagelearn.bof.recognition import DEFAULT_CHANNELS

    grey, colour = DEFAULT_CHANNELS
    words = grey["n_words"] if arguments.words is None else arguments.words
    color_words = colour["n_words"] if arguments.color_words is None else arguments.color_words
    pyramid = tuple(arguments.pyramid)
    dense = {"step": arguments.step} if arguments.detector.startswith("dense") else None
    channels = [
        {
            "detector": arguments.detector,
            "detector_params": dense,
            "n_words": words,
            "vocabulary": arguments.vocabulary,
            "pyramid": pyramid,
            "assignment": arguments.assignment,
            "sample_size": arguments.sample_size,
        }
    ]
    if color_words > 0:
        channels.append(
            {
                "detector": "dense_lab",
                "detector_params": {"step": arguments.step},
                "n_words": color_words,
                "pyramid": pyramid,
                "assignment": arguments.assignment,
                "sample_size": arguments.sample_size,
            }
        )
    return channels


def run_train(arguments: argparse.Namespace) -> int:
    from imagelearn.bof.recognition import BofClassifier
    from imagelearn.bof.runs import train_run

    model = BofClassifier(
        channels=_channels(arguments),
        kernel=arguments.kernel,
        C=arguments.C,
        n_jobs=arguments.n_jobs,
        cache_dir=False if arguments.no_cache else None,
        random_state=arguments.random_state,
    )
    metrics = train_run(
        arguments.data, arguments.out, model, arguments.test_size, arguments.random_state, arguments.strict
    )
    _print_summary(metrics, arguments.out)
    return 0


def _print_summary(metrics: dict, out: str) -> None:
    print(
        f"accuracy: {metrics['accuracy']:.4f} on {metrics['n_images']} held-out images (macro F1 {metrics['macro_f1']:.4f})"
    )
    for path_reason in metrics.get("train_skipped", []) + metrics.get("skipped", []):
        print(f"skipped: {path_reason['path']}: {path_reason['reason']}")
    print(f"model, metrics.json, confusion_matrix.png and misclassified.csv in {out}")


def run_predict(arguments: argparse.Namespace) -> int:
    from imagelearn.bof.runs import predict_images
    from imagelearn.core.tables import rows_to_csv

    rows = predict_images(
        arguments.model, arguments.images, strict=arguments.strict, n_jobs=arguments.n_jobs
    )
    write_output(
        json_text(rows) if arguments.format == "json" else rows_to_csv(rows), arguments.output
    )
    return 0 if any(row["label"] is not None for row in rows) else 1


def run_evaluate(arguments: argparse.Namespace) -> int:
    from pathlib import Path

    from imagelearn.bof.runs import evaluate_run

    out = arguments.out or str(Path(arguments.model) / "evaluation")
    _print_summary(evaluate_run(arguments.model, arguments.data, out, arguments.strict), out)
    return 0


def run_sweep(arguments: argparse.Namespace) -> int:
    from imagelearn.bof.runs import sweep_vocabulary

    channels = [
        {
            "detector": arguments.detector,
            "vocabulary": arguments.vocabulary,
            "pyramid": tuple(arguments.pyramid),
        }
    ]
    rows = sweep_vocabulary(
        arguments.data,
        arguments.out,
        arguments.words,
        channels,
        arguments.test_size,
        arguments.random_state,
        kernel=arguments.kernel,
        n_jobs=arguments.n_jobs,
        cache_dir=False if arguments.no_cache else None,
        random_state=arguments.random_state,
    )
    print(f"{'words':>7} {'accuracy':>9} {'build s':>8} {'ms/img':>7} {'MB':>7}")
    for row in rows:
        print(
            f"{row['n_words']:>7} {row['accuracy']:>9.4f} {row['vocabulary_s']:>8.2f} {row['encode_ms_per_image']:>7.2f} {row['model_bytes'] / 1e6:>7.2f}"
        )
    print(f"plot: {arguments.out}/sweep.png, table: {arguments.out}/sweep.csv")
    return 0
