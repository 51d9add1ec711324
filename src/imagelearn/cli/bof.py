"""``imagelearn bof train|predict|evaluate|sweep``: object recognition with Bag of Features."""

from __future__ import annotations

import argparse
import json
import sys


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from error


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detector",
        default="dense_rootsift",
        help="local feature detector (default: dense_rootsift)",
    )
    parser.add_argument(
        "--words", type=int, default=1000, help="vocabulary size of the detector channel"
    )
    parser.add_argument(
        "--color-words",
        type=int,
        default=256,
        help="size of a Lab colour-word channel added beside the detector (0: none)",
    )
    parser.add_argument(
        "--vocabulary",
        choices=("kmeans", "tree"),
        default="kmeans",
        help="flat k-means or vocabulary tree",
    )
    parser.add_argument(
        "--pyramid", type=_int_list, default=[1, 2], help="spatial pyramid grid sizes, e.g. 1,2,4"
    )
    parser.add_argument("--assignment", choices=("hard", "soft"), default="soft")
    parser.add_argument(
        "--step", type=int, default=4, help="grid spacing of dense detectors, pixels"
    )
    parser.add_argument(
        "--kernel",
        choices=("chi2", "linear"),
        default="chi2",
        help="SVM kernel (chi2 via an additive kernel map)",
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
    parser.add_argument(
        "--test-size", type=float, default=0.3, help="held-out share when DATA has no split folders"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jobs", type=int, default=-1, help="processes for feature extraction (-1: all cores)"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="do not read or write the feature cache"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable image instead of skipping it",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    bof = subparsers.add_parser(
        "bof", help="Bag of Features: train, predict, evaluate, sweep vocabulary sizes"
    )
    verbs = bof.add_subparsers(dest="verb", metavar="VERB", required=True)

    train = verbs.add_parser(
        "train", help="train BoF + SVM, hold out a test split, write metrics.json"
    )
    train.add_argument(
        "data", help="class folders, train/val(/test) folders, or a CSV of path,label"
    )
    train.add_argument(
        "--out", required=True, help="run directory (the saved model plus metrics and plots)"
    )
    _add_model_options(train)
    train.set_defaults(handler=run_train)

    predict = verbs.add_parser("predict", help="label and score for images")
    predict.add_argument("model", help="run directory written by 'bof train'")
    predict.add_argument("images", nargs="+", help="image files or folders")
    predict.add_argument("--format", choices=("csv", "json"), default="csv")
    predict.add_argument("--output", help="write here instead of standard output")
    predict.add_argument("--jobs", type=int, default=-1)
    predict.add_argument("--strict", action="store_true")
    predict.set_defaults(handler=run_predict)

    evaluate = verbs.add_parser(
        "evaluate", help="accuracy, per-class P/R/F1, confusion matrix on labelled data"
    )
    evaluate.add_argument("model")
    evaluate.add_argument("data")
    evaluate.add_argument(
        "--out", help="where to write metrics.json etc. (default MODEL/evaluation)"
    )
    evaluate.add_argument("--strict", action="store_true")
    evaluate.set_defaults(handler=run_evaluate)

    sweep = verbs.add_parser("sweep", help="accuracy and costs against vocabulary size (PNG + CSV)")
    sweep.add_argument("data")
    sweep.add_argument(
        "--words", type=_int_list, default=[50, 100, 200, 500, 1000, 2000], help="sizes to try"
    )
    sweep.add_argument(
        "--out", required=True, help="directory for sweep.csv, sweep.json and sweep.png"
    )
    sweep.add_argument("--detector", default="dense_rootsift")
    sweep.add_argument("--vocabulary", choices=("kmeans", "tree"), default="kmeans")
    sweep.add_argument("--pyramid", type=_int_list, default=[1])
    sweep.add_argument("--kernel", choices=("chi2", "linear"), default="chi2")
    _add_common(sweep)
    sweep.set_defaults(handler=run_sweep)


def _channels(arguments: argparse.Namespace) -> list[dict]:
    pyramid = tuple(arguments.pyramid)
    dense = {"step": arguments.step} if arguments.detector.startswith("dense") else None
    channels = [
        {
            "detector": arguments.detector,
            "detector_params": dense,
            "n_words": arguments.words,
            "vocabulary": arguments.vocabulary,
            "pyramid": pyramid,
            "assignment": arguments.assignment,
            "sample_size": arguments.sample_size,
        }
    ]
    if arguments.color_words > 0:
        channels.append(
            {
                "detector": "dense_lab",
                "detector_params": {"step": arguments.step},
                "n_words": arguments.color_words,
                "pyramid": pyramid,
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
        n_jobs=arguments.jobs,
        cache_dir=False if arguments.no_cache else None,
        random_state=arguments.seed,
    )
    metrics = train_run(
        arguments.data, arguments.out, model, arguments.test_size, arguments.seed, arguments.strict
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
    from imagelearn.core.bundle import atomic_write_text
    from imagelearn.core.tables import rows_to_csv

    rows = predict_images(arguments.model, arguments.images, strict=arguments.strict)
    text = (
        json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
        if arguments.format == "json"
        else rows_to_csv(rows)
    )
    if arguments.output:
        atomic_write_text(arguments.output, text)
    else:
        sys.stdout.write(text)
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
        arguments.seed,
        kernel=arguments.kernel,
        n_jobs=arguments.jobs,
        cache_dir=False if arguments.no_cache else None,
        random_state=arguments.seed,
    )
    print(f"{'words':>7} {'accuracy':>9} {'build s':>8} {'ms/img':>7} {'MB':>7}")
    for row in rows:
        print(
            f"{row['n_words']:>7} {row['accuracy']:>9.4f} {row['vocabulary_s']:>8.2f} {row['encode_ms_per_image']:>7.2f} {row['model_bytes'] / 1e6:>7.2f}"
        )
    print(f"plot: {arguments.out}/sweep.png, table: {arguments.out}/sweep.csv")
    return 0
