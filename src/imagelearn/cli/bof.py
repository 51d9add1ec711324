"""``imagelearn bof train|predict|evaluate|sweep``: object recognition with Bag of Features;
``bof words|explain``: what its visual words look like."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from imagelearn.cli.arguments import (
    add_alias,
    add_engine,
    add_evaluation_arguments,
    add_format,
    add_n_jobs,
    add_output_dir,
    add_overwrite,
    add_prediction_arguments,
    add_source,
    add_split_options,
    add_strict,
    add_verbs,
    comma_separated,
    json_text,
    write_output,
)

if TYPE_CHECKING:
    from imagelearn.evaluation.result import EvaluationResult

_int_list = comma_separated(int, "integers")

#: Help of the model that ``predict`` and ``evaluate`` read.
MODEL_HELP = "run directory written by 'bof train'"


def _add_channel_options(parser: argparse.ArgumentParser, pyramid: list[int]) -> None:
    """Options of the detector channel and the SVM that ``train`` and ``sweep`` share."""
    parser.add_argument(
        "--detector",
        default="dense_rootsift",
        help="local feature detector (default: %(default)s)",
    )
    parser.add_argument(
        "--pyramid",
        type=_int_list,
        default=pyramid,
        help="spatial pyramid grid sizes, e.g. 1,2,4 (default: "
        + ",".join(map(str, pyramid))
        + ")",
    )
    parser.add_argument(
        "--kernel",
        choices=("chi2", "linear"),
        default="chi2",
        help="SVM kernel, chi2 via an additive kernel map (default: %(default)s)",
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vocabulary",
        choices=("kmeans", "tree"),
        default="kmeans",
        help="flat k-means or a vocabulary tree of branching ** depth words (default: %(default)s)",
    )
    _add_channel_options(parser, pyramid=[1, 2])
    parser.add_argument(
        "--n-words",
        type=int,
        default=None,
        help="vocabulary size of the detector channel (default: the default model's, 2000)",
    )
    add_alias(parser, "--words", "n_words", type=int)
    parser.add_argument(
        "--color-n-words",
        type=int,
        default=None,
        help="size of a Lab color-word channel added beside the detector "
        "(0: none; default: the default model's, 256)",
    )
    add_alias(parser, "--color-words", "color_n_words", type=int)
    parser.add_argument(
        "--assignment",
        choices=("hard", "soft"),
        default="soft",
        help="word assignment (default: %(default)s)",
    )
    parser.add_argument(
        "--step",
        type=int,
        default=4,
        help="grid spacing of dense detectors, pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="longer side, pixels, to which dense detectors shrink an image first "
        "(0: the original size; default: the default model's, 384)",
    )
    parser.add_argument(
        "-C", type=float, default=1.0, dest="C", help="SVM regularization (default: %(default)s)"
    )
    parser.add_argument(
        "--sample-size",
        type=int,
        default=200_000,
        help="descriptors sampled to build each vocabulary (default: %(default)s)",
    )
    _add_common(parser)


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_split_options(parser)
    add_n_jobs(parser, help="processes for feature extraction (-1: all cores; default: -1)")
    add_engine(parser)
    parser.add_argument(
        "--no-cache", action="store_true", help="do not read or write the feature cache"
    )
    add_strict(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs(
        subparsers,
        "bof",
        help="Bag of Features: train, predict, evaluate, sweep vocabulary sizes, see the words",
    )

    train = verbs.add_parser(
        "train", help="train BoF + SVM, hold out a test split, write metrics.json"
    )
    add_source(train, "data")
    add_output_dir(train, "run directory (model, metrics, plots)", required=True)
    add_overwrite(train, "model")
    _add_model_options(train)
    train.set_defaults(handler=run_train)

    predict = verbs.add_parser("predict", help="label and score for images")
    add_prediction_arguments(predict, MODEL_HELP)
    add_n_jobs(predict, help="processes for feature extraction (-1: all cores; default: -1)")
    add_engine(predict)
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
        "--n-words",
        type=_int_list,
        default=[50, 100, 200, 500, 1000, 2000],
        help="vocabulary sizes to try (default: 50,100,200,500,1000,2000)",
    )
    add_alias(sweep, "--words", "n_words", type=_int_list)
    add_output_dir(sweep, "directory for sweep.csv, sweep.json and sweep.png", required=True)
    add_overwrite(sweep, "sweep")
    _add_channel_options(sweep, pyramid=[1])
    _add_common(sweep)
    sweep.set_defaults(handler=run_sweep)

    words = verbs.add_parser(
        "words", help="montages of the image patches of visual words, and words.json"
    )
    words.add_argument("model", help=MODEL_HELP)
    words.add_argument("images", nargs="+", help="image files or folders to find the patches in")
    add_output_dir(words, "directory for word_WORD.png and words.json", required=True)
    chosen = words.add_mutually_exclusive_group()
    chosen.add_argument("--words", type=_int_list, default=None, help="the words, e.g. 0,5,17")
    chosen.add_argument(
        "--top",
        type=int,
        default=16,
        help="without --words: the words of largest SVM weight (--by) that occur",
    )
    words.add_argument(
        "--by",
        choices=("weight", "frequency"),
        default="weight",
        help="rank words by the SVM's weight on them or by how often they occur",
    )
    words.add_argument("--per-word", type=int, default=24, help="patches per montage")
    _add_channel(words)
    add_n_jobs(words, help="processes for feature extraction (-1: all cores; default: -1)")
    add_overwrite(words, "pass")
    words.set_defaults(handler=run_words)

    explain = verbs.add_parser(
        "explain", help="an image's strongest visual words, their patches outlined on it (PNG)"
    )
    explain.add_argument("model", help=MODEL_HELP)
    explain.add_argument("image", help="an image file")
    explain.add_argument("--out", required=True, help="the PNG to write")
    explain.add_argument("--top", type=int, default=5, help="strongest words drawn")
    _add_channel(explain)
    add_format(explain)
    explain.set_defaults(handler=run_explain)


def _add_channel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--channel",
        default="0",
        help="the channel: its index or detector name, e.g. dense_lab (default: 0, the first)",
    )


def _cache_dir(arguments: argparse.Namespace) -> bool | None:
    """``BofClassifier.cache_dir``: False with ``--no-cache``, else the default cache."""
    return False if arguments.no_cache else None


def run_train(arguments: argparse.Namespace) -> int:
    from imagelearn.bof.recognition import DEFAULT_MAX_SIDE, BofClassifier
    from imagelearn.bof.runs import make_channels, train_run

    channels = make_channels(
        detector=arguments.detector,
        n_words=arguments.n_words,
        color_n_words=arguments.color_n_words,
        vocabulary=arguments.vocabulary,
        pyramid=arguments.pyramid,
        assignment=arguments.assignment,
        step=arguments.step,
        sample_size=arguments.sample_size,
        max_side=DEFAULT_MAX_SIDE if arguments.max_side is None else arguments.max_side or None,
    )
    model = BofClassifier(
        channels=channels,
        kernel=arguments.kernel,
        C=arguments.C,
        n_jobs=arguments.n_jobs,
        cache_dir=_cache_dir(arguments),
        random_state=arguments.random_state,
    )
    result = train_run(
        arguments.data,
        arguments.out,
        model,
        test_size=arguments.test_size,
        random_state=arguments.random_state,
        strict=arguments.strict,
        overwrite=arguments.overwrite,
    )
    _print_summary(result)
    return 0


def _print_summary(result: EvaluationResult) -> None:
    """Accuracy, skipped images and where the report is."""
    print(
        f"accuracy: {result.accuracy:.4f} on {result.n_images} held-out images (macro F1 {result.metrics['macro_f1']:.4f})"
    )
    for path, reason in result.skipped:
        print(f"skipped: {path}: {reason}")
    print(f"model, metrics.json, confusion_matrix.png and misclassified.csv in {result.out}")


def run_predict(arguments: argparse.Namespace) -> int:
    from imagelearn.bof.runs import predict_images

    result = predict_images(
        arguments.model, arguments.images, strict=arguments.strict, n_jobs=arguments.n_jobs
    )
    write_output(
        json_text(result.as_records()) if arguments.format == "json" else result.to_csv(),
        arguments.output,
    )
    return 0 if result.n_labeled else 1


def run_evaluate(arguments: argparse.Namespace) -> int:
    from imagelearn.bof.runs import evaluate_run

    _print_summary(evaluate_run(arguments.model, arguments.data, arguments.out, arguments.strict))
    return 0


def run_sweep(arguments: argparse.Namespace) -> int:
    from imagelearn.bof.runs import make_channels, sweep_vocabulary

    # only the detector channel; assignment, step and sample size are the estimator's defaults
    channels = make_channels(
        detector=arguments.detector,
        color_n_words=0,
        pyramid=arguments.pyramid,
        assignment=None,
        step=None,
        sample_size=None,
    )
    result = sweep_vocabulary(
        arguments.data,
        arguments.out,
        arguments.n_words,
        channels,
        test_size=arguments.test_size,
        random_state=arguments.random_state,
        kernel=arguments.kernel,
        n_jobs=arguments.n_jobs,
        cache_dir=_cache_dir(arguments),
        overwrite=arguments.overwrite,
    )
    print(f"{'words':>7} {'accuracy':>9} {'build s':>8} {'ms/img':>7} {'MB':>7}")
    for row in result.rows:
        print(
            f"{row.n_words:>7} {row.accuracy:>9.4f} {row.vocabulary_s:>8.2f} {row.encode_ms_per_image:>7.2f} {row.model_bytes / 1e6:>7.2f}"
        )
    print(f"plot: {result.out}/sweep.png, table: {result.out}/sweep.csv")
    return 0


def run_words(arguments: argparse.Namespace) -> int:
    from imagelearn.bof.runs import words_run

    result = words_run(
        arguments.model,
        arguments.images,
        arguments.out,
        words=arguments.words,
        top=arguments.top,
        per_word=arguments.per_word,
        channel=arguments.channel,
        by=arguments.by,
        n_jobs=arguments.n_jobs,
        overwrite=arguments.overwrite,
    )
    print(
        f"{len(result.words)} words over {result.n_images} images ({result.seconds:.1f} s): "
        f"montages and words.json in {result.out}"
    )
    return 0


def run_explain(arguments: argparse.Namespace) -> int:
    from imagelearn.bof.runs import explain_image

    found = explain_image(
        arguments.model, arguments.image, arguments.out, arguments.channel, arguments.top
    )
    if arguments.format == "json":
        print(json_text(found.as_record()))
        return 0
    for word, patches in zip(found.top_words, found.patches, strict=True):
        print(f"word {word}: weight {found.word_histogram[word]:.4f}, {len(patches)} patches")
    print(f"drawn on {arguments.out}")
    return 0
